"""Field paths in expressions, checked against the canonical event's JSON Schema when
hub.yaml is loaded: ``booking.meting.name`` is an error naming the field, with a
suggestion, rather than a condition that fails on every event."""

from __future__ import annotations

import difflib
import re
from functools import cache
from typing import Any

__all__ = ["unknown_field"]

# Strings (with their escapes) are left out before paths are looked for.
_STRING = re.compile(
    r"""[rRbB]*('''.*?'''|\"\"\".*?\"\"\"|'(?:\\\\.|[^'\\\\])*'|"(?:\\\\.|[^"\\\\])*")""",
    re.DOTALL,
)
# A variable followed by one or more .fields; a field followed by ``(`` is a method.
_PATH = re.compile(r"(?<![\w.])(type|booking|original|event)((?:\s*\.\s*[A-Za-z_]\w*)+)(\s*\()?")


@cache
def _schema() -> dict[str, Any]:
    from hub.model import json_schema

    return json_schema()


def _resolve(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The object schemas a value of ``node`` may be ($ref and anyOf followed)."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return _resolve(_schema()["$defs"][name])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            return [found for option in node[key] for found in _resolve(option)]
    return [node]


def _step(node: dict[str, Any], field: str) -> tuple[dict[str, Any] | None, list[str] | None]:
    """The schema of ``field`` in a value of ``node``: (schema, None); (None, None) when
    the value is free-form (anything goes below it); (None, known fields) when it has no
    such field."""
    known: list[str] = []
    free = False
    for option in _resolve(node):
        properties = option.get("properties")
        if properties is None:
            free = free or option.get("type") in ("object", None)
            continue
        if field in properties:
            return properties[field], None
        known += properties
        if option.get("additionalProperties") not in (None, False):
            free = True
    return None, None if free else sorted(set(known))


def _root(variable: str) -> dict[str, Any]:
    event = _schema()
    if variable == "event":
        return event
    return event["properties"][variable]


def unknown_field(source: str) -> str | None:
    """A message naming the first field path of a CEL expression over an event (``type``,
    ``booking``, ``original``, ``event``) that the canonical event does not have; None
    when every path exists."""
    code = _STRING.sub('""', source)
    for match in _PATH.finditer(code):
        variable = match.group(1)
        fields = [part.strip() for part in match.group(2).split(".")[1:]]
        if match.group(3):
            fields = fields[:-1]  # the last one is a method: x.startsWith(…)
        node: dict[str, Any] | None = _root(variable)
        for depth, field in enumerate(fields):
            assert node is not None
            node, known = _step(node, field)
            if known is not None:
                path = ".".join([variable, *fields[: depth + 1]])
                close = difflib.get_close_matches(field, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                return (
                    f"{path}: the event has no field {field!r} ({hint}"
                    f"{'.'.join([variable, *fields[:depth]])} has: {', '.join(known)})"
                )
            if node is None:
                break
    return None
