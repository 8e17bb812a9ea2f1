# SPDX-License-Identifier: Apache-2.0
"""The Python client against a real gridexd and PostgreSQL: registration by the
operator, orders that cross with reports on both sides, settlement in the
ledger, queries, refusals, market data rebuilt from a snapshot and updates,
reconnects, key files and prices."""

from __future__ import annotations

import os
import time

import pytest
from conftest import product, register_traders

import gridex
from gridex import Side


@pytest.fixture(scope="module")
def traders(server):
    buyer, seller = register_traders(server, capacity=50)
    yield buyer, seller
    buyer.close()
    seller.close()


def reports(events):
    return [e for e in events if isinstance(e, gridex.ExecutionReport)]


def test_orders_cross_and_settle(server, traders):
    buyer, seller = traders
    p = product(2)
    ack, _ = buyer.wait_answer(buyer.new_order(p, Side.BUY, 2_500_000, 4, client_order_id=11))
    assert ack.sequence > 0
    seller.wait_answer(seller.new_order(p, Side.SELL, 2_400_000, 3, client_order_id=21))
    fill = next(r for r in reports(seller.events(1.0)) if r.exec_type == "FILL")
    assert (fill.last_price, fill.last_quantity, fill.fee) == (2_500_000, 3, 15_000)
    partial = next(r for r in reports(buyer.events(1.0)) if r.exec_type == "PARTIAL_FILL")
    assert (partial.cumulative_quantity, partial.leaves_quantity) == (3, 1)
    assert partial.fill_id == fill.fill_id
    # Settled in the ledger: the buyer paid 7.50 plus the maker fee.
    for _ in range(500):
        if server.sql("select count(*) from ledger.transfers where fill_id is not null") != "0":
            break
        time.sleep(0.01)
    balance = int(server.sql(
        "select balance from ledger.accounts where participant = 1 and kind = 'AVAILABLE'"))
    assert balance == 1_000_000_000 - 7_500_000 - 7_500
    result = buyer.query(buyer.query_balance())
    assert result.available == balance
    orders = buyer.query(buyer.query_orders()).orders
    assert [(o.client_order_id, o.leaves_quantity) for o in orders] == [(11, 1)]
    fills = seller.query(seller.query_fills("H100-80G")).fills
    assert fills[0].fill_id == fill.fill_id


def test_refusals_raise(server, traders):
    buyer, seller = traders
    p = product(2)
    with pytest.raises(gridex.Rejected) as e:
        buyer.wait_answer(buyer.new_order(p, Side.BUY, 900_000_000, 100))
    assert e.value.reason == "INSUFFICIENT_FUNDS"
    with pytest.raises(gridex.Rejected) as e:
        seller.wait_answer(seller.new_order(p, Side.SELL, 1_000_000, 51))
    assert e.value.reason == "INSUFFICIENT_CAPACITY"
    with pytest.raises(gridex.Rejected) as e:
        seller.wait_answer(seller.cancel(11))  # the buyer's order
    assert e.value.reason == "UNKNOWN_ORDER"
    with pytest.raises(gridex.Rejected) as e:
        buyer.wait_answer(buyer.deposit(1, 5))
    assert e.value.reason == "NOT_AUTHORIZED"
    with pytest.raises(ValueError):
        buyer.new_order(p, Side.BUY, 0, 1)


def test_market_data_rebuilds_the_book(server, traders):
    buyer, seller = traders
    p = product(3)
    watcher = server.client()
    # A product without a book yet answers with an empty snapshot at sequence 0:
    # once it is here, the subscription is in place.
    watcher.subscribe(p, trades=True)
    first = watcher.next_event(5.0)
    assert isinstance(first, gridex.BookSnapshot) and first.sequence == 0
    for i in range(30):
        c, side = (buyer, Side.BUY) if i % 2 == 0 else (seller, Side.SELL)
        c.wait_answer(c.new_order(p, side, (20 + (i * 7) % 11) * 100_000, 1 + i % 3,
                                  client_order_id=1000 + i))
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    seq, trades = 0, 0
    for ev in watcher.events(1.0):
        if isinstance(ev, gridex.BookUpdate) and ev.product == p:
            assert ev.sequence == seq + 1
            seq = ev.sequence
            book = bids if ev.side == Side.BUY else asks
            if ev.quantity:
                book[ev.price] = ev.quantity
            else:
                book.pop(ev.price, None)
        trades += isinstance(ev, gridex.Trade)
    assert trades > 0
    # A reconnect subscribes again: the fresh snapshot equals the rebuilt book.
    watcher.connect()
    snap = next(e for e in watcher.events(5.0) if isinstance(e, gridex.BookSnapshot)
                and e.product == p)
    assert snap.sequence == seq
    assert {l.price: l.quantity for l in snap.bids} == bids
    assert {l.price: l.quantity for l in snap.asks} == asks
    watcher.close()


def test_keys_and_prices(tmp_path):
    path = str(tmp_path / "k.pem")
    pub = gridex.keygen(path)
    assert gridex.public_key(path) == pub and len(pub) == 32
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    with pytest.raises(FileExistsError):
        gridex.keygen(path)
    (tmp_path / "bad.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(gridex.KeyFileError):
        gridex.load_signing_key(str(tmp_path / "bad.pem"))
    assert gridex.parse_price("2.45") == 2_450_000
    assert gridex.parse_price("0.000001") == 1
    for bad in ("", "0", "-1", "1.2345678", "1e3", "2,5", ".5", "9223372036855"):
        with pytest.raises(ValueError):
            gridex.parse_price(bad)
    assert gridex.format_price(2_450_000) == "2.45"
    assert gridex.format_price(1) == "0.000001"
