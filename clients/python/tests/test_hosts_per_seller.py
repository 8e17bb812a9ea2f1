# SPDX-License-Identifier: Apache-2.0
"""hosts_per_seller_max against a real gridexd with a provisioning hook and a
limit of two hosts per seller: a seller's third host is REGISTRY_FULL while
another seller still registers; after the seller withdraws a host that nothing
names, its new host takes that place, and the withdrawn host is forgotten."""

from __future__ import annotations

import pytest
import gridex

GRIDEXD_ARGS = ["--hook=/bin/true", "--hosts-per-seller-max=2"]


def test_a_seller_holds_at_most_its_share(traders):
    other, seller = traders
    for name in ("node-1", "node-2"):
        seller.wait_answer(seller.register_host(name, "H100-80G", "nvidia", [f"GPU-{name}"]))
    with pytest.raises(gridex.Rejected) as e:
        seller.wait_answer(seller.register_host("node-3", "H100-80G", "nvidia", ["GPU-node-3"]))
    assert e.value.reason == "REGISTRY_FULL"
    # Another seller is not held back; a host registered again is not a new one.
    other.wait_answer(other.register_host("other-1", "H100-80G", "nvidia", ["GPU-other-1"]))
    seller.wait_answer(seller.register_host("node-1", "H100-80G", "nvidia", ["GPU-node-1"]))
    # node-1 withdrawn (no lease names it): node-3 takes its place.
    seller.wait_answer(seller.withdraw_host("node-1"))
    seller.wait_answer(seller.register_host("node-3", "H100-80G", "nvidia", ["GPU-node-3"]))
    hosts = seller.query(seller.query_hosts()).hosts
    assert [(h.name, h.withdrawn) for h in hosts] == [("node-3", False), ("node-2", False)]
    with pytest.raises(gridex.Rejected) as e:
        seller.wait_answer(seller.withdraw_host("node-1"))
    assert e.value.reason == "BAD_HOST"
