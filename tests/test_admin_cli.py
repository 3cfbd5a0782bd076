"""The operators' commands on the service layer: hub dlq, replay, destinations, events,
bookings; human-readable UTC times, --json for machines, errors that say what is wrong."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from hub.cli import _parser, main
from tests.admin_helpers import booking_body
from tests.conftest import ENVIRON, config_yaml

UTC_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


@pytest.fixture
def hub_cli(tmp_path, monkeypatch, redis_prefix, sink, capsys):
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "hub.yaml"
    path.write_text(config_yaml(redis_prefix, sink.url))

    async def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, [args[0], "--config", str(path), *args[1:]])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


async def test_dead_letters_show_times_in_utc_and_refuse_unknown_destinations(
    start_hub, sink, hub_cli
) -> None:
    hub = await start_hub()
    sink.default = 422
    await hub.post_calendly(booking_body(1))
    await hub.worker.drain()
    [dead, _] = await hub.store.dead_letters()

    code, out, _ = await hub_cli("dlq", "list")
    assert code == 0 and dead.id in out and UTC_TIME.search(out)
    code, out, err = await hub_cli("dlq", "list", "--destination", "nowhere")
    assert code == 2 and out == ""
    assert "no destination named 'nowhere'" in err
    code, out, _ = await hub_cli("dlq", "show", dead.id)
    assert code == 0
    assert re.search(r"^created\s+2026-11-20 08:15:45 UTC$", out, re.M)
    assert re.search(r"^\s+1\s+2026-11-20 08:15:45 UTC\s+dead\s+.*HTTP 422", out, re.M)
    assert "1700000000" not in out and not re.search(r"\d{10}\.\d", out)  # no epoch floats
    code, out, _ = await hub_cli("dlq", "show", dead.id, "--json")
    assert json.loads(out)["state"] == "dead"
    code, _, err = await hub_cli("dlq", "show", "job_unknown")
    assert code == 1 and "no job" in err

    sink.default = 202
    code, out, _ = await hub_cli("replay", "--destination", "inxmail")
    assert code == 0 and "2 dead letters due again" in out
    code, out, err = await hub_cli("replay", "--destination", "nowhere")
    assert code == 2 and "nowhere" in err


async def test_destinations_and_enable_needs_a_name(start_hub, sink, hub_cli) -> None:
    await start_hub()
    code, out, _ = await hub_cli("destinations")
    assert code == 0 and out.startswith("inxmail") and "dead 0" in out
    code, out, _ = await hub_cli("destinations", "--json")
    assert json.loads(out)[0]["name"] == "inxmail"
    with pytest.raises(SystemExit) as exit_:
        await asyncio.to_thread(main, ["destinations", "enable"])
    assert exit_.value.code == 2
    code, out, _ = await hub_cli("destinations", "enable", "inxmail")
    assert code == 0 and "inxmail: enabled" in out
    code, _, err = await hub_cli("destinations", "enable", "nowhere")
    assert code == 1 and "nowhere" in err


async def test_events_and_bookings(start_hub, sink, hub_cli) -> None:
    hub = await start_hub()
    event_id = (await (await hub.post_calendly(booking_body(1, "ada@example.org"))).json())["id"]
    await hub.worker.drain()
    code, out, _ = await hub_cli("events", "list")
    assert code == 0 and event_id in out and "booking_confirmed" in out and "3 done" in out
    assert UTC_TIME.search(out)
    code, out, _ = await hub_cli("events", "list", "--email", "ADA@example.org", "--json")
    [item] = json.loads(out)["items"]
    assert item["id"] == event_id
    code, out, _ = await hub_cli("events", "list", "--email", "other@example.org")
    assert out == "no events\n"
    code, _, err = await hub_cli("events", "list", "--limit", "0")
    assert code == 2 and "--limit" in err
    code, _, err = await hub_cli("events", "list", "--since", "last tuesday")
    assert code == 2 and "expected a duration" in err
    code, out, _ = await hub_cli("events", "show", event_id)
    assert code == 0 and "invitee.created" in out and "deliver" in out
    code, _, err = await hub_cli("events", "show", "evt_unknown")
    assert code == 1 and "no event" in err

    code, out, _ = await hub_cli("bookings", "show", item["booking"])
    assert code == 0
    assert "timeline" in out and f"event    {event_id}" in out and "message" in out
    code, out, _ = await hub_cli("bookings", "show", item["booking"], "--json")
    assert json.loads(out)["uid"] == item["booking"]


def test_help_texts_carry_no_markup() -> None:
    parser = _parser()
    texts = [parser.format_help()]
    stack = [parser]
    while stack:
        current = stack.pop()
        for action in current._actions:
            choices = getattr(action, "choices", None)
            for child in choices.values() if isinstance(choices, dict) else ():
                if hasattr(child, "format_help"):
                    texts.append(child.format_help())
                    stack.append(child)
    assert len(texts) > 10
    for text in texts:
        assert "``" not in text and ":class:" not in text and ".. " not in text, text
