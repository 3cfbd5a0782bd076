"""What trips a newcomer in the first hour: where ``--config`` goes, secrets a command does
not need, ``hub check`` telling everything at once and plainly, a port in use, a plugin
that does not import, the duplicate's log line."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from hub.cli import main
from hub.config import parse_config
from hub.errors import ConfigError
from hub.plugins import get_plugin_manager
from tests.conftest import ENVIRON, config_data, config_yaml, fixture_bytes

SINK = "http://127.0.0.1:9"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "hub.yaml"
    path.write_text(text)
    return str(path)


def errors_of(text: str, **environ: str) -> str:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, get_plugin_manager(), environ={**ENVIRON, **environ}, where="hub.yaml")
    return str(raised.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["dlq", "list", "--config", "{path}"],
        ["dlq", "--config", "{path}", "list"],
        ["dlq", "show", "job_nope", "--config", "{path}"],
        ["replay", "--config", "{path}", "job_nope"],
    ],
)
def test_config_is_taken_before_or_after_the_action(
    argv, redis_prefix, tmp_path, monkeypatch, capsys
) -> None:
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    path = write(tmp_path, config_yaml(redis_prefix, SINK))
    monkeypatch.chdir(tmp_path.parent)  # no hub.yaml here: the option must be the one used
    code = main([part.format(path=path) for part in argv])
    out, err = capsys.readouterr()
    assert "hub.yaml: cannot read" not in err
    if argv[0] == "dlq" and "list" in argv:
        assert code == 0 and "no dead letters" in out.lower()
    else:
        assert "job_nope" in out + err  # the command ran, on the file given


def test_commands_that_only_read_the_store_need_no_connector_secrets(
    redis_prefix, tmp_path, monkeypatch, capsys
) -> None:
    for name in ENVIRON:
        monkeypatch.delenv(name, raising=False)
    path = write(tmp_path, config_yaml(redis_prefix, SINK))
    assert main(["dlq", "list", "--config", path]) == 0
    assert main(["destinations", "--config", path]) == 0
    out, err = capsys.readouterr()
    assert "inxmail" in out and "is not set" not in err
    # the commands that deliver or check still need every one, and name them all at once
    assert main(["check", "--config", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "3 environment variables are not set: CALENDLY_SIGNING_KEY (line " in err
    assert "INXMAIL_API_ID (line " in err and "INXMAIL_API_SECRET (line " in err


def test_hub_check_reports_every_error_in_one_run() -> None:
    data = config_data("p", SINK)
    data["server"]["port"] = "eighty"
    data["sources"]["calendly"]["tolerence"] = "3m"
    data["routes"] = [
        {"name": "a", "on": ["booking_confirmd"], "send": [{"to": "inxmail"}]},
        {"name": "b", "on": ["booking_confirmed"], "send": [{"to": "crm"}]},
        {
            "name": "c",
            "on": ["booking_confirmed"],
            "when": 'booking.meting.name == "Internal"',
            "send": [{"to": "inxmail"}],
        },
        {"name": "d", "on": ["booking_confirmed"], "send": [{"to": "inxmail", "title": "{{ x }}"}]},
    ]
    message = errors_of(yaml.safe_dump(data, sort_keys=False))
    lines = message.splitlines()
    assert any("server.port:" in line for line in lines)
    assert any("sources.calendly.tolerence: unknown option" in line for line in lines)
    assert any("routes.0.on.0:" in line for line in lines)
    assert any("routes.1.send.0.to: no destination named 'crm'" in line for line in lines)
    assert any("route 'c': when:" in line and "did you mean 'meeting'?" in line for line in lines)
    assert any("routes.3.send.0.title: template '{{ x }}'" in line for line in lines)
    assert len(lines) == 6, message
    assert "Value error" not in message and "Assertion failed" not in message


def test_a_field_the_event_lacks_is_an_error_naming_the_route_with_a_suggestion() -> None:
    data = config_data("p", SINK)
    data["routes"][0]["when"] = 'booking.client.emial.endsWith("@example.org")'
    message = errors_of(yaml.safe_dump(data, sort_keys=False))
    assert "route 'confirmations': when:" in message
    assert "booking.client.emial: the event has no field 'emial' (did you mean 'email'?" in message
    # methods, strings and free-form fields are no field paths to check
    data["routes"][0]["when"] = (
        'booking.client.email.endsWith("booking.nothing") && event.raw.any.thing != 1'
    )
    parse_config(yaml.safe_dump(data), get_plugin_manager(), environ=ENVIRON)


def test_a_webhook_field_the_event_lacks_is_an_error() -> None:
    data = config_data("p", SINK)
    data["destinations"]["crm"] = {
        "connector": "webhook",
        "url": SINK,
        "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    }
    data["routes"][0]["send"] = [{"to": "crm", "fields": {"who": "booking.hots.name"}}]
    message = errors_of(yaml.safe_dump(data, sort_keys=False))
    assert "booking.hots: the event has no field 'hots' (did you mean 'host'?" in message


def test_a_template_error_lists_the_variables_there_are() -> None:
    data = config_data("p", SINK)
    data["routes"][0]["send"] = [{"to": "inxmail", "title": "{{ client.nme }}"}]
    message = errors_of(yaml.safe_dump(data, sort_keys=False))
    assert "has no attribute 'nme'" in message
    assert "variables: booking.id," in message and "client.first_name" in message


def test_hub_check_counts_in_the_singular_and_notes_the_embedded_store(
    tmp_path, monkeypatch, capsys
) -> None:
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    store = Path(tempfile.mkdtemp(prefix="hub-")) / "store"
    try:
        path = write(
            tmp_path, config_yaml("p", SINK, store={"url": "embedded", "path": str(store)})
        )
        assert main(["check", "--config", path]) == 0
    finally:
        shutil.rmtree(store.parent, ignore_errors=True)
    out, err = capsys.readouterr()
    assert "valid (1 source, 1 destination, 1 route)" in out
    assert "note: the store is embedded" in err and "store.url to a Redis" in err


def test_a_port_in_use_is_one_line_and_exit_2(redis_prefix, tmp_path, monkeypatch, capsys):
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write(tmp_path, config_yaml(redis_prefix, SINK, server__port=port))
        assert main(["serve", "--config", path]) == 2
    out, err = capsys.readouterr()
    assert err == f"error: cannot listen on 127.0.0.1:{port}: address already in use\n"
    assert "hub.serving" not in out + err


def test_a_plugin_that_fails_to_import_is_one_line_and_the_rest_load(
    tmp_path, monkeypatch, capsys
) -> None:
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[hub]\nbroken = no_such_module_of_a_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["plugins"]) == 0
    out, err = capsys.readouterr()
    assert err == (
        "warning: plugin broken = no_such_module_of_a_plugin (from broken-plugin 1.0) was not "
        "loaded: ModuleNotFoundError: No module named 'no_such_module_of_a_plugin'\n"
    )
    assert "connectors.calendly" in out and "connectors.webhook" in out


async def test_the_duplicate_log_line_carries_the_original_event_id(start_hub) -> None:
    hub = await start_hub()
    body = fixture_bytes("calendly/invitee_created.json")
    with capture_logs() as logs:
        first = await (await hub.post_calendly(body)).json()
        hub.clock.advance(60)
        again = await (await hub.post_calendly(body)).json()
    [duplicate] = [line for line in logs if line["event"] == "intake.duplicate"]
    assert again == {"id": first["id"], "duplicate": True}
    assert duplicate["event_id"] == first["id"]
    assert duplicate["request_id"] != first["id"]


@pytest.mark.parametrize("path", ["store\nappendonly no", "store\r", "st\x00ore", "a\u2028b"])
def test_a_store_path_with_control_characters_is_refused(path) -> None:
    data = config_data("p", SINK)
    data["store"] = {"url": "embedded", "path": path}
    text = yaml.safe_dump(data, sort_keys=False)
    if path == "a\u2028b":  # a line separator, no control character: a name like any other
        config = parse_config(text, get_plugin_manager(), environ=ENVIRON, where="/x/hub.yaml")
        assert config.store.path == Path("/x") / path
        return
    assert "store.path: a path with control characters" in errors_of(text)


def test_hub_check_names_every_secret_left_at_its_demo_value(monkeypatch, capsys) -> None:
    from tests.conftest import REDIS_URL
    from tests.test_deployment import ROOT, demo_env

    for name, value in demo_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HUB_STORE", REDIS_URL)
    monkeypatch.setenv("CALENDLY_SIGNING_KEY", "a-real-signing-key")
    assert main(["check", "--config", str(ROOT / "hub.yaml")]) == 0
    [warning] = [line for line in capsys.readouterr().err.splitlines() if "demo" in line]
    assert warning.startswith("warning: demo secrets (demo.env) in sources.cronofy.client_")
    assert "sources.partner.secrets.0" in warning and "destinations.video.client_secret" in warning
    assert "calendly" not in warning  # set to a real one
