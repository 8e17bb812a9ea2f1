#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpora of tests/fuzz/corpus/ (committed; rerun after a
protocol change): PYTHONPATH=build/clients/python tests/fuzz/make-seeds.py"""

import os
import random
import struct

from gridex import gridex_pb2 as pb

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(7)


def put(harness, name, data):
    with open(os.path.join(HERE, "corpus", harness, name), "wb") as f:
        f.write(data)


def signed(**fields):
    req = pb.Request(account=1, nonce=1, expires_at_ms=1795366801000, **fields)
    return pb.SignedRequest(body=req.SerializeToString(), signature=bytes(64)).SerializeToString()


H19 = b"H100-80G/2026-11-22T19"
requests = {
    "new": signed(type=pb.NEW_ORDER, client_order_id=1, product=H19, side=pb.BUY,
                  time_in_force=pb.GTC, price=2500000, quantity=4),
    "offer": signed(type=pb.NEW_ORDER, client_order_id=2, product=H19, side=pb.SELL,
                    time_in_force=pb.IOC, price=2400000, quantity=3),
    "gtd": signed(type=pb.NEW_ORDER, client_order_id=3, product=H19, side=pb.BUY,
                  time_in_force=pb.GTD, price=1000000, quantity=1, expire_ms=1795366900000),
    "basket": signed(type=pb.NEW_BASKET, client_order_id=10, product=H19, side=pb.BUY,
                     price=2600000, quantity=2, hours=3),
    "cancel": signed(type=pb.CANCEL, target_client_order_id=1),
    "modify": signed(type=pb.MODIFY, target_client_order_id=1, price=2600000, quantity=2),
    "cancel_all": signed(type=pb.CANCEL_ALL, product=b"H100-80G"),
    "query": signed(type=pb.QUERY_ORDERS),
    "deposit": signed(type=pb.DEPOSIT, target_account=2, amount=5000000),
    "register": signed(type=pb.REGISTER_ACCOUNT, target_account=9, name=b"acme",
                       public_key=bytes(range(32))),
    "halt": signed(type=pb.HALT, product=H19),
}
# requests: a session of several requests, each with a two-byte length.
session = b""
for name, r in requests.items():
    put("requests", name, struct.pack(">H", len(r)) + r)
    session += struct.pack(">H", len(r)) + r
put("requests", "session", session)

# frames: ClientFrames with their 4-byte length, and the framing errors.
def frame(body):
    return struct.pack(">I", len(body)) + body

stream = b""
for name, r in requests.items():
    cf = pb.ClientFrame(request=pb.SignedRequest.FromString(r)).SerializeToString()
    put("frames", name, frame(cf))
    stream += frame(cf)
sub = pb.ClientFrame(subscribe=pb.Subscribe(product=b"H100-80G", trades=True)).SerializeToString()
unsub = pb.ClientFrame(unsubscribe=pb.Unsubscribe(product=H19)).SerializeToString()
put("frames", "subscribe", frame(sub) + frame(unsub))
put("frames", "stream", stream)
put("frames", "zero", b"\0\0\0\0")
put("frames", "huge", b"\xff\xff\xff\xff" + bytes(8))

# client: ServerFrames with two-byte lengths.
frames = [
    pb.ServerFrame(ack=pb.Ack(account=1, nonce=5, sequence=9)),
    pb.ServerFrame(reject=pb.Reject(account=1, nonce=6, reason=pb.INSUFFICIENT_FUNDS,
                                    detail=b"not enough")),
    pb.ServerFrame(report=pb.ExecutionReport(account=1, client_order_id=1, order_id=3,
                                             product=H19, side=pb.BUY, exec_type=pb.FILL,
                                             price=2500000, last_price=2500000,
                                             last_quantity=2, cumulative_quantity=2,
                                             fill_id=1, fee=500)),
    pb.ServerFrame(snapshot=pb.BookSnapshot(product=H19, sequence=4,
                                            bids=[pb.PriceLevel(price=2, quantity=3, orders=1)],
                                            asks=[pb.PriceLevel(price=5, quantity=1, orders=1)])),
    pb.ServerFrame(update=pb.BookUpdate(product=H19, sequence=5, side=pb.BUY, price=3,
                                        quantity=2, orders=1)),
    pb.ServerFrame(trade=pb.Trade(product=H19, sequence=1, price=4, quantity=1,
                                  aggressor=pb.SELL)),
    pb.ServerFrame(result=pb.QueryResult(nonce=7, balances=[pb.Balance(available=10)])),
]
# Found by fuzz-client: a snapshot whose bids are not best first used to be taken as is.
frames.append(pb.ServerFrame(snapshot=pb.BookSnapshot(
    product=H19, sequence=1,
    bids=[pb.PriceLevel(price=2, quantity=1), pb.PriceLevel(price=5, quantity=1)])))
feed = b""
for i, f in enumerate(frames):
    b = f.SerializeToString()
    put("client", f"frame{i}", struct.pack(">H", len(b)) + b)
    feed += struct.pack(">H", len(b)) + b
put("client", "feed", feed)

# engine: bytes that drive the differential harness.
for i in range(4):
    put("engine", f"random{i}", bytes(rng.randrange(256) for _ in range(512 * (i + 1))))

# replay: the scenario inputs.
scen = os.path.join(HERE, "..", "replay", "scenarios")
for name in sorted(os.listdir(scen)):
    if name.endswith(".in"):
        with open(os.path.join(scen, name), "rb") as f:
            put("replay", name[:-3], f.read())
