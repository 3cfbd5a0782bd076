"""``hub.yaml``: loading, ``${VAR}`` interpolation, validation with errors that name the line.

Validation runs in two passes. The first checks the file's own shape (store, server,
worker, sources, destinations, routes). The second hands each source and destination to
its connector's config model, and each route action to its destination's action model,
so a misspelt connector option is reported as precisely as a misspelt top-level key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from hub.admin.settings import AdminConfig
from hub.conditions import Condition, compile_condition
from hub.errors import ConfigError
from hub.ics import IcsLinks
from hub.model import EventType
from hub.retry import RetryPolicy
from hub.secrets import SigningKey
from hub.units import ByteSize, Duration

if TYPE_CHECKING:
    import pluggy

    from hub.connector import DestinationConnector, SourceConnector

__all__ = [
    "Config",
    "LogConfig",
    "RouteConfig",
    "ServerConfig",
    "StoreConfig",
    "WorkerConfig",
    "interpolate",
    "load_config",
    "parse_config",
]


EMBEDDED = "embedded"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreConfig(_Section):
    url: str = Field(
        "redis://localhost:6379/0",
        description="Redis URL of the store, or `embedded`: a server the hub runs itself",
    )
    path: Path = Field(
        Path(".hub/store"),
        description="The embedded store's data directory (relative: to hub.yaml's directory)",
    )
    prefix: str = Field("hub", description="Prefix of every Redis key the hub writes")
    dedup_window: Duration = Field(
        timedelta(days=3),
        ge=timedelta(seconds=1),
        description="How long a webhook is remembered to drop its duplicates",
    )
    retention: Duration = Field(
        timedelta(days=7),
        ge=timedelta(seconds=1),
        description="How long finished events and jobs stay readable; bookings stay until "
        "their end (and their last time trigger) plus this",
    )
    dead_letter_retention: Duration = Field(
        timedelta(days=30),
        ge=timedelta(seconds=1),
        description="How long a dead letter (and the webhook it came from) stays for "
        "inspection and replay",
    )
    encryption_keys: list[SecretStr] = Field(
        [],
        description="Fernet keys: event bodies and job payloads are encrypted at rest with "
        "the first; all of them decrypt (rotation)",
    )
    partitions: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Partitions of the key space (hash-tagged, one slot each); default 1 on "
        "one Redis, 16 on a Cluster. Change it only on a drained store",
    )
    min_replicas: int = Field(
        0,
        ge=0,
        description="Answer an accept, an enqueue or a completion only once this many "
        "replicas confirm it (WAIT); 503 to the provider otherwise",
    )
    replica_timeout: Duration = Field(
        timedelta(seconds=1),
        ge=timedelta(milliseconds=1),
        description="How long to wait for min_replicas to confirm a write",
    )

    @field_validator("encryption_keys", mode="before")
    @classmethod
    def _one_or_many_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("encryption_keys")
    @classmethod
    def _fernet_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        from cryptography.fernet import Fernet

        for i, key in enumerate(keys):
            try:
                Fernet(key.get_secret_value().encode())
            except ValueError:
                raise ValueError(
                    f"key {i} is not a Fernet key (32 url-safe base64-encoded bytes; "
                    "make one with: hub keygen)"
                ) from None
        return keys

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if value == EMBEDDED:
            return value
        from hub.store.connect import parse_store_url

        parse_store_url(value)
        return value

    @field_validator("path")
    @classmethod
    def _plain_path(cls, value: Path) -> Path:
        if any(ord(char) < 32 or ord(char) == 127 for char in str(value)):
            raise ValueError("a path with control characters (a line break, say) is refused")
        return value

    @property
    def embedded(self) -> bool:
        """The hub runs the store itself (``store: embedded``), in ``path``."""
        return self.url == EMBEDDED


class ServerConfig(_Section):
    host: str = Field("127.0.0.1", description="Address the HTTP intake listens on")
    port: int = Field(8080, ge=0, le=65535)
    max_body: ByteSize = Field(256 * 1024, gt=0, description="Largest webhook body accepted")
    body_timeout: Duration = Field(
        timedelta(seconds=10),
        gt=timedelta(0),
        description="Longest wait for a webhook's body, once its headers are in (then 408)",
    )
    max_reading: int = Field(
        64, ge=1, description="Most webhook bodies read at once; the others wait their turn"
    )
    max_depth: int = Field(
        32, ge=2, le=512, description="Deepest nesting of JSON accepted in a webhook body"
    )
    shutdown_timeout: Duration = Field(
        timedelta(seconds=10), description="Grace for open requests on SIGTERM"
    )
    public_url: str | None = Field(
        None, description="The hub's address as others reach it, for links in messages"
    )
    ics_secret: SigningKey | None = Field(
        None,
        description="Secret of the links to bookings' invitations, GET /bookings/{token}.ics "
        "(served only when set)",
    )

    @field_validator("public_url", "ics_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    def ics_links(self) -> IcsLinks | None:
        if self.ics_secret is None:
            return None
        return IcsLinks(self.ics_secret.get_secret_value().encode(), self.public_url)


class WorkerConfig(_Section):
    concurrency: int = Field(16, ge=1, description="Jobs one worker runs at once")
    lease: Duration = Field(
        timedelta(seconds=60),
        ge=timedelta(seconds=1),
        description="How long a claimed job is held; a crashed worker's jobs return after it",
    )
    poll_interval: Duration = Field(
        timedelta(milliseconds=500),
        gt=timedelta(0),
        description="Longest wait between looks at the due index",
    )
    shutdown_grace: Duration = Field(
        timedelta(seconds=20),
        description="On SIGTERM, how long running jobs may finish before they are released",
    )
    dispatch_retry: RetryPolicy = Field(
        RetryPolicy(attempts=5, base=timedelta(seconds=1), factor=4, cap=timedelta(minutes=5)),
        description="Retries of turning an accepted webhook into deliveries",
    )


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console", "auto"] = Field(
        "auto", description="auto: console on a terminal, JSON lines otherwise"
    )


class ConnectorSpec(BaseModel):
    """A source or destination before its connector's own model has checked it."""

    model_config = ConfigDict(extra="allow")
    connector: str = Field(description="Name of the connector plugin")


class ActionSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    to: str = Field(description="Name of a destination")


TIME_TRIGGERS = ("before_meeting_starts", "after_meeting_ends")


class RouteConfig(_Section):
    name: str
    on: list[EventType] = Field(description="Event types that trigger the route")
    send: list[ActionSpec] = Field(min_length=1)
    meetings: list[str] = Field(
        [],
        description="Only bookings of these meetings (id, e.g. a Calendly event type URI, or name)",
    )
    when: str | None = Field(
        None, description="CEL expression over the event; the route runs if true"
    )
    offset: Duration | None = Field(
        None, description="Time triggers: how long before the start / after the end"
    )
    if_late: Literal["skip", "now"] = Field(
        "skip",
        description="before_meeting_starts, for a booking made later than start - offset: "
        "no reminder, or one at once",
    )
    keep_on_no_show: bool = Field(
        False, description="after_meeting_ends: still send when the client was a no-show"
    )

    @field_validator("on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> RouteConfig:
        timed = [t for t in self.on if t in TIME_TRIGGERS]
        if timed and len(self.on) > 1:
            raise ValueError(
                f"route {self.name!r}: a time trigger ({timed[0]}) must be the route's only `on`"
            )
        if timed and self.offset is None:
            raise ValueError(f"route {self.name!r}: {timed[0]} needs an `offset`, e.g. 24h")
        if not timed and self.offset is not None:
            raise ValueError(
                f"route {self.name!r}: `offset` is for before_meeting_starts and "
                "after_meeting_ends only"
            )
        if self.when is not None:
            self._condition = compile_condition(self.name, self.when)
        return self

    _condition: Condition | None = PrivateAttr(None)

    @property
    def trigger(self) -> str | None:
        """The time trigger of a timed route, or None."""
        return self.on[0] if self.on[0] in TIME_TRIGGERS else None

    def condition(self) -> Condition | None:
        return self._condition


class _File(_Section):
    store: StoreConfig = StoreConfig()
    server: ServerConfig = ServerConfig()
    worker: WorkerConfig = WorkerConfig()
    log: LogConfig = LogConfig()
    admin: AdminConfig = AdminConfig()
    sources: dict[str, ConnectorSpec] = {}
    destinations: dict[str, ConnectorSpec] = {}
    routes: list[RouteConfig] = []

    @field_validator("store", mode="before")
    @classmethod
    def _url_shorthand(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value


class Config:
    """A validated configuration, with each connector's settings in its own model."""

    def __init__(
        self,
        file: _File,
        sources: dict[str, BaseModel],
        destinations: dict[str, BaseModel],
        actions: list[list[BaseModel]],
        path: str,
    ) -> None:
        self.store = file.store
        self.server = file.server
        self.worker = file.worker
        self.log = file.log
        self.admin = file.admin
        self.routes = file.routes
        self.sources = sources
        self.destinations = destinations
        self.actions = actions  # actions[i][j] is routes[i].send[j], typed
        self.path = path


# --- YAML 1.2 booleans ------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false, so ``on:`` stays a key."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)

# --- interpolation --------------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str, environ: Mapping[str, str], missing: list[str] | None = None) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}``; ``$$`` is a literal ``$``. An unset
    ``${VAR}`` raises KeyError, or, given a ``missing`` list, is added to it and left
    empty."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                if missing is None:
                    raise KeyError(name)
                missing.append(name)
                return ""
            return default
        return value

    return _VAR.sub(replace, text)


def _interpolate_nodes(
    node: yaml.Node,
    environ: Mapping[str, str],
    missing: dict[str, int],
    seen: set[int] | None = None,
) -> None:
    """Interpolate every string in the tree; unset variables go to ``missing`` (name: the
    first line that uses it) and are left empty."""
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias: the anchored node is done already
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        if "$" in node.value and node.tag == "tag:yaml.org,2002:str":
            unset: list[str] = []
            node.value = interpolate(node.value, environ, unset)
            for name in unset:
                missing.setdefault(name, node.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _interpolate_nodes(item, environ, missing, seen)
    elif isinstance(node, yaml.MappingNode):
        for _key, value in node.value:
            _interpolate_nodes(value, environ, missing, seen)


def _missing_variables(missing: dict[str, int], where: str) -> str:
    """One error naming every unset variable, each with the line that first uses it."""
    names = sorted(missing, key=lambda name: missing[name])
    listed = ", ".join(f"{name} (line {missing[name]})" for name in names)
    if len(names) == 1:
        head = f"environment variable {names[0]} is not set (set it"
    else:
        head = f"{len(names)} environment variables are not set: {listed} (set them"
    return (
        f"{where}:{missing[names[0]]}: {head} in the environment, or write ${{VAR:-default}} "
        "to give a default)"
    )


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest node along ``loc`` that exists in the file."""
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    nxt = value
                    line = key.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            nxt = node.value[part]
        node = nxt
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _format_errors(
    error: ValidationError,
    root: yaml.Node | None,
    where: str,
    prefix: tuple[Any, ...] = (),
    unset_lines: frozenset[int] = frozenset(),
) -> list[str]:
    """One message per error; none for a line whose variable is unset (reported once,
    with the others, already)."""
    lines = []
    for item in error.errors():
        loc = prefix + tuple(p for p in item["loc"] if p not in ("function-after",))
        line = _line_of(root, loc)
        if line in unset_lines:
            continue
        path = ".".join(str(p) for p in loc) or "(top level)"
        at = f"{where}:{line}" if line else where
        message = item["msg"]
        if item["type"] in ("value_error", "assertion_error"):
            message = str(item.get("ctx", {}).get("error", message))
        if item["type"] == "extra_forbidden":
            message = "unknown option (check its spelling)"
        elif item["type"] == "missing":
            message = "required option is missing"
        lines.append(f"{at}: {path}: {message}")
    return lines


# --- loading ---------------------------------------------------------------------------


def load_config(
    path: str | Path,
    plugin_manager: pluggy.PluginManager,
    environ: Mapping[str, str] | None = None,
    *,
    secrets: bool = True,
) -> Config:
    """Read, interpolate and validate a configuration file. Raises ConfigError. See
    ``parse_config`` for ``secrets``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the configuration file: {error.strerror}") from None
    return parse_config(text, plugin_manager, environ=environ, where=str(path), secrets=secrets)


def parse_config(
    text: str,
    plugin_manager: pluggy.PluginManager,
    *,
    environ: Mapping[str, str] | None = None,
    where: str = "hub.yaml",
    secrets: bool = True,
) -> Config:
    """Validate configuration text; ``where`` names it in error messages. Every problem
    of the file is reported in one ConfigError, one line each.

    With ``secrets=False`` (commands that only read or change the store), unset
    variables are no error: a connector whose only problems are unset variables gets the
    options every connector of its kind has, and nothing it could deliver with."""
    from hub.plugins import destination_connectors, source_connectors

    environ = os.environ if environ is None else environ
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark else where
        raise ConfigError(f"{at}: not valid YAML: {getattr(error, 'problem', error)}") from None
    missing: dict[str, int] = {}
    if root is not None:
        _interpolate_nodes(root, environ, missing)
    data = _Loader("").construct_document(root) if root is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}:1: expected a mapping of options at the top level")
    checked = _Checked(root, where, frozenset(missing.values()), lenient=not secrets)
    if missing and secrets:
        checked.problems.append(_missing_variables(missing, where))
    file, route_at = _file(data, checked)

    base = Path(where).parent  # relative paths in the file are relative to the file
    file.store.path = base / file.store.path
    sources = _connector_configs(
        "sources", file.sources, source_connectors(plugin_manager), checked, base
    )
    destination_classes = destination_connectors(plugin_manager)
    destinations = _connector_configs(
        "destinations", file.destinations, destination_classes, checked, base
    )
    lease = file.worker.lease
    for name, destination in destinations.items():
        if destination.timeout >= lease:  # type: ignore[attr-defined]
            line = _line_of(root, ("destinations", name, "timeout"))
            checked.problems.append(
                f"{where}:{line}: destinations.{name}.timeout: must be shorter than "
                f"worker.lease ({lease.total_seconds():g} s), or a slow attempt loses its "
                "lease and runs twice"
            )
    actions = _route_actions(file, route_at, destinations, destination_classes, checked)
    if checked.problems:
        raise ConfigError("\n".join(checked.problems))
    return Config(file, sources, destinations, actions, where)


class _Checked:
    """What the checks of one file share: its tree, its name, the lines whose variables
    are unset, and the problems found so far."""

    def __init__(
        self, root: yaml.Node | None, where: str, unset_lines: frozenset[int], *, lenient: bool
    ) -> None:
        self.root = root
        self.where = where
        self.unset_lines = unset_lines
        self.lenient = lenient
        self.problems: list[str] = []

    def errors(self, error: ValidationError, prefix: tuple[Any, ...] = ()) -> list[str]:
        return _format_errors(error, self.root, self.where, prefix, self.unset_lines)


def _file(data: dict[str, Any], checked: _Checked) -> tuple[_File, list[int]]:
    """The file's own shape, with each route checked on its own, so that one bad option
    does not hide the problems of the rest. Returns the valid part, and the index in the
    file of each valid route."""
    routes = data.get("routes")
    rest = {key: value for key, value in data.items() if key != "routes"}
    try:
        file = _File.model_validate(rest)
    except ValidationError as error:
        checked.problems.extend(checked.errors(error))
        failed = {item["loc"][0] for item in error.errors() if item["loc"]}
        try:
            file = _File.model_validate({k: v for k, v in rest.items() if k not in failed})
        except ValidationError:  # pragma: no cover - every failing section was left out
            raise ConfigError("\n".join(checked.problems)) from None
    route_at: list[int] = []
    if routes is None:
        return file, route_at
    if not isinstance(routes, list):
        try:
            _File.model_validate({"routes": routes})
        except ValidationError as error:
            checked.problems.extend(checked.errors(error))
        return file, route_at
    for i, route in enumerate(routes):
        try:
            file.routes.append(RouteConfig.model_validate(route))
            route_at.append(i)
        except ValidationError as error:
            checked.problems.extend(checked.errors(error, ("routes", i)))
    return file, route_at


def _connector_configs(
    section: str,
    specs: dict[str, ConnectorSpec],
    classes: Mapping[str, type[SourceConnector] | type[DestinationConnector]],
    checked: _Checked,
    base: Path,
) -> dict[str, BaseModel]:
    from hub.connector import DestinationConfig, SourceConfig

    typed = {}
    for name, spec in specs.items():
        cls = classes.get(spec.connector)
        if cls is None:
            known = ", ".join(sorted(classes)) or "none"
            line = _line_of(checked.root, (section, name, "connector"))
            checked.problems.append(
                f"{checked.where}:{line}: {section}.{name}.connector: unknown connector "
                f"{spec.connector!r} (loaded: {known})"
            )
            continue
        try:
            typed[name] = cls.config_model.model_validate(
                spec.model_dump(), context={"base_dir": base}
            )
        except ValidationError as error:
            found = checked.errors(error, (section, name))
            if found or not checked.lenient:
                checked.problems.extend(found)
                continue
            # Only unset variables: the options every connector of its kind has.
            common = SourceConfig if section == "sources" else DestinationConfig
            given = spec.model_dump()
            typed[name] = common.model_validate(
                {key: given[key] for key in common.model_fields if key in given}
            )
    return typed


def _route_actions(
    file: _File,
    route_at: list[int],
    destinations: dict[str, BaseModel],
    classes: Mapping[str, type[DestinationConnector]],
    checked: _Checked,
) -> list[list[BaseModel]]:
    root, where, problems = checked.root, checked.where, checked.problems
    names = [route.name for route in file.routes]
    for k, name in enumerate(names):
        if name in names[:k]:
            i = route_at[k]
            line = _line_of(root, ("routes", i, "name"))
            problems.append(f"{where}:{line}: routes.{i}.name: route name {name!r} is used twice")
    actions: list[list[BaseModel]] = []
    for i, route in zip(route_at, file.routes, strict=True):
        typed_route: list[BaseModel] = []
        for j, spec in enumerate(route.send):
            loc = ("routes", i, "send", j)
            at = f"{where}:{_line_of(root, (*loc, 'to'))}: routes.{i}.send.{j}.to"
            if spec.to not in file.destinations:
                known = ", ".join(sorted(file.destinations)) or "none"
                problems.append(f"{at}: no destination named {spec.to!r} (defined: {known})")
                continue
            if spec.to not in destinations:
                continue  # its destination is invalid and reported already
            cls = classes[file.destinations[spec.to].connector]
            try:
                action = cls.action_model.model_validate(spec.model_dump())
            except ValidationError as error:
                problems.extend(
                    f"{line} (route {route.name!r})" for line in checked.errors(error, loc)
                )
                continue
            for event_type in route.on:
                reason = cls.unsupported(event_type, action)
                if reason:
                    problems.append(
                        f"{at}: route {route.name!r} sends {event_type} to {spec.to!r}: {reason}"
                    )
            typed_route.append(action)
        actions.append(typed_route)
    return actions
