# SPDX-License-Identifier: Apache-2.0
"""gridex: a client of the gridex GPU-hour exchange (docs/python.md)."""

from .client import (
    Ack,
    BookSnapshot,
    BookUpdate,
    Client,
    Event,
    ExecutionReport,
    GridexError,
    Host,
    Lease,
    Level,
    QueryResult,
    Reject,
    Rejected,
    Side,
    TimeInForce,
    Trade,
)
from .keys import KeyFileError, keygen, load_signing_key, public_key
from .prices import format_price, parse_price

__all__ = [
    "Ack", "BookSnapshot", "BookUpdate", "Client", "Event", "ExecutionReport", "GridexError",
    "Host", "KeyFileError", "Lease", "Level", "QueryResult", "Reject", "Rejected", "Side", "TimeInForce", "Trade",
    "format_price", "keygen", "load_signing_key", "parse_price", "public_key",
]
