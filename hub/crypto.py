"""Encryption of personal data at rest: event bodies and job payloads in the store.

Fernet (AES-128-CBC with HMAC-SHA256) through MultiFernet: the first key encrypts, every
key decrypts, so keys rotate by putting a new one first and dropping the old one once
nothing it encrypted is left. Values written without encryption stay readable.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from hub.errors import StoreError

__all__ = ["Cipher", "new_key"]

_PLAIN_JSON = (b"{", b"[")
_FERNET = b"gAAAAA"  # every Fernet token starts so (version byte 0x80, then the time)


def new_key() -> str:
    """A fresh key for ``store.encryption_keys``."""
    return Fernet.generate_key().decode()


class Cipher:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def open(self, data: bytes) -> bytes:
        if data.startswith(_PLAIN_JSON) or not data.startswith(_FERNET):
            return data
        try:
            return self._fernet.decrypt(data)
        except InvalidToken:
            raise StoreError("stored data does not decrypt with any configured key") from None
