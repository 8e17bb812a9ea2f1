# SPDX-License-Identifier: Apache-2.0
"""Prices are integers: micro-currency per GPU-hour. Never floats."""

from __future__ import annotations

import re

_PRICE = re.compile(r"^([0-9]+)(?:\.([0-9]{1,6}))?$")
_INT64_MAX = 2**63 - 1


def parse_price(text: str) -> int:
    """'2.45' -> 2450000. At most 6 decimals, above 0, fits int64."""
    m = _PRICE.match(text)
    if not m:
        raise ValueError(f"price {text!r}: a positive number with at most 6 decimals")
    micros = int(m.group(1)) * 1_000_000 + int((m.group(2) or "").ljust(6, "0"))
    if micros < 1 or micros > _INT64_MAX:
        raise ValueError(f"price {text!r} out of range")
    return micros


def format_price(micros: int) -> str:
    """2450000 -> '2.45' (at least two decimals)."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), 1_000_000)
    digits = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{whole}.{digits}"
