"""hub: a self-hosted webhook gateway and integration hub for scheduling."""

from hub.hookspecs import hookimpl

__all__ = ["__version__", "hookimpl"]
__version__ = "0.1.0"
