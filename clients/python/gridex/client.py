# SPDX-License-Identifier: Apache-2.0
"""A small, typed client of gridexd: TLS 1.3, signed requests, events.

One Client is one connection (not thread-safe). Requests return their nonce;
their answer, the execution reports that follow and market data arrive from
events(). wait_answer() and the order helpers wait for the ACK or REJECT.
"""

from __future__ import annotations

import enum
import json
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Union

import nacl.signing

from . import gridex_pb2 as pb
from .keys import load_signing_key

DOMAIN = b"gridex/v1/request\x00"
FRAME_MAX = 16 << 20


class GridexError(Exception):
    """The connection failed or the server sent something unreadable."""


class Rejected(GridexError):
    """The server refused a request; reason is the RejectReason's name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Side(enum.IntEnum):
    BUY = 1
    SELL = 2


class TimeInForce(enum.IntEnum):
    GTC = 1
    GTD = 2
    IOC = 3
    FOK = 4
    POST_ONLY = 5


@dataclass(frozen=True)
class Ack:
    account: int
    nonce: int
    sequence: int


@dataclass(frozen=True)
class Reject:
    account: int
    nonce: int
    reason: str
    detail: str


@dataclass(frozen=True)
class ExecutionReport:
    account: int
    client_order_id: int
    order_id: int
    product: str
    side: Side
    exec_type: str  # NEW, PARTIAL_FILL, FILL, CANCELED, EXPIRED_ORDER, REPLACED
    price: int
    last_price: int
    last_quantity: int
    cumulative_quantity: int
    leaves_quantity: int
    fill_id: int
    fee: int
    sequence: int
    time_ms: int


@dataclass(frozen=True)
class Level:
    price: int
    quantity: int
    orders: int


@dataclass(frozen=True)
class BookSnapshot:
    product: str
    sequence: int
    bids: list[Level]
    asks: list[Level]


@dataclass(frozen=True)
class BookUpdate:
    product: str
    sequence: int
    side: Side
    price: int
    quantity: int  # 0: the level is gone
    orders: int


@dataclass(frozen=True)
class Trade:
    product: str
    sequence: int
    price: int
    quantity: int
    aggressor: Side
    time_ms: int


@dataclass(frozen=True)
class Lease:
    """A lease of the account as buyer or seller (docs/provisioning.md)."""

    lease_id: int
    buyer: int
    seller: int
    host: str
    accelerator: str
    vendor: str
    devices: list[str]
    quantity: int  # GPUs
    start_ms: int  # the delivery window
    end_ms: int
    state: str  # SCHEDULED, STARTING, RUNNING, COMPLETED, FAILED_DELIVERY, CANCELLED
    reason: str  # FAILED_DELIVERY, CANCELLED: why
    running_ms: int  # 0: not yet
    ended_ms: int  # 0: not yet
    fill_ids: list[int]
    sequence: int


@dataclass(frozen=True)
class Host:
    """A registered host, in the result of query_hosts()."""

    name: str
    seller: int
    accelerator: str
    vendor: str
    devices: list[str]
    withdrawn: bool  # out of service: no new leases
    live_leases: int


@dataclass(frozen=True)
class QueryResult:
    account: int
    nonce: int
    orders: list[ExecutionReport] = field(default_factory=list)
    fills: list[ExecutionReport] = field(default_factory=list)
    available: Optional[int] = None
    reserved: Optional[int] = None
    leases: list[Lease] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)
    # The rows are the first ones only: the server's query_rows_max or
    # query_bytes_max left the others out. next is the cursor that asks for the
    # rest (the query_* methods' cursor; query_pages() follows it), 0 when there
    # is none to ask for.
    truncated: bool = False
    next: int = 0


Event = Union[Ack, Reject, ExecutionReport, BookSnapshot, BookUpdate, Trade, QueryResult, Lease]


def _text(b: bytes) -> str:
    # Names are ASCII tokens; anything else is shown, never trusted.
    return b.decode("ascii", errors="replace")


def _report(e: "pb.ExecutionReport") -> ExecutionReport:
    return ExecutionReport(
        account=e.account,
        client_order_id=e.client_order_id,
        order_id=e.order_id,
        product=_text(e.product),
        side=Side.SELL if e.side == pb.SELL else Side.BUY,
        exec_type=pb.ExecType.Name(e.exec_type),
        price=e.price,
        last_price=e.last_price,
        last_quantity=e.last_quantity,
        cumulative_quantity=e.cumulative_quantity,
        leaves_quantity=e.leaves_quantity,
        fill_id=e.fill_id,
        fee=e.fee,
        sequence=e.sequence,
        time_ms=e.time_ms,
    )


def _lease(m: "pb.Lease") -> Lease:
    return Lease(
        lease_id=m.lease_id,
        buyer=m.buyer,
        seller=m.seller,
        host=_text(m.host),
        accelerator=_text(m.accelerator),
        vendor=_text(m.vendor),
        devices=[_text(d) for d in m.devices],
        quantity=m.quantity,
        start_ms=m.start_ms,
        end_ms=m.end_ms,
        state=pb.LeaseState.Name(m.state) if m.state in pb.LeaseState.values() else "UNKNOWN",
        reason=_text(m.reason),
        running_ms=m.running_ms,
        ended_ms=m.ended_ms,
        fill_ids=list(m.fill_ids),
        sequence=m.sequence,
    )


def _host(m: "pb.Host") -> Host:
    return Host(
        name=_text(m.name),
        seller=m.seller,
        accelerator=_text(m.accelerator),
        vendor=_text(m.vendor),
        devices=[_text(d) for d in m.devices],
        withdrawn=m.withdrawn,
        live_leases=m.live_leases,
    )


def _levels(levels) -> list[Level]:
    return [Level(l.price, l.quantity, l.orders) for l in levels]


def _event(f: "pb.ServerFrame") -> Event:
    if f.HasField("ack"):
        return Ack(f.ack.account, f.ack.nonce, f.ack.sequence)
    if f.HasField("reject"):
        r = f.reject
        return Reject(r.account, r.nonce, pb.RejectReason.Name(r.reason), _text(r.detail))
    if f.HasField("report"):
        return _report(f.report)
    if f.HasField("snapshot"):
        s = f.snapshot
        return BookSnapshot(_text(s.product), s.sequence, _levels(s.bids), _levels(s.asks))
    if f.HasField("update"):
        u = f.update
        side = Side.SELL if u.side == pb.SELL else Side.BUY
        return BookUpdate(_text(u.product), u.sequence, side, u.price, u.quantity, u.orders)
    if f.HasField("trade"):
        t = f.trade
        side = Side.SELL if t.aggressor == pb.SELL else Side.BUY
        return Trade(_text(t.product), t.sequence, t.price, t.quantity, side, t.time_ms)
    if f.HasField("result"):
        r = f.result
        bal = r.balances[0] if r.balances else None
        return QueryResult(
            account=r.account,
            nonce=r.nonce,
            orders=[_report(o) for o in r.orders],
            fills=[_report(o) for o in r.fills],
            available=bal.available if bal else None,
            reserved=bal.reserved if bal else None,
            leases=[_lease(m) for m in r.leases],
            hosts=[_host(m) for m in r.hosts],
            truncated=r.truncated,
            next=r.next,
        )
    if f.HasField("lease"):
        return _lease(f.lease)
    raise GridexError("the server sent a frame this client cannot read")


class Client:
    """A connection to gridexd, with an account and its key when given."""

    def __init__(
        self,
        host: str = "localhost",
        port: int = 7400,
        *,
        ca_file: Optional[str] = None,
        server_name: Optional[str] = None,
        account: int = 0,
        key_file: Optional[str] = None,
        expiry_ms: int = 30_000,
        timeout: float = 10.0,
    ) -> None:
        if bool(account) != bool(key_file):
            raise ValueError("account and key_file go together")
        self.host, self.port, self.account = host, port, account
        self.server_name = server_name or host
        self.expiry_ms, self.timeout = expiry_ms, timeout
        self._key: Optional[nacl.signing.SigningKey] = (
            load_signing_key(key_file) if key_file else None
        )
        self._ctx = ssl.create_default_context(cafile=ca_file)
        self._ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self._sock: Optional[ssl.SSLSocket] = None
        self._buf = bytearray()
        self._last_nonce = 0
        self._topics: dict[str, bool] = {}

    # -- connection --

    def connect(self) -> "Client":
        """Connects (again), verifying the certificate; resubscribes known topics."""
        self.close()
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._sock = self._ctx.wrap_socket(raw, server_hostname=self.server_name)
        except (ssl.SSLError, OSError) as e:
            raw.close()
            raise GridexError(f"TLS handshake with {self.host}:{self.port}: {e}") from e
        for topic, trades in self._topics.items():
            self._send_subscribe(topic, trades, True)
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf.clear()

    def __enter__(self) -> "Client":
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        """The socket, for selectors in the caller's loop."""
        if self._sock is None:
            raise GridexError("not connected")
        return self._sock.fileno()

    # -- sending --

    def _send_frame(self, frame: "pb.ClientFrame") -> None:
        if self._sock is None:
            raise GridexError("not connected")
        body = frame.SerializeToString()
        try:
            self._sock.sendall(struct.pack(">I", len(body)) + body)
        except OSError as e:
            self.close()
            raise GridexError(f"sending: {e}") from e

    def _nonce(self) -> int:
        # Increases across processes of one account as long as the clock does.
        self._last_nonce = max(self._last_nonce + 1, time.time_ns() // 1000)
        return self._last_nonce

    def _send(self, req: "pb.Request") -> int:
        if self._key is None:
            raise GridexError("this client has no account and key")
        req.account = self.account
        req.nonce = self._nonce()
        req.expires_at_ms = time.time_ns() // 1_000_000 + self.expiry_ms
        body = req.SerializeToString()
        signature = self._key.sign(DOMAIN + body).signature
        self._send_frame(pb.ClientFrame(request=pb.SignedRequest(body=body, signature=signature)))
        return req.nonce

    def new_order(
        self,
        product: str,
        side: Side,
        price: int,
        quantity: int,
        *,
        client_order_id: Optional[int] = None,
        tif: TimeInForce = TimeInForce.GTC,
        expire_ms: int = 0,
        hours: int = 0,
        self_trade: int = 0,
    ) -> int:
        """Sends an order (a FOK basket when hours > 0); returns its nonce."""
        if price < 1 or quantity < 1:
            raise ValueError("price and quantity must be above 0 (micro-units, GPUs)")
        req = pb.Request(
            client_order_id=client_order_id or time.time_ns() // 1000,
            product=product.encode("ascii"),
            side=int(side),
            self_trade=self_trade,
            price=price,
            quantity=quantity,
        )
        if hours:
            req.type, req.hours, req.time_in_force = pb.NEW_BASKET, hours, pb.FOK
        else:
            req.type, req.time_in_force = pb.NEW_ORDER, int(tif)
            if tif == TimeInForce.GTD:
                req.expire_ms = expire_ms
        return self._send(req)

    def cancel(self, client_order_id: int) -> int:
        return self._send(pb.Request(type=pb.CANCEL, target_client_order_id=client_order_id))

    def cancel_all(self, scope: Optional[str] = None) -> int:
        return self._send(pb.Request(type=pb.CANCEL_ALL, product=(scope or "").encode("ascii")))

    def modify(self, client_order_id: int, price: int, quantity: int) -> int:
        return self._send(
            pb.Request(
                type=pb.MODIFY,
                target_client_order_id=client_order_id,
                price=price,
                quantity=quantity,
            )
        )

    # Orders, fills, leases and hosts come in pages: cursor is the next of the
    # QueryResult before (0: the first page).
    def query_orders(self, scope: Optional[str] = None, cursor: int = 0) -> int:
        return self._send(
            pb.Request(type=pb.QUERY_ORDERS, product=(scope or "").encode("ascii"), cursor=cursor)
        )

    def query_fills(self, scope: Optional[str] = None, cursor: int = 0) -> int:
        return self._send(
            pb.Request(type=pb.QUERY_FILLS, product=(scope or "").encode("ascii"), cursor=cursor)
        )

    def query_balance(self) -> int:
        return self._send(pb.Request(type=pb.QUERY_BALANCE))

    # -- leases (a server with a provisioning hook: docs/provisioning.md) --

    def set_workload(self, command: list[str], env: Optional[dict[str, str]] = None) -> int:
        """What runs on the GPUs this account buys; needed before it may bid."""
        if not command or not all(isinstance(a, str) for a in command):
            raise ValueError("a workload's command is a non-empty list of strings")
        workload: dict[str, object] = {"command": list(command)}
        if env:
            workload["env"] = dict(env)
        text = json.dumps(workload, separators=(",", ":"))
        return self._send(pb.Request(type=pb.SET_WORKLOAD, workload=text.encode("utf-8")))

    def register_host(
        self, name: str, accelerator_class: str, vendor: str, devices: list[str]
    ) -> int:
        """A seller's host: its class, vendor (nvidia, amd, ascend, cambricon) and 1-16
        device UUIDs; registering it again after withdraw_host() puts it back."""
        if not 1 <= len(devices) <= 16:
            raise ValueError("a host has 1-16 devices")
        return self._send(
            pb.Request(
                type=pb.REGISTER_HOST,
                name=name.encode("ascii"),
                product=accelerator_class.encode("ascii"),
                vendor=vendor.encode("ascii"),
                devices=[d.encode("ascii") for d in devices],
            )
        )

    def withdraw_host(self, name: str) -> int:
        """Takes a host out of service (its seller, or the operator): no new leases."""
        return self._send(pb.Request(type=pb.WITHDRAW_HOST, name=name.encode("ascii")))

    def query_leases(self, cursor: int = 0) -> int:
        return self._send(pb.Request(type=pb.QUERY_LEASES, cursor=cursor))

    def query_hosts(self, cursor: int = 0) -> int:
        return self._send(pb.Request(type=pb.QUERY_HOSTS, cursor=cursor))

    # -- operator requests (only the exchange's operator account may send them) --

    def register(self, account: int, name: str, public_key: bytes) -> int:
        return self._send(
            pb.Request(
                type=pb.REGISTER_ACCOUNT,
                target_account=account,
                name=name.encode("ascii"),
                public_key=public_key,
            )
        )

    def deposit(self, account: int, amount: int) -> int:
        return self._send(pb.Request(type=pb.DEPOSIT, target_account=account, amount=amount))

    def withdraw(self, account: int, amount: int) -> int:
        return self._send(pb.Request(type=pb.WITHDRAW, target_account=account, amount=amount))

    def set_capacity(self, account: int, accelerator_class: str, gpus: int) -> int:
        return self._send(
            pb.Request(
                type=pb.SET_CAPACITY,
                target_account=account,
                product=accelerator_class.encode("ascii"),
                quantity=gpus,
            )
        )

    def halt(self, product: str) -> int:
        return self._send(pb.Request(type=pb.HALT, product=product.encode("ascii")))

    def resume(self, product: str) -> int:
        return self._send(pb.Request(type=pb.RESUME, product=product.encode("ascii")))

    def _send_subscribe(self, topic: str, trades: bool, subscribe: bool) -> None:
        name = topic.encode("ascii")
        if subscribe:
            self._send_frame(pb.ClientFrame(subscribe=pb.Subscribe(product=name, trades=trades)))
        else:
            self._send_frame(pb.ClientFrame(unsubscribe=pb.Unsubscribe(product=name)))

    def subscribe(self, topic: str, trades: bool = False) -> None:
        """Market data of a product or an accelerator class; kept across reconnects."""
        self._topics[topic] = trades
        self._send_subscribe(topic, trades, True)

    def unsubscribe(self, topic: str) -> None:
        self._topics.pop(topic, None)
        self._send_subscribe(topic, False, False)

    # -- receiving --

    def next_event(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, or None when none arrives within timeout (None: block)."""
        if self._sock is None:
            raise GridexError("not connected")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if len(self._buf) >= 4:
                (n,) = struct.unpack(">I", self._buf[:4])
                if n == 0 or n > FRAME_MAX:
                    self.close()
                    raise GridexError(f"frame length {n} from the server")
                if len(self._buf) >= 4 + n:
                    frame = pb.ServerFrame()
                    frame.ParseFromString(bytes(self._buf[4 : 4 + n]))
                    del self._buf[: 4 + n]
                    return _event(frame)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            except OSError as e:
                self.close()
                raise GridexError(f"receiving: {e}") from e
            if not chunk:
                self.close()
                raise GridexError("the server closed the connection")
            self._buf += chunk

    def events(self, timeout: Optional[float] = None) -> Iterator[Event]:
        """Events until one does not arrive within timeout."""
        while (ev := self.next_event(timeout)) is not None:
            yield ev

    def wait_answer(self, nonce: int, timeout: float = 10.0) -> tuple[Ack, list[Event]]:
        """Waits for the ACK of nonce; returns it with the other events seen meanwhile.
        Raises Rejected with the server's reason."""
        seen: list[Event] = []
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next_event(max(0.0, deadline - time.monotonic()))
            if ev is None:
                raise GridexError(f"no answer to nonce {nonce} within {timeout} s")
            if isinstance(ev, Reject) and ev.nonce == nonce:
                raise Rejected(ev.reason, ev.detail)
            if isinstance(ev, Ack) and ev.nonce == nonce:
                return ev, seen
            seen.append(ev)

    def query_pages(
        self, ask: Callable[[int], int], timeout: float = 10.0
    ) -> Iterator[QueryResult]:
        """Every page of an answer, first to last: ask(cursor) sends the query
        (for example lambda c: client.query_orders(cursor=c)), first with 0,
        then with each page's next. Each page counts against the account's
        queries_per_second and the shared query_rows_per_second; a refusal
        raises Rejected."""
        cursor = 0
        while True:
            page = self.query(ask(cursor), timeout)
            yield page
            if not page.truncated or page.next == 0:
                return
            if page.next == cursor:
                raise GridexError(f"the server sent the same page cursor twice ({cursor})")
            cursor = page.next

    def query(self, nonce: int, timeout: float = 10.0) -> QueryResult:
        """The result of a query sent with query_*()."""
        self.wait_answer(nonce, timeout)
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next_event(max(0.0, deadline - time.monotonic()))
            if ev is None:
                raise GridexError(f"no result for nonce {nonce}")
            if isinstance(ev, QueryResult) and ev.nonce == nonce:
                return ev
