"""Keyed digests of the values the read side looks events up by (a client's email).

With encryption keys, a digest is an HMAC-SHA256 under a key derived from each encryption
key, so Redis holds no email in plain text and nobody without the key can test a guess.
The first key writes; every key is tried on lookup, so a rotated key still finds what
was written before. Without encryption keys the digest is a plain hash (the store holds
event bodies in plain text then anyway).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

__all__ = ["Digests"]

_PURPOSE = b"hub lookup digest v1"


class Digests:
    def __init__(self, keys: Sequence[str] = ()) -> None:
        self._keys = [
            hmac.new(base64.urlsafe_b64decode(key.encode()), _PURPOSE, hashlib.sha256).digest()
            for key in keys
        ] or [_PURPOSE]

    @staticmethod
    def _normal(value: str) -> str:
        return value.strip().casefold()

    def _digest(self, key: bytes, value: str) -> str:
        return hmac.new(key, self._normal(value).encode(), hashlib.sha256).hexdigest()[:32]

    def write(self, value: str) -> str:
        """The digest stored for ``value`` ('' for none)."""
        return self._digest(self._keys[0], value) if value else ""

    def lookups(self, value: str) -> list[str]:
        """The digests ``value`` may have been stored under."""
        return [self._digest(key, value) for key in self._keys]
