"""The plugin manager: built by a factory, never at import time."""

from __future__ import annotations

import importlib
from typing import TypeVar

import pluggy

from hub import hookspecs
from hub.errors import ConfigError

__all__ = [
    "DEFAULT_PLUGINS",
    "destination_connectors",
    "get_plugin_manager",
    "source_connectors",
]

# Built-in connectors, registered through the same call as any third-party plugin.
DEFAULT_PLUGINS = (
    "connectors.auvious",
    "connectors.calendly",
    "connectors.cronofy",
    "connectors.email_invite",
    "connectors.inxmail",
    "connectors.webhook",
)

T = TypeVar("T")


def get_plugin_manager(*, load_entrypoints: bool = True) -> pluggy.PluginManager:
    """Hookspecs, then third-party plugins from the ``hub`` entry point group, then the
    built-ins; every implementation is checked against its specification."""
    pm = pluggy.PluginManager("hub")
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        pm.load_setuptools_entrypoints("hub")
    for name in DEFAULT_PLUGINS:
        if pm.get_plugin(name) is None:
            pm.register(importlib.import_module(name), name=name)
    pm.check_pending()
    return pm


def _by_name(results: list[list[type[T]]], kind: str) -> dict[str, type[T]]:
    found: dict[str, type[T]] = {}
    for classes in results:
        for cls in classes or ():
            name = cls.name  # type: ignore[attr-defined]
            if name in found and found[name] is not cls:
                raise ConfigError(f"two plugins provide a {kind} connector named {name!r}")
            found[name] = cls
    return found


def source_connectors(pm: pluggy.PluginManager) -> dict[str, type]:
    """Source connector classes of every plugin, by connector name."""
    return _by_name(pm.hook.register_sources(), "source")


def destination_connectors(pm: pluggy.PluginManager) -> dict[str, type]:
    """Destination connector classes of every plugin, by connector name."""
    return _by_name(pm.hook.register_destinations(), "destination")
