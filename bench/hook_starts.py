# SPDX-License-Identifier: Apache-2.0
"""Driver of bench/run-hooks: against a gridexd whose provisioning hook takes a
fixed time per call, a seller registers --hosts hosts of --gpus GPUs, and a
buyer buys every GPU of one product hour one at a time: one lease per GPU, all
due to start at the same moment (the hour's delivery window, which gridexd was
started to open --start-in seconds after the product's hour was chosen).
Prints how long after the window opened the leases were running: the first,
the median, the last."""

from __future__ import annotations

import argparse
import os
import statistics
import time

import gridex
from gridex import Side

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--ca", required=True)
ap.add_argument("--operator-key", required=True)
ap.add_argument("--operator-account", type=int, required=True)
ap.add_argument("--dir", required=True)
ap.add_argument("--hosts", type=int, required=True)
ap.add_argument("--gpus", type=int, required=True)
ap.add_argument("--product", required=True)
args = ap.parse_args()


def client(account: int, key: str) -> gridex.Client:
    return gridex.Client(
        "127.0.0.1", args.port, ca_file=args.ca, server_name="localhost",
        account=account, key_file=key,
    ).connect()


op = client(args.operator_account, args.operator_key)
keys = {}
for account, name in ((1, "buyer"), (2, "seller")):
    keys[account] = os.path.join(args.dir, f"{name}.pem")
    op.wait_answer(op.register(account, name, gridex.keygen(keys[account])))
n = args.hosts * args.gpus
op.wait_answer(op.deposit(1, gridex.parse_price(str(10 * n))))
buyer, seller = client(1, keys[1]), client(2, keys[2])
for h in range(args.hosts):
    devices = [f"GPU-{h}-{d}" for d in range(args.gpus)]
    seller.wait_answer(seller.register_host(f"node-{h}", "H100-80G", "nvidia", devices))
buyer.wait_answer(buyer.set_workload(["/bin/true"]))
price = gridex.parse_price("2")
seller.wait_answer(seller.new_order(args.product, Side.SELL, price, n, client_order_id=1))
for i in range(n):
    buyer.wait_answer(buyer.new_order(args.product, Side.BUY, price, 1, client_order_id=1 + i))
traded = time.time()

running: dict[int, int] = {}
window = None
deadline = time.time() + 600
while len(running) < n and time.time() < deadline:
    for e in buyer.events(1.0):
        if isinstance(e, gridex.Lease):
            if e.state == "RUNNING":
                running[e.lease_id] = e.running_ms
                window = e.start_ms
            elif e.state not in ("SCHEDULED", "STARTING"):
                raise SystemExit(f"lease {e.lease_id} ended {e.state} ({e.reason})")
if len(running) < n or window is None:
    raise SystemExit(f"only {len(running)} of {n} leases running after 10 minutes")
after = sorted((t - window) / 1000 for t in running.values())
print(f"leases={n} hosts={args.hosts} first_running_s={after[0]:.2f} "
      f"median_running_s={statistics.median(after):.2f} last_running_s={after[-1]:.2f} "
      f"traded_before_window_s={window / 1000 - traded:.1f}")
for c in (buyer, seller, op):
    c.close()
