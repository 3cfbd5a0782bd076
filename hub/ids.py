"""Identifiers that sort by creation time: ``evt_01JD…``."""

from __future__ import annotations

import random
import time

__all__ = ["new_id"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
# Ids name things, they guard nothing (leases and links use secrets): a fast generator,
# seeded from the system's randomness, will do.
_random = random.Random()


def new_id(prefix: str, now: float | None = None) -> str:
    """``prefix`` + 26 characters: 48 bits of milliseconds, then 80 random bits, in
    Crockford's base32 (so ids sort by time)."""
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | _random.getrandbits(80)
    return f"{prefix}_{_encode(value >> 65)}{_encode(value & _LOW)}"


_LOW = (1 << 65) - 1
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]


def _encode(value: int) -> str:
    """13 base32 characters of a 65-bit number."""
    text = _ALPHABET[value >> 60]
    for shift in range(50, -1, -10):
        text += _PAIRS[(value >> shift) & 1023]
    return text
