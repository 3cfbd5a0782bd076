"""docs/connectors.md cannot drift: every code block of the guide is run here, the Python
ones together as the one module a reader would put them in, and that module is then
loaded by the hub as a plugin."""

from __future__ import annotations

import re
import tomllib
import types
from pathlib import Path

import pytest

from hub.config import parse_config
from hub.errors import ConfigError
from hub.model import Booking, BookingEvent, Person, booking_uuid
from hub.plugins import get_plugin_manager
from tests.conftest import T0

GUIDE = Path(__file__).parent.parent / "docs" / "connectors.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks() -> list[tuple[str, str]]:
    return [(match.group(1), match.group(2)) for match in BLOCK.finditer(GUIDE.read_text())]


def guide_module() -> types.ModuleType:
    """The guide's Python blocks, run in order in one module."""
    module = types.ModuleType("guide_plugin")
    for language, code in blocks():
        if language == "python":
            exec(compile(code, f"{GUIDE}:python", "exec", dont_inherit=True), module.__dict__)
    return module


def test_every_block_is_one_this_test_runs() -> None:
    found = blocks()
    assert found and {language for language, _ in found} <= {"python", "toml"}


def test_the_package_block_names_the_distribution_and_the_entry_point_group() -> None:
    [package] = [tomllib.loads(code) for language, code in blocks() if language == "toml"]
    ours = tomllib.loads((GUIDE.parent.parent / "pyproject.toml").read_text())
    [dependency] = package["project"]["dependencies"]
    assert dependency.startswith(ours["project"]["name"] + ">=")
    assert ours["project"]["name"] != "hub"  # that name belongs to another project on PyPI
    assert "hub" in package["project"]["entry-points"]


def guide_config(note: str) -> str:
    return f"""
store: redis://127.0.0.1:6379/0
destinations:
  journal: {{connector: jsonl, path: /tmp/events.jsonl}}
routes:
  - name: keep
    on: booking_confirmed
    send: [{{to: journal, fields: [type], note: "{note}"}}]
"""


def test_the_guides_code_runs_and_the_hub_loads_it_as_a_plugin() -> None:
    module = guide_module()
    assert module.register_destinations() == [module.Jsonl]
    assert module.pytest_plugins == ["hub.testing"]  # the testing section's block
    assert module.Acme.name == "acme" and module.Acme.config_model is module.AcmeConfig

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(module)
    config = parse_config(guide_config("{{ client.name }} booked"), pm, environ={})
    [[action]] = config.actions
    assert isinstance(action, module.JsonlAction)
    client = Person(name="Mara Keller", email="mara@example.org")
    booking = Booking(id="b1", uid=booking_uuid("b1"), start=T0, end=T0, client=client)
    event = BookingEvent(
        id="evt_1.0",
        type="booking_confirmed",
        source="calendly",
        inbound_event_id="evt_1",
        occurred_at=T0,
        received_at=T0,
        booking=booking,
    )
    [message] = module.Jsonl.plan(None, event, action)
    assert message == {"fields": ["type"], "note": "Mara Keller booked"}

    # the guide's templated option is checked when the file loads, like the built-ins'
    with pytest.raises(ConfigError, match=r"routes\.0\.send\.0\.note: template"):
        parse_config(guide_config("{{ client.nme }}"), pm, environ={})
