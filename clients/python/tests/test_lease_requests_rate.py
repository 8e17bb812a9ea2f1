# SPDX-License-Identifier: Apache-2.0
"""lease_requests_per_second against a real gridexd with a provisioning hook,
one request a second with a burst of two: REGISTER_HOST, SET_WORKLOAD and
WITHDRAW_HOST share the bucket, a refused one changes nothing, another account
and the operator are not held back, and a second later there is a token again."""

from __future__ import annotations

import time

import pytest
import gridex

GRIDEXD_ARGS = ["--hook=/bin/true", "--lease-requests-per-second=1", "--lease-requests-burst=2"]


def test_lease_requests_share_one_bucket(server, traders):
    buyer, seller = traders
    started = time.monotonic()
    seller.wait_answer(seller.register_host("node-1", "H100-80G", "nvidia", ["GPU-1"]))
    seller.wait_answer(seller.set_workload(["/bin/true"]))
    with pytest.raises(gridex.Rejected) as e:
        seller.wait_answer(seller.register_host("node-2", "H100-80G", "nvidia", ["GPU-2"]))
    if time.monotonic() - started >= 1.0:
        pytest.fail("the three requests took a second: the bucket could have refilled")
    assert e.value.reason == "RATE_LIMITED"
    # The refused host was not registered.
    hosts = seller.query(seller.query_hosts()).hosts
    assert [h.name for h in hosts] == ["node-1"]
    # Another account and the operator have their own (the operator's none).
    buyer.wait_answer(buyer.set_workload(["/bin/true"]))
    op = server.operator
    for _ in range(3):
        with pytest.raises(gridex.Rejected) as e:
            op.wait_answer(op.withdraw_host("no-such-host"))
        assert e.value.reason == "BAD_HOST"
    # One token a second.
    time.sleep(1.1)
    seller.wait_answer(seller.register_host("node-2", "H100-80G", "nvidia", ["GPU-2"]))
    hosts = seller.query(seller.query_hosts()).hosts
    assert sorted(h.name for h in hosts) == ["node-1", "node-2"]
