# SPDX-License-Identifier: Apache-2.0
"""Leases through the Python client, against a real gridexd with a provisioning
hook: a buyer must set its workload before it bids; a seller registers a host;
a fill becomes a lease that both hear of and query; the seller lists its hosts
and takes one out of service. The hook (/bin/true) is never called: the
delivery window is two hours ahead."""

from __future__ import annotations

import pytest
from conftest import product

import gridex
from gridex import Side

GRIDEXD_ARGS = ["--hook=/bin/true"]


def lease_events(client, state):
    return [e for e in client.events(1.0) if isinstance(e, gridex.Lease) and e.state == state]


def test_fill_becomes_a_lease_on_the_sellers_host(server, traders):
    buyer, seller = traders
    p = product(2)
    seller.wait_answer(seller.register_host("node-1", "H100-80G", "nvidia", ["GPU-1", "GPU-2"]))
    with pytest.raises(gridex.Rejected) as e:
        buyer.wait_answer(buyer.new_order(p, Side.BUY, 2_000_000, 1))
    assert e.value.reason == "BAD_WORKLOAD"
    with pytest.raises(ValueError):
        buyer.set_workload([])
    buyer.wait_answer(buyer.set_workload(["/opt/train.sh", "--epochs", "3"], {"SEED": "7"}))
    buyer.wait_answer(buyer.new_order(p, Side.BUY, 2_000_000, 1, client_order_id=1))
    seller.wait_answer(seller.new_order(p, Side.SELL, 2_000_000, 1, client_order_id=1))
    (lease,) = lease_events(buyer, "SCHEDULED")
    assert (lease.buyer, lease.seller, lease.host, lease.devices) == (1, 2, "node-1", ["GPU-1"])
    assert (lease.accelerator, lease.vendor, lease.quantity) == ("H100-80G", "nvidia", 1)
    assert len(lease.fill_ids) == 1 and lease.end_ms > lease.start_ms
    assert [x.lease_id for x in lease_events(seller, "SCHEDULED")] == [lease.lease_id]
    leases = seller.query(seller.query_leases()).leases
    assert [(x.lease_id, x.state) for x in leases] == [(lease.lease_id, "SCHEDULED")]


def test_hosts_listed_and_withdrawn(server, traders):
    buyer, seller = traders
    (host,) = seller.query(seller.query_hosts()).hosts
    assert (host.name, host.seller, host.devices) == ("node-1", 2, ["GPU-1", "GPU-2"])
    assert (host.withdrawn, host.live_leases) == (False, 1)
    assert buyer.query(buyer.query_hosts()).hosts == []
    with pytest.raises(gridex.Rejected) as e:
        buyer.wait_answer(buyer.withdraw_host("node-1"))
    assert e.value.reason == "BAD_HOST"
    seller.wait_answer(seller.withdraw_host("node-1"))
    (host,) = server.operator.query(server.operator.query_hosts()).hosts
    assert host.withdrawn
    # Its two GPUs left the seller's capacity: nothing more may be offered.
    with pytest.raises(gridex.Rejected) as e:
        seller.wait_answer(seller.new_order(product(2), Side.SELL, 2_000_000, 1))
    assert e.value.reason == "INSUFFICIENT_CAPACITY"
    seller.wait_answer(seller.register_host("node-1", "H100-80G", "nvidia", ["GPU-1", "GPU-2"]))
    (host,) = seller.query(seller.query_hosts()).hosts
    assert not host.withdrawn
