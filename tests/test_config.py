"""hub.yaml: interpolation, validation errors that name the line, and ``hub check``."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from hub.cli import main
from hub.config import interpolate, parse_config
from hub.errors import ConfigError
from hub.plugins import get_plugin_manager
from hub.units import parse_duration, parse_size
from tests.conftest import ENVIRON

ROOT = Path(__file__).parent.parent

VALID = """\
store: redis://127.0.0.1:6379/0
sources:
  calendly:
    connector: calendly
    signing_key: ${CALENDLY_SIGNING_KEY}
destinations:
  inxmail:
    connector: inxmail
    api_url: ${INXMAIL_URL:-https://acme.api.inxmail-commerce.com/api-service/v1}
    api_id: ${INXMAIL_API_ID}
    api_secret: ${INXMAIL_API_SECRET}
routes:
  - name: confirmations
    on: booking_confirmed
    send: [{to: inxmail}]
"""


def parse(text: str, **environ: str):
    return parse_config(textwrap.dedent(text), get_plugin_manager(), environ={**ENVIRON, **environ})


def error_of(text: str, **environ: str) -> str:
    with pytest.raises(ConfigError) as raised:
        parse(text, **environ)
    return str(raised.value)


def test_interpolation() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert interpolate("x${A}y", env) == "x1y"
    assert interpolate("${B:-fallback}", env) == "fallback"
    assert interpolate("${EMPTY:-fallback}", env) == "fallback"
    assert interpolate("${EMPTY}", env) == ""
    assert interpolate("cost: $$5", env) == "cost: $5"
    with pytest.raises(KeyError):
        interpolate("${B}", env)


def test_valid_configuration_is_typed() -> None:
    config = parse(VALID)
    assert config.store.url == "redis://127.0.0.1:6379/0"
    assert config.store.prefix == "hub"
    calendly = config.sources["calendly"]
    assert calendly.signing_key.get_secret_value() == "calendly-test-signing-key"
    assert "calendly-test-signing-key" not in repr(calendly)  # secrets never print
    assert calendly.tolerance == timedelta(seconds=180)
    inxmail = config.destinations["inxmail"]
    assert str(inxmail.api_url).startswith("https://acme.api.inxmail-commerce.com")
    assert config.routes[0].on == ["booking_confirmed"]
    assert config.actions[0][0].to == "inxmail"


def test_default_comes_from_the_environment_when_set() -> None:
    config = parse(VALID, INXMAIL_URL="http://127.0.0.1:9999/v1")
    assert str(config.destinations["inxmail"].api_url) == "http://127.0.0.1:9999/v1"


def test_missing_variable_names_it_and_its_line() -> None:
    environ = dict(ENVIRON)
    del environ["INXMAIL_API_SECRET"]
    with pytest.raises(ConfigError) as raised:
        parse_config(VALID, get_plugin_manager(), environ=environ, where="hub.yaml")
    message = str(raised.value)
    assert message.startswith("hub.yaml:11: ")
    assert "INXMAIL_API_SECRET is not set" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            (
                "  calendly:\n    connector: calendly\n",
                "  calendly:\n    connector: calendly\n    tolerence: 3m\n",
            ),
            "hub.yaml:5: sources.calendly.tolerence: unknown option",
        ),
        (
            ("connector: inxmail", "connector: mailchimp"),
            "hub.yaml:8: destinations.inxmail.connector: unknown connector 'mailchimp'",
        ),
        (
            ("${INXMAIL_URL:-https://acme.api.inxmail-commerce.com/api-service/v1}", "not a url"),
            "hub.yaml:9: destinations.inxmail.api_url: Input should be a valid URL",
        ),
        (
            ("on: booking_confirmed", "on: booking_confirmd"),
            "hub.yaml:14: routes.0.on.0: Input should be",
        ),
        (
            ("{to: inxmail}", "{to: inxmial}"),
            "hub.yaml:15: routes.0.send.0.to: no destination named 'inxmial'",
        ),
        (
            ("on: booking_confirmed", "on: marked_no_show"),
            "route 'confirmations' sends marked_no_show to 'inxmail': no Calenso event",
        ),
        (
            ("{to: inxmail}", "{to: inxmail, event: calenso.booking.party}"),
            "'calenso.booking.party' is not a Calenso event",
        ),
        (
            ("store: redis://127.0.0.1:6379/0", "store: postgres://db/hub"),
            "hub.yaml:1: store.url: expected a redis://",
        ),
        (
            ("store: redis://127.0.0.1:6379/0", "store: {url: redis://h, lease: 5s}"),
            "hub.yaml:1: store.lease: unknown option",
        ),
        (
            ("    api_secret: ${INXMAIL_API_SECRET}\n", "    api_secret: x\n    timeout: 90s\n"),
            "hub.yaml:12: destinations.inxmail.timeout: must be shorter than worker.lease (60 s)",
        ),
        (
            ("    signing_key: ${CALENDLY_SIGNING_KEY}\n", ""),
            "hub.yaml:4: sources.calendly.signing_key: required option is missing",
        ),
    ],
)
def test_errors_name_the_line_the_path_and_what_was_expected(change, expected) -> None:
    old, new = change
    assert old in VALID
    assert expected in error_of(VALID.replace(old, new))


def test_an_anchored_value_is_interpolated_once() -> None:
    text = VALID.replace(
        "signing_key: ${CALENDLY_SIGNING_KEY}", "signing_key: &key ${CALENDLY_SIGNING_KEY}"
    ).replace("api_secret: ${INXMAIL_API_SECRET}", "api_secret: *key")
    config = parse(text, CALENDLY_SIGNING_KEY="pa$$word-of-sixteen")
    assert config.destinations["inxmail"].api_secret.get_secret_value() == "pa$$word-of-sixteen"


@pytest.mark.parametrize(
    ("section", "option", "value"),
    [
        ("store", "dedup_window", "0s"),
        ("store", "retention", "500ms"),
        ("worker", "lease", "0s"),
        ("worker", "poll_interval", "0s"),
    ],
)
def test_durations_that_cannot_work_are_refused(section, option, value) -> None:
    text = (
        VALID.replace("store: redis://127.0.0.1:6379/0\n", "")
        + f"{section}:\n  {option}: {value}\n"
    )
    assert f"{section}.{option}: Input should be greater" in error_of(text)


def test_yaml_syntax_error_names_the_line() -> None:
    assert error_of("sources:\n  calendly: [unclosed\n").startswith("hub.yaml:3: not valid YAML")


def test_duration_and_size_units() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("250ms") == timedelta(milliseconds=250)
    assert parse_duration(5) == timedelta(seconds=5)
    assert parse_size("256KiB") == 262144
    assert parse_size("1MB") == 1_000_000
    for bad in ("10 minutes", "", "5x"):
        with pytest.raises(ValueError, match="expected a duration"):
            parse_duration(bad)


SAMPLE_SECRETS = {
    "CRONOFY_CLIENT_SECRET": "cronofy-client-secret",
    "PARTNER_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "CRM_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "AUVIOUS_CLIENT_ID": "id",
    "AUVIOUS_CLIENT_SECRET": "secret",
    "AUVIOUS_APPLICATION_ID": "app",
}


def test_hub_check_on_the_sample_configuration(monkeypatch, capsys, tmp_path) -> None:
    for name, value in {**ENVIRON, **SAMPLE_SECRETS}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # relative paths in it are relative to the file
    monkeypatch.setenv("HUB_STORE_PATH", str(tmp_path / "store"))  # the embedded store's
    assert main(["check", "--config", str(ROOT / "hub.yaml")]) == 0
    assert "valid (3 sources, 4 destinations, 6 routes)" in capsys.readouterr().out


def test_hub_check_fails_with_the_message(tmp_path, monkeypatch, capsys) -> None:
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "hub.yaml"
    path.write_text(VALID.replace("{to: inxmail}", "{to: nowhere}"))
    assert main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:15: routes.0.send.0.to: no destination named 'nowhere'" in err


def test_hub_check_on_a_missing_file(tmp_path, capsys) -> None:
    assert main(["check", "--config", str(tmp_path / "absent.yaml")]) == 2
    assert "cannot read the configuration file" in capsys.readouterr().err
