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
    "host": signed(type=pb.REGISTER_HOST, name=b"node-1", product=b"H100-80G",
                   vendor=b"nvidia", devices=[b"GPU-0", b"GPU-1", b"GPU-2"]),
    "workload": signed(type=pb.SET_WORKLOAD,
                       workload=b'{"command": ["/bin/job", "--x"], "env": {"A": "1"}}'),
    "leases": signed(type=pb.QUERY_LEASES),
    "withdraw_host": signed(type=pb.WITHDRAW_HOST, name=b"node-1"),
    "hosts": signed(type=pb.QUERY_HOSTS),
    # Pages after the first: an order id, a fill report's number, an ended lease's.
    "orders_page": signed(type=pb.QUERY_ORDERS, cursor=2),
    "fills_page": signed(type=pb.QUERY_FILLS, cursor=3),
    "leases_page": signed(type=pb.QUERY_LEASES, cursor=(1 << 63) | 1),
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
# A QUERY_HOSTS answer.
frames.append(pb.ServerFrame(result=pb.QueryResult(nonce=8, hosts=[
    pb.Host(name=b"node-1", seller=2, accelerator=b"H100-80G", vendor=b"nvidia",
            devices=[b"GPU-0", b"GPU-1"], withdrawn=True, live_leases=1)])))
# An answer cut short: its first rows, marked truncated.
frames.append(pb.ServerFrame(result=pb.QueryResult(nonce=9, truncated=True, next=4, orders=[
    pb.ExecutionReport(account=1, client_order_id=3, order_id=4, product=H19, side=pb.BUY,
                       price=2, leaves_quantity=1)])))
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

# snapshot: core state bodies (srv_core_save's layout) for fuzz_snapshot.c's core.
import datetime
from nacl.signing import SigningKey

u8 = lambda v: struct.pack("<B", v)
u32 = lambda v: struct.pack("<I", v)
u64 = lambda v: struct.pack("<Q", v)
i64 = lambda v: struct.pack("<q", v)
text = lambda s: u8(len(s)) + s

START = 1795366800000  # 2026-11-22T17:00Z, the harness core's clock
period = int(datetime.datetime(2026, 11, 22, 19, tzinfo=datetime.timezone.utc).timestamp() * 1000)
keys = {a: SigningKey(bytes([a]) * 32).verify_key.encode() for a in (1, 2)}


def order(oid, account, price, qty):  # GTC, STP cancel-newest (resolved)
    return u64(oid) + u32(account) + u8(0) + u8(1) + i64(price) + i64(qty) + i64(0)


def snapshot():
    b = u64(3) + i64(START) + u64(1)  # next order id, clock, next fill id
    b += u32(1) + text(b"H100-80G")
    b += u32(1) + text(H19) + text(b"H100-80G") + i64(period) + i64(3600000)
    b += i64(period - 300000) + i64(1) + u8(0) + u32(0) + u64(2) + u64(0)
    b += u32(1) + order(1, 1, 2000000, 4) + u32(1) + order(2, 2, 2500000, 3)
    b += u32(2) + b"".join(u32(a) + u64(5) + u64(0) + keys[a] for a in (1, 2))
    b += u32(2)
    for a, side, price, qty in ((1, 0, 2000000, 4), (2, 1, 2500000, 3)):
        b += u32(a) + text(b"trader%d" % a) + i64(0) + i64(0)
        b += u32(1) + u64(a) + u64(10 + a) + u32(0) + u8(side) + i64(price) + i64(qty) + i64(0)
    b += u32(2) + u32(1) + i64(10**12) + u32(2) + i64(0)  # risk: cash
    b += u32(1) + u64(2 << 32) + i64(100)  # capacity of account 2, class 0
    b += u32(1) + u64(2 << 32) + i64(0)  # its position in book 0
    b += u32(2) + u64(1) + u32(1) + u32(0) + u32(0) + u8(0) + i64(2000000) + i64(4)
    b += u64(2) + u32(2) + u32(0) + u32(0) + u8(1) + i64(2500000) + i64(3)
    b += u64(0) + u32(0)  # recent fills
    return b


put("snapshot", "orders", snapshot())
put("snapshot", "empty", u64(1) + i64(START) + u64(1) + u32(0) * 4 + u32(0) * 4 + u64(0) + u32(0))

# hook: results of the provisioning hook's contract.
put("hook", "ok", b'{"version":1,"ok":true,"lease_id":"L-1","state":"running"}')
put("hook", "error", b'{"version":1,"ok":false,"error":{"code":"not_enough_devices",'
    b'"message":"2 of 4 free","retryable":false}}')
