"""Identifiers: 48 bits of milliseconds and 80 random bits in Crockford's base32."""

from __future__ import annotations

import random
import uuid

import pytest

from hub import ids
from hub.model import HUB_NAMESPACE, booking_uuid

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def reference(prefix: str, millis: int, bits: int) -> str:
    """The id written out the long way: a 130-bit number, 26 characters of 5 bits."""
    value = (millis << 80) | bits
    return prefix + "_" + "".join(ALPHABET[(value >> (5 * i)) & 31] for i in range(25, -1, -1))


def test_ids_are_the_time_and_the_random_bits_in_crockford_base32(monkeypatch) -> None:
    monkeypatch.setattr(ids, "_random", random.Random(7))
    draws = random.Random(7)
    for now in (0.0, 1.0, 1_700_000_000.123, 1_700_000_000.1239, 1_700_000_000.124, 2.8e11):
        made = ids.new_id("evt", now)
        assert made == reference("evt", int(now * 1000), draws.getrandbits(80))
    assert len(made) == len("evt_") + 26


def test_ids_sort_by_time() -> None:
    made = [ids.new_id("job", 1_700_000_000 + n / 1000) for n in range(2000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)


@pytest.mark.parametrize(
    "key",
    ["", "b-1", "person:nora.weber@example.org", "Zürich €", "\U0001f600", "x" * 500],
)
def test_booking_uuids_are_uuid5_in_the_hub_namespace(key) -> None:
    assert booking_uuid.__wrapped__(key) == str(uuid.uuid5(HUB_NAMESPACE, key))


# Code points taking one, two, three and four octets in UTF-8 (surrogates left out).
OCTETS = ((32, 0x80), (0x80, 0x800), (0x800, 0xD800), (0x10000, 0x110000))


def test_many_booking_uuids_are_uuid5_in_the_hub_namespace() -> None:
    draws = random.Random(5)
    for _ in range(20_000):
        key = "".join(
            chr(draws.randrange(*draws.choice(OCTETS))) for _ in range(draws.randrange(40))
        )
        assert booking_uuid.__wrapped__(key) == str(uuid.uuid5(HUB_NAMESPACE, key))
