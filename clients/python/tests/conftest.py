# SPDX-License-Identifier: Apache-2.0
"""A real gridexd on a fresh PostgreSQL database for each test module.

Needs GRIDEX_TEST_DATABASE_URL (./scripts/test sets it) and the paths the
Meson test passes: GRIDEX_TEST_GRIDEXD, GRIDEX_TEST_ADMIN, GRIDEX_TEST_MIGRATIONS.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass

import pytest

import gridex


def product(hours_ahead: int) -> str:
    """The H100-80G product hours_ahead hours from now."""
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=hours_ahead)
    return t.strftime("H100-80G/%Y-%m-%dT%H")


def register_traders(server: "Server", capacity: int | None):
    """Registers alice (1, funded) and bob (2, with capacity H100-80G GPUs when given);
    returns a connected client of each."""
    keys = {}
    for account, name in ((1, "alice"), (2, "bob")):
        path = os.path.join(server.dir, f"{name}.pem")
        op = server.operator
        op.wait_answer(op.register(account, name, gridex.keygen(path)))
        keys[account] = path
    server.operator.wait_answer(server.operator.deposit(1, gridex.parse_price("1000")))
    if capacity is not None:
        server.operator.wait_answer(server.operator.set_capacity(2, "H100-80G", capacity))
    return server.client(1, keys[1]), server.client(2, keys[2])


@pytest.fixture(scope="module")
def traders(server):
    """register_traders() without capacity (on a server with a hook, a seller's
    hosts give it), closed after the module."""
    buyer, seller = register_traders(server, capacity=None)
    yield buyer, seller
    buyer.close()
    seller.close()


def _db_url(base: str, db: str, user: str) -> str:
    u = urllib.parse.urlsplit(base)
    q = [(k, v) for k, v in urllib.parse.parse_qsl(u.query) if k != "user"] + [("user", user)]
    return f"{u.scheme}://{u.netloc}/{db}?{urllib.parse.urlencode(q)}"


@dataclass
class Server:
    dir: str
    port: int
    ca: str
    operator: gridex.Client
    app_url: str
    owner_url: str

    def client(self, account: int = 0, key: str | None = None) -> gridex.Client:
        return gridex.Client(
            "127.0.0.1", self.port, ca_file=self.ca, server_name="localhost",
            account=account, key_file=key,
        ).connect()

    def sql(self, query: str) -> str:
        return subprocess.run(
            ["psql", self.owner_url, "-Atqc", query], check=True, capture_output=True, text=True
        ).stdout.strip()


@pytest.fixture(scope="module")
def server(request):
    # A test module may name more gridexd arguments in GRIDEXD_ARGS.
    base = os.environ.get("GRIDEX_TEST_DATABASE_URL")
    if not base:
        pytest.skip("GRIDEX_TEST_DATABASE_URL is not set (./scripts/test sets it)")
    tmp = tempfile.mkdtemp(prefix="gridex-pytest-")
    os.chmod(tmp, 0o755)
    db = f"gridex_pytest_{os.getpid()}"
    admin = _db_url(base, "postgres", "gridex")
    subprocess.run(["psql", admin, "-qc", f"create database {db}"], check=True)
    owner, app = _db_url(base, db, "gridex"), _db_url(base, db, "gridex_app")
    subprocess.run(
        [os.environ["GRIDEX_TEST_ADMIN"], f"--database={owner}",
         f"--dir={os.environ['GRIDEX_TEST_MIGRATIONS']}", "migrate"],
        check=True, capture_output=True,
    )
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", f"{tmp}/key.pem", "-out", f"{tmp}/cert.pem", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    op_pub = gridex.keygen(f"{tmp}/operator.pem")
    log = open(f"{tmp}/log", "w")
    proc = subprocess.Popen(
        [os.environ["GRIDEX_TEST_GRIDEXD"], f"--tls-cert={tmp}/cert.pem",
         f"--tls-key={tmp}/key.pem", f"--database-url={app}", "--listen=127.0.0.1:0",
         "--metrics-listen=", f"--ready-file={tmp}/ready", f"--journal-dir={tmp}/journal",
         "--operator-account=500",
         f"--operator-key={op_pub.hex()}", "--maker-bps=10", "--taker-bps=20",
         "--batch-ms-max=5", *getattr(request.module, "GRIDEXD_ARGS", [])],
        stdout=log, stderr=log,
    )
    try:
        for _ in range(1000):
            if os.path.exists(f"{tmp}/ready") or proc.poll() is not None:
                break
            time.sleep(0.01)
        assert proc.poll() is None, open(f"{tmp}/log").read()
        ready = dict(line.split("=", 1) for line in open(f"{tmp}/ready").read().split())
        port = int(ready["listen"].rsplit(":", 1)[1])
        op = gridex.Client("127.0.0.1", port, ca_file=f"{tmp}/cert.pem", server_name="localhost",
                           account=500, key_file=f"{tmp}/operator.pem").connect()
        yield Server(tmp, port, f"{tmp}/cert.pem", op, app, owner)
        op.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0, open(f"{tmp}/log").read()
        log.close()
        subprocess.run(["psql", admin, "-qc", f"drop database {db}"], check=True)
