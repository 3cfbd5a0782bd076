"""hub: a self-hosted webhook gateway and integration hub for scheduling."""

from hub.hookspecs import hookimpl

__all__ = ["Expression", "HtmlTemplate", "Template", "__version__", "hookimpl"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``hub.Template``, ``hub.HtmlTemplate``, ``hub.Expression`` (see hub.fields), loaded
    when first asked for."""
    if name in ("Expression", "HtmlTemplate", "Template"):
        from hub import fields

        return getattr(fields, name)
    raise AttributeError(f"module 'hub' has no attribute {name!r}")
