"""Connector instances built from a validated configuration."""

from __future__ import annotations

import pluggy

from hub.config import Config
from hub.connector import ConnectorContext, DestinationConnector, SourceConnector
from hub.plugins import destination_connectors, source_connectors

__all__ = ["build_destinations", "build_sources"]


def build_sources(config: Config, pm: pluggy.PluginManager) -> dict[str, SourceConnector]:
    classes = source_connectors(pm)
    return {
        name: classes[spec.connector](name, spec)  # type: ignore[attr-defined]
        for name, spec in config.sources.items()
    }


def build_destinations(
    config: Config, pm: pluggy.PluginManager, context: ConnectorContext
) -> dict[str, DestinationConnector]:
    classes = destination_connectors(pm)
    return {
        name: classes[spec.connector](name, spec, context)  # type: ignore[attr-defined]
        for name, spec in config.destinations.items()
    }
