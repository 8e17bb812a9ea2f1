# SPDX-License-Identifier: Apache-2.0
"""A query answer is also cut to what a client may leave unread
(out_buffer_hard_bytes, here 32 KiB), so that asking for a large answer never
gets a client closed as a slow reader."""

from __future__ import annotations

from conftest import product, register_traders

from gridex import Ack, Side

GRIDEXD_ARGS = ["--out-buffer-soft-bytes=16384", "--out-buffer-hard-bytes=32772",
                "--orders-per-second=0"]


def test_an_answer_fits_what_a_client_may_leave_unread(server):
    buyer, seller = register_traders(server, capacity=None)
    seller.close()
    p = product(3)
    # 900 bids: about 39 KB of rows, under query_rows_max (1,000), over 32 KiB.
    nonces = [buyer.new_order(p, Side.BUY, 10_000, 1, client_order_id=1 + i) for i in range(900)]
    _, seen = buyer.wait_answer(nonces[-1], timeout=60)
    assert sum(isinstance(e, Ack) for e in seen) == 899
    r = buyer.query(buyer.query_orders())
    assert r.truncated
    assert 600 < len(r.orders) < 900
    # Still connected, and answered.
    assert buyer.query(buyer.query_balance()).available is not None
    buyer.close()
