"""Annotated types for a connector's options that are templates or CEL expressions, so a
plugin's models take them as the built-ins do: compiled and tried when hub.yaml is
loaded, an error naming the line and the option otherwise.

    from hub import Expression, HtmlTemplate, Template

    class MyAction(ActionConfig):
        title: Template                 # action.title.render(event) -> str
        body: HtmlTemplate | None = None  # the booking's values HTML-escaped
        score: Expression               # action.score.evaluate(event) -> the value
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, ValidationInfo, WithJsonSchema

from hub import conditions, templates

__all__ = ["Expression", "HtmlTemplate", "Template"]


def _template(html: bool) -> Any:
    def validate(value: Any) -> templates.Template:
        if isinstance(value, templates.Template):
            return value
        if not isinstance(value, str):
            raise ValueError(f"expected a template (a string), got {type(value).__name__}")
        return templates.compile_template(value, html=html)

    return validate


def _expression(value: Any, info: ValidationInfo) -> conditions.Expression:
    if isinstance(value, conditions.Expression):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a CEL expression (a string), got {type(value).__name__}")
    return conditions.compile_expression(info.field_name or "expression", value)


def _source(value: templates.Template | conditions.Expression) -> str:
    return value.source


Template = Annotated[
    templates.Template,
    PlainValidator(_template(html=False)),
    PlainSerializer(_source, return_type=str),
    WithJsonSchema({"type": "string", "description": "a template (jinja2, sandboxed)"}),
]
HtmlTemplate = Annotated[
    templates.Template,
    PlainValidator(_template(html=True)),
    PlainSerializer(_source, return_type=str),
    WithJsonSchema({"type": "string", "description": "an HTML template, values escaped"}),
]
Expression = Annotated[
    conditions.Expression,
    PlainValidator(_expression),
    PlainSerializer(_source, return_type=str),
    WithJsonSchema({"type": "string", "description": "a CEL expression over the event"}),
]
