"""Shared set-up of the admin API, console and CLI tests: tokens, and Calendly bookings
that differ by client and booking."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from tests.conftest import fixture_json

VIEWER = "viewer-token-0123456789"
OPERATOR = "operator-token-0123456789"
HASHED = "hashed-operator-token-0123"
TOKENS = [
    {"name": "ana", "token": VIEWER, "role": "viewer"},
    {"name": "ops", "token": OPERATOR, "role": "operator"},
    {"name": "robot", "token": "sha256:" + hashlib.sha256(HASHED.encode()).hexdigest(),
     "role": "operator"},
]  # fmt: skip
ADMIN = {"tokens": TOKENS}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def booking_body(n: int, email: str = "mara.keller@example.org", start: str | None = None) -> bytes:
    """The Calendly invitee.created fixture as the ``n``-th booking of ``email``."""
    data: dict[str, Any] = copy.deepcopy(fixture_json("calendly/invitee_created.json"))
    payload = data["payload"]
    payload["uri"] = payload["uri"].rsplit("/", 1)[0] + f"/INVITEE{n:04d}"
    payload["email"] = email
    event = payload["scheduled_event"]
    event["uri"] = event["uri"].rsplit("/", 1)[0] + f"/EVENT{n:04d}"
    if start is not None:
        event["start_time"] = start
    return json.dumps(data).encode()
