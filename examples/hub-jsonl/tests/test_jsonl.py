"""The connector's own test, written with the hub's testing helpers."""

from __future__ import annotations

import json

from hub.testing import sign_standard_webhook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SCHEMA = '{"type": "object", "required": ["who"]}'
CONFIG = """
store: {url: "{redis_url}", prefix: "{prefix}"}
sources:
  shop: {connector: webhook, secrets: ["%s"], schema_file: "%s", event_type: provider_notification}
destinations:
  journal: {connector: jsonl, path: "%s"}
routes:
  - {name: keep, on: provider_notification, send: [{to: journal, fields: [type, raw.who]}]}
"""


async def test_events_are_appended(run_hub, tmp_path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(SCHEMA)
    journal = tmp_path / "events.jsonl"
    hub = await run_hub(CONFIG % (SECRET, schema, journal))
    body = json.dumps({"who": "ada@example.org"})
    headers = sign_standard_webhook(SECRET, "msg_1", hub.clock.now(), body)
    response = await hub.client.post("/hooks/shop", data=body, headers=headers)
    assert response.status == 202
    assert await hub.worker.drain() == 2
    [line] = journal.read_text().splitlines()
    record = json.loads(line)
    assert (record["type"], record["raw.who"]) == ("provider_notification", "ada@example.org")
