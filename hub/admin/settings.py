"""``admin:`` in hub.yaml: who may use the admin API and the console."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from hub.units import Duration

__all__ = ["AdminConfig", "AdminToken"]

_HASHED = re.compile(r"^sha256:[0-9a-fA-F]{64}$")


class AdminToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, description="Who holds it; named in logs")
    token: SecretStr = Field(
        description="The bearer token itself (16 characters or more), or sha256:<hex> of it"
    )
    role: Literal["viewer", "operator"] = Field(
        description="viewer: read only; operator: may also replay, enable and record outcomes"
    )

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("a token's name must be printable text")
        return value

    @field_validator("token")
    @classmethod
    def _strong(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if secret.startswith("sha256:"):
            if not _HASHED.match(secret):
                raise ValueError("expected sha256: followed by 64 hex digits")
        elif len(secret) < 16 or not secret.isprintable() or secret.strip() != secret:
            raise ValueError(
                "a token must be 16 printable characters or more, without surrounding spaces"
            )
        return value

    def digest(self) -> bytes:
        """SHA-256 of the token, however it was configured."""
        secret = self.token.get_secret_value()
        if secret.startswith("sha256:"):
            return bytes.fromhex(secret[7:])
        return hashlib.sha256(secret.encode()).digest()


class AdminConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tokens: list[AdminToken] = Field(
        [], description="Bearer tokens of the admin API and the console; none: both are off"
    )
    session_ttl: Duration = Field(
        timedelta(hours=8),
        ge=timedelta(minutes=1),
        description="How long a console sign-in lasts",
    )

    @field_validator("tokens")
    @classmethod
    def _unique(cls, tokens: list[AdminToken]) -> list[AdminToken]:
        names = [t.name for t in tokens]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"token name {name!r} is used twice")
        digests = [t.digest() for t in tokens]
        if len(set(digests)) != len(digests):
            raise ValueError("two tokens are the same")
        return tokens

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def who(self, presented: str) -> AdminToken | None:
        """The token ``presented`` is, compared in constant time against every one."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = None
        for token in self.tokens:
            if hmac.compare_digest(digest, token.digest()):
                found = token
        return found

    def session_key(self) -> bytes:
        """The key console sessions are signed with: derived from every token, so all the
        hub's processes agree and changing the tokens ends every session."""
        material = b"".join(sorted(t.digest() for t in self.tokens))
        return hmac.new(material, b"hub console session v1", hashlib.sha256).digest()
