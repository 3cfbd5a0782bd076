"""JSON Schemas from ``schemas/``, compiled once and reused for every request."""

from __future__ import annotations

import functools
import re
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match

from hub.errors import InvalidPayload

__all__ = ["SchemaValidator", "compile_schema", "schema_dir", "validator"]


def schema_dir() -> Path:
    """Where the schemas are: packaged into the wheel, or ``schemas/`` of a checkout."""
    packaged = Path(__file__).parent / "_schemas"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "schemas"


_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})"
)
FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """RFC 3339 with a time zone, and a real date and time (no 2026-02-30)."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.fullmatch(value):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time with a time zone")
    datetime.fromisoformat(value)
    return True


def _path(parts: deque[Any]) -> str:
    return ".".join(str(p) for p in parts) or "(body)"


class SchemaValidator:
    """A compiled schema. ``check`` raises InvalidPayload naming the failing field.

    The valid path, every request's, runs jsonschema-rs's compiled validator (microseconds).
    Only a payload it refuses goes through jsonschema, which says where and why.
    """

    def __init__(self, name: str, schema: dict[str, Any]) -> None:
        Draft202012Validator.check_schema(schema)
        self.name = name
        self.schema = schema
        self._validator = Draft202012Validator(schema, format_checker=FORMATS)
        self._fast = jsonschema_rs.validator_for(schema, validate_formats=True)

    def check(self, instance: Any) -> None:
        if self._fast.is_valid(instance):
            return
        try:
            error = best_match(self._validator.iter_errors(instance))
        except RecursionError:  # intake bounds the depth first; this is the last guard
            raise InvalidPayload("(body): nested too deeply to check", field="(body)") from None
        if error is None:
            return
        path = deque(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            path.extend([k for k in error.validator_value if k not in error.instance][:1])
        field = _path(path)
        raise InvalidPayload(f"{field}: {error.message}", field=field)


@functools.cache
def validator(name: str) -> SchemaValidator:
    """The compiled schema ``schemas/<name>``."""
    schema = orjson.loads((schema_dir() / name).read_bytes())
    return SchemaValidator(name, schema)


def compile_schema(schema: str | dict[str, Any]) -> SchemaValidator:
    """A file name under ``schemas/`` (compiled once per process) or a schema itself."""
    if isinstance(schema, str):
        return validator(schema)
    return SchemaValidator(schema.get("$id", "(inline)"), schema)
