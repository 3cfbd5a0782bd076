"""Every hook a plugin can implement. Nothing else in the hub declares hooks.

Plugins import the marker from the package: ``from hub import hookimpl``. The hub calls
hooks with keyword arguments only, and an implementation may accept fewer arguments than
the specification lists, so hooks can gain arguments without breaking plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from hub.connector import DestinationConnector, SourceConnector

__all__ = ["hookimpl", "hookspec", "register_destinations", "register_sources"]

hookspec = pluggy.HookspecMarker("hub")
hookimpl = pluggy.HookimplMarker("hub")


@hookspec
def register_sources() -> list[type[SourceConnector]]:
    """Return source connector classes this plugin provides.

    Each class names itself with its ``name`` attribute; a source in hub.yaml picks it with
    ``connector: <name>``. Two plugins may not provide the same name.
    """


@hookspec
def register_destinations() -> list[type[DestinationConnector]]:
    """Return destination connector classes this plugin provides.

    Each class names itself with its ``name`` attribute; a destination in hub.yaml picks it
    with ``connector: <name>``. Two plugins may not provide the same name.
    """
