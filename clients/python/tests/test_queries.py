# SPDX-License-Identifier: Apache-2.0
"""Query answers cut to fit, against a real gridexd with query_bytes_max at its
least (64 KiB): an account with 2,500 resting bids gets the first ones that
fit, marked truncated; an answer that fits is not marked."""

from __future__ import annotations

import pytest
from conftest import product, register_traders

import gridex
from gridex import Ack, Side

GRIDEXD_ARGS = ["--query-bytes-max=65536", "--query-rows-max=5000", "--orders-per-second=0"]

BIDS = 2500


@pytest.fixture(scope="module")
def buyer(server):
    buyer, seller = register_traders(server, capacity=None)
    seller.close()
    yield buyer
    buyer.close()


def test_an_answer_that_fits_is_whole(buyer):
    p = product(3)
    for i in range(1, 4):
        buyer.wait_answer(buyer.new_order(p, Side.BUY, 10_000, 1, client_order_id=i))
    r = buyer.query(buyer.query_orders(p))
    assert sorted(o.client_order_id for o in r.orders) == [1, 2, 3]
    assert not r.truncated
    assert not buyer.query(buyer.query_balance()).truncated


def test_a_large_answer_is_cut_to_the_bytes(buyer):
    p = product(4)
    # Sent back to back; every one acknowledged.
    nonces = [buyer.new_order(p, Side.BUY, 10_000, 1, client_order_id=100 + i) for i in range(BIDS)]
    _, seen = buyer.wait_answer(nonces[-1], timeout=60)
    assert sum(isinstance(e, Ack) for e in seen) == BIDS - 1
    r = buyer.query(buyer.query_orders())
    assert r.truncated
    # About 43 bytes a row: 1,523 of the 2,503 here.
    assert 1000 < len(r.orders) < BIDS
    assert len({o.client_order_id for o in r.orders}) == len(r.orders)
    # The product's own three still come back whole when asked for alone.
    r = buyer.query(buyer.query_orders(product(3)))
    assert (len(r.orders), r.truncated) == (3, False)


def test_pages_bring_every_row_once(buyer):
    # The 2,503 bids of the two tests above, in two pages cut to the bytes;
    # bids placed and cancelled between pages do not break the walk.
    first = buyer.query(buyer.query_orders())
    assert first.truncated and first.next == first.orders[-1].order_id
    buyer.wait_answer(buyer.new_order(product(4), Side.BUY, 10_000, 1, client_order_id=9000))
    buyer.wait_answer(buyer.cancel(first.orders[-1].client_order_id))
    rest = buyer.query(buyer.query_orders(cursor=first.next))
    assert not rest.truncated and rest.next == 0
    seen = [o.client_order_id for o in first.orders + rest.orders]
    assert len(seen) == len(set(seen)) == BIDS + 3
    assert 9000 not in seen
    # query_pages() follows the cursors: now one order less, one more.
    pages = list(buyer.query_pages(lambda c: buyer.query_orders(cursor=c)))
    assert len(pages) == 2
    rows = [o.client_order_id for p in pages for o in p.orders]
    assert len(rows) == len(set(rows)) == BIDS + 3
    assert 9000 in rows and first.orders[-1].client_order_id not in rows
    # Newest first: in falling order ids.
    ids = [o.order_id for p in pages for o in p.orders]
    assert ids == sorted(ids, reverse=True)


def test_pages_stop_at_a_cursor_sent_twice(monkeypatch):
    # A server that answers every page with the same cursor would be asked
    # forever; query_pages() stops at the second time. (No server: query()
    # is replaced by one that always answers the same truncated page.)
    c = gridex.Client()
    monkeypatch.setattr(c, "query", lambda nonce, timeout=10.0: gridex.QueryResult(
        account=1, nonce=nonce, truncated=True, next=5))
    asked = []
    pages = c.query_pages(lambda cursor: asked.append(cursor) or len(asked))
    assert next(pages).next == 5 and next(pages).next == 5
    with pytest.raises(gridex.GridexError, match="same page cursor twice"):
        next(pages)
    assert asked == [0, 5]
