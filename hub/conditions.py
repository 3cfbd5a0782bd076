"""Route conditions in CEL (``when:``), compiled once when hub.yaml is loaded."""

from __future__ import annotations

from typing import Any

import cel
import structlog

from hub.fieldpaths import unknown_field
from hub.model import BookingEvent

__all__ = [
    "Condition",
    "Expression",
    "compile_condition",
    "compile_expression",
    "condition_variables",
]

log = structlog.get_logger(__name__)


def condition_variables(event: BookingEvent) -> dict[str, Any]:
    """What an expression sees: ``type``, ``booking``, ``original`` (or null) and
    ``event`` (the whole canonical event, its raw provider payload included)."""
    data = event.to_json()
    return {
        "type": data["type"],
        "booking": data["booking"],
        "original": data["original"],
        "event": data,
    }


class Expression:
    """A compiled CEL expression over an event."""

    def __init__(self, route: str, source: str, program: Any) -> None:
        self.route = route
        self.source = source
        self._program = program

    def evaluate(self, event: BookingEvent) -> Any:
        """The expression's value for the event; raises what CEL raises."""
        return self._program.execute(condition_variables(event))


class Condition(Expression):
    """A route's ``when``: an expression that lets an event through when true."""

    def __call__(self, event: BookingEvent) -> bool:
        """True if the event passes. An expression that fails on an event (a field it
        lacks, say) is false for it, and says so in the log."""
        try:
            result = self.evaluate(event)
        except Exception as error:
            log.warning(
                "route.condition_failed",
                route=self.route,
                expression=self.source,
                event_id=event.id,
                error=f"{type(error).__name__}: {error}",
            )
            return False
        return result is True


def _compile(where: str, source: str) -> Any:
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as error:
        raise ValueError(f"{where}: `{source}` does not compile: {error}") from None
    problem = unknown_field(source)
    if problem:
        raise ValueError(f"{where}: `{source}`: {problem}")
    return program


def compile_condition(route: str, source: str) -> Condition:
    """Raises ValueError naming the route and the expression if it does not compile."""
    return Condition(route, source, _compile(f"route {route!r}: when", source))


def compile_expression(where: str, source: str) -> Expression:
    """Raises ValueError naming ``where`` and the expression if it does not compile."""
    return Expression(where, source, _compile(where, source))
