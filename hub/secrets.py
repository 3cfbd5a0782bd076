"""Secrets in hub.yaml, refused when they are empty or too short to protect anything.

A variable that is set but empty (``CALENDLY_SIGNING_KEY=``) would otherwise make a key
anyone can sign with: the hub refuses to start, and the error names the option.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, SecretStr

__all__ = ["MIN_KEY_LENGTH", "Credential", "SigningKey", "strong_enough"]

MIN_KEY_LENGTH = 16  # characters of a key the hub signs or verifies with


def strong_enough(value: SecretStr, minimum: int = MIN_KEY_LENGTH) -> SecretStr:
    text = value.get_secret_value()
    if not text.strip():
        raise ValueError("is empty; set it (an empty secret would let anyone sign)")
    if len(text) < minimum:
        raise ValueError(f"is too short: a key needs at least {minimum} characters")
    return value


def _not_empty(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().strip():
        raise ValueError("is empty; set it")
    return value


# A key the hub verifies or signs with (webhook signing keys, link secrets, tokens).
SigningKey = Annotated[SecretStr, AfterValidator(strong_enough)]
# A credential another service issued (an API secret, a password): it must be set.
Credential = Annotated[SecretStr, AfterValidator(_not_empty)]
