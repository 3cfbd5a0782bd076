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


async def test_check_says_whether_the_admin_api_is_on(start_hub, hub_cli, tmp_path) -> None:
    code, out, _ = await hub_cli("check")
    assert code == 0 and "admin API and console: off (no admin.tokens)" in out
    path = tmp_path / "hub.yaml"
    text = (
        path.read_text()
        + "admin:\n  tokens:\n    - {name: a, token: abcdefghijklmnop, role: viewer}\n"
    )
    path.write_text(text)
    code, out, _ = await hub_cli("check")
    assert code == 0 and "admin API and console: on (1 token)" in out
    for token, message in (("short", "16 printable characters"), ("sha256:abc", "64 hex")):
        path.write_text(text.replace("abcdefghijklmnop", token))
        code, _, err = await hub_cli("check")
        assert code == 2 and message in err and "admin.tokens.0.token" in err


def test_the_readmes_admin_examples_load() -> None:
    from pathlib import Path

    import yaml

    from hub.config import parse_config
    from hub.plugins import get_plugin_manager
    from tests.conftest import config_data

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    admin = readme.split("### `admin`", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    route = readme.split("**Meeting outcomes.**", 1)[1].split("```yaml\n", 1)[1].split("```")[0]
    data = config_data("p", "http://127.0.0.1:9")
    data.update(yaml.safe_load(admin))
    data["destinations"]["crm"] = {
        "connector": "webhook",
        "url": "http://127.0.0.1:9/crm",
        "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    }
    del data["routes"]
    text = yaml.safe_dump(data) + "routes:\n" + route  # hub.yaml reads `on:` as a key
    environ = {**ENVIRON, "HUB_ADMIN_TOKEN": "x" * 20}
    config = parse_config(text, get_plugin_manager(), environ=environ)
    assert [t.role for t in config.admin.tokens] == ["operator", "viewer"]
    assert config.admin.who("test").name == "support"  # the sha256 in the example is "test"'s
    assert config.routes[0].on == ["meeting_outcome_changed"]
