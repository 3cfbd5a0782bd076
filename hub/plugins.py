"""The plugin manager: built by a factory, never at import time."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from typing import TypeVar

import pluggy

from hub import hookspecs
from hub.errors import ConfigError

__all__ = [
    "DEFAULT_PLUGINS",
    "describe_plugins",
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
        _load_entrypoints(pm)
    for name in DEFAULT_PLUGINS:
        if pm.get_plugin(name) is None:
            pm.register(importlib.import_module(name), name=name)
    pm.check_pending()
    return pm


def _load_entrypoints(pm: pluggy.PluginManager) -> None:
    """Each plugin of the ``hub`` entry point group on its own: one that fails to import
    is named on stderr in one line, and the others load."""
    for entry_point in importlib.metadata.entry_points(group="hub"):
        try:
            pm.load_setuptools_entrypoints("hub", entry_point.name)
        except Exception as error:
            dist = getattr(entry_point, "dist", None)
            where = f" (from {dist.name} {dist.version})" if dist is not None else ""
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            print(
                f"warning: plugin {entry_point.name} = {entry_point.value}{where} was not "
                f"loaded: {message}",
                file=sys.stderr,
            )


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


def describe_plugins(pm: pluggy.PluginManager) -> list[dict[str, object]]:
    """Each plugin: its name, version, the hooks it implements and the connectors it adds."""
    from hub import __version__

    versions = {
        id(plugin): f"{dist.project_name} {dist.version}"
        for plugin, dist in pm.list_plugin_distinfo()
    }
    described = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        connectors: dict[str, list[str]] = {"sources": [], "destinations": []}
        for hook, kind in (
            ("register_sources", "sources"),
            ("register_destinations", "destinations"),
        ):
            for impl in getattr(pm.hook, hook).get_hookimpls():
                if impl.plugin is plugin:
                    connectors[kind] += [cls.name for cls in impl.function() or []]
        described.append(
            {
                "name": name,
                "version": versions.get(id(plugin), f"hub {__version__} (built in)"),
                "hooks": hooks,
                "connectors": connectors,
            }
        )
    return described
