"""Empty and short secrets are refused when hub.yaml is loaded, naming the option."""

from __future__ import annotations

import pytest

from hub.cli import main
from tests.test_config import VALID, error_of

SOURCES = """\
  cronofy:
    connector: cronofy
    client_secrets: ["${CRONOFY_SECRET}"]
  partner:
    connector: webhook
    secrets: ["${PARTNER_SECRET}"]
    schema_file: SCHEMA
"""


@pytest.mark.parametrize(
    ("variable", "value", "where", "says"),
    [
        ("CALENDLY_SIGNING_KEY", "", "sources.calendly.signing_key", "is empty"),
        ("CALENDLY_SIGNING_KEY", "   ", "sources.calendly.signing_key", "is empty"),
        ("CALENDLY_SIGNING_KEY", "short-key", "sources.calendly.signing_key", "too short"),
        ("CRONOFY_SECRET", "", "sources.cronofy.client_secrets.0", "is empty"),
        ("PARTNER_SECRET", "whsec_", "sources.partner.secrets", "too short"),
        ("PARTNER_SECRET", "whsec_c2hvcnQ=", "sources.partner.secrets", "too short"),
        ("INXMAIL_API_SECRET", "", "destinations.inxmail.api_secret", "is empty"),
        ("ICS_SECRET", "tiny", "server.ics_secret", "too short"),
    ],
)
def test_an_empty_or_short_secret_is_refused_naming_its_path(
    tmp_path, variable, value, where, says
) -> None:
    schema = tmp_path / "any.json"
    schema.write_text("{}")
    text = VALID.replace("sources:\n", "sources:\n" + SOURCES.replace("SCHEMA", str(schema)))
    text += "server:\n  ics_secret: ${ICS_SECRET:-}\n"
    environ = {
        "CRONOFY_SECRET": "cronofy-secret-0123456789",
        "PARTNER_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        variable: value,
    }
    message = error_of(text, **environ)
    assert where in message and says in message
    assert len(value) < 8 or value not in message  # the secret is not echoed


def test_hub_check_calls_an_empty_signing_key_invalid(tmp_path, monkeypatch, capsys) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text(VALID)
    monkeypatch.setenv("CALENDLY_SIGNING_KEY", "")
    monkeypatch.setenv("INXMAIL_API_ID", "id")
    monkeypatch.setenv("INXMAIL_API_SECRET", "inx-api-secret")
    assert main(["check", "--config", str(config)]) != 0
    assert "sources.calendly.signing_key" in capsys.readouterr().err
