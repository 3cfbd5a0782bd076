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
    """``prefix`` + 26 characters: 48 bits of milliseconds, then 80 random bits."""
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | _random.getrandbits(80)
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return f"{prefix}_{''.join(reversed(chars))}"
