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
    global _last
    millis = int((time.time() if now is None else now) * 1000)
    if _last[0] != millis:  # the time's ten characters, made once per millisecond
        _last = (millis, "".join([_PAIRS[(millis >> s) & 1023] for s in (40, 30, 20, 10, 0)]))
    r, p = _random.getrandbits(80), _PAIRS
    return (
        f"{prefix}_{_last[1]}{p[r >> 70]}{p[(r >> 60) & 1023]}{p[(r >> 50) & 1023]}"
        f"{p[(r >> 40) & 1023]}{p[(r >> 30) & 1023]}{p[(r >> 20) & 1023]}"
        f"{p[(r >> 10) & 1023]}{p[r & 1023]}"
    )


# Pairs of characters for 10 bits at a time; 130 bits (two zero bits, 48 of time, 80
# random) are 13 pairs.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_last: tuple[int, str] = (-1, "")
