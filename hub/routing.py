"""Routes of hub.yaml: which canonical events go to which destinations."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from hub.config import Config
from hub.connector import ActionConfig
from hub.model import BookingEvent

__all__ = ["Route", "Router"]


@dataclass(frozen=True)
class Route:
    name: str
    on: frozenset[str]
    actions: tuple[ActionConfig, ...]


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes

    @classmethod
    def from_config(cls, config: Config) -> Router:
        return cls(
            [
                Route(route.name, frozenset(route.on), tuple(actions))
                for route, actions in zip(config.routes, config.actions, strict=True)
            ]
        )

    def match(self, event: BookingEvent) -> Iterator[tuple[Route, ActionConfig]]:
        """Every (route, action) that ``event`` triggers, in the order of hub.yaml."""
        for route in self.routes:
            if event.type in route.on:
                for action in route.actions:
                    yield route, action
