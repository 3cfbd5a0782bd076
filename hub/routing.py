"""Routes of hub.yaml: which canonical events go to which destinations, and when."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from hub.conditions import Condition
from hub.config import Config
from hub.connector import ActionConfig
from hub.model import Booking, BookingEvent

__all__ = ["Route", "Router"]


@dataclass(frozen=True)
class Route:
    name: str
    on: frozenset[str]
    actions: tuple[ActionConfig, ...]
    meetings: frozenset[str] = frozenset()
    condition: Condition | None = None
    trigger: str | None = None  # before_meeting_starts | after_meeting_ends
    offset: timedelta = field(default_factory=timedelta)
    if_late: str = "skip"
    keep_on_no_show: bool = False

    def covers(self, booking: Booking | None) -> bool:
        """Whether the route's meeting scope includes the booking (none: only if the route
        has no scope)."""
        if not self.meetings:
            return True
        return booking is not None and bool(
            {booking.meeting.id, booking.meeting.name} & self.meetings
        )

    def fires_at(self, booking: Booking) -> float:
        """When a time trigger fires for a booking (epoch seconds)."""
        if self.trigger == "before_meeting_starts":
            return (booking.start - self.offset).timestamp()
        return (booking.end + self.offset).timestamp()

    def key(self, booking: Booking) -> str:
        """The job key of this route's time trigger for a booking."""
        return f"trigger|{self.name}|{booking.uid}"


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self.timed = [route for route in routes if route.trigger]

    @classmethod
    def from_config(cls, config: Config) -> Router:
        return cls(
            [
                Route(
                    name=route.name,
                    on=frozenset(route.on),
                    actions=tuple(actions),
                    meetings=frozenset(route.meetings),
                    condition=route.condition(),
                    trigger=route.trigger,
                    offset=route.offset or timedelta(),
                    if_late=route.if_late,
                    keep_on_no_show=route.keep_on_no_show,
                )
                for route, actions in zip(config.routes, config.actions, strict=True)
            ]
        )

    def route(self, name: str) -> Route | None:
        return next((route for route in self.routes if route.name == name), None)

    def match(
        self, event: BookingEvent, *, only: str | None = None
    ) -> Iterator[tuple[Route, ActionConfig]]:
        """Every (route, action) that ``event`` triggers, in the order of hub.yaml;
        with ``only``, of that route alone."""
        for route in self.routes:
            if only is not None and route.name != only:
                continue
            if event.type not in route.on or not route.covers(event.booking):
                continue
            if route.condition is not None and not route.condition(event):
                continue
            for action in route.actions:
                yield route, action
