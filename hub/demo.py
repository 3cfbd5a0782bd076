"""The demo's secrets (demo.env) must not reach real traffic unnoticed: each of them begins
with ``demo`` (a Standard Webhooks one, ``whsec_`` and base64 of ``demo…``), and
``hub check`` names every secret of the configuration that is one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, SecretStr

__all__ = ["demo_secrets"]

_PREFIXES = ("demo", "whsec_ZGVtb")  # base64 of "demo" begins ZGVtb


def _secrets(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, SecretStr):
        yield path, value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _secrets(item, f"{path}.{i}")


def demo_secrets(sections: dict[str, dict[str, BaseModel]]) -> list[str]:
    """The paths (``sources.calendly.signing_key``) of the secrets that hold a demo value."""
    found = []
    for section, entries in sections.items():
        for name, model in entries.items():
            for path, secret in _secrets(model, f"{section}.{name}"):
                if secret.startswith(_PREFIXES):
                    found.append(path)
    return found
