"""What a connector is: the classes a plugin subclasses.

A **source connector** turns a provider's webhook into canonical events::

    single_headers               headers that may appear once only (signature, id)
    screen(headers, now)         refuse from the headers alone, before the body is read
    verify(headers, body, now)   raise SignatureError unless the raw bytes are authentic
    schema                       its JSON Schema: a file name under schemas/, or the schema
    dedup_key(headers, body)     what makes two deliveries of one webhook the same
    normalize(payload, context)  the payload → a list of BookingEvent (async: it may look up
                                 bookings the hub has seen, and pair two-webhook changes)

A **destination connector** delivers actions::

    plan(event, action)          the messages one action sends for one event (one job each)
    deliver(delivery)            send one message; return a DeliveryResult or raise
                                 RetryableDelivery / PermanentDelivery

Both declare a pydantic ``config_model`` for their entry in hub.yaml. Connectors do not use
the store themselves: the core hands them what they need (booking lookups and pairing in
the normalize context; a destination's own ``Memory`` in the connector context).
"""

from __future__ import annotations

import functools
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from hub.bookings import Bookings
from hub.clock import Clock
from hub.errors import PermanentDelivery
from hub.model import BookingEvent
from hub.posting import Poster
from hub.retry import RetryPolicy
from hub.schemas import compile_schema
from hub.store import EndpointPolicy, Store
from hub.units import Duration

__all__ = [
    "ActionConfig",
    "CircuitConfig",
    "Delivery",
    "DeliveryResult",
    "DestinationConfig",
    "DestinationConnector",
    "Memory",
    "NormalizeContext",
    "SourceConfig",
    "SourceConnector",
]


class SourceConfig(BaseModel):
    """Options every source has; a connector's model adds its own."""

    model_config = ConfigDict(extra="forbid")
    connector: str


class CircuitConfig(BaseModel):
    """The circuit breaker of a destination: it opens when ``failure_ratio`` of at least
    ``min_requests`` attempts within ``window`` failed, and lets one probe through after
    ``open_for``. While it is open, jobs wait without using up attempts."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    window: Duration = timedelta(seconds=60)
    failure_ratio: float = Field(0.5, gt=0.0, le=1.0)
    min_requests: int = Field(10, ge=1)
    open_for: Duration = timedelta(seconds=30)


class DestinationConfig(BaseModel):
    """Options every destination has; a connector's model adds its own."""

    model_config = ConfigDict(extra="forbid")
    connector: str
    timeout: Duration = Field(timedelta(seconds=15), description="Time limit of one attempt")
    retry: RetryPolicy = RetryPolicy()
    concurrency: int | None = Field(
        None, ge=1, description="Most attempts in flight at once, across all workers"
    )
    circuit: CircuitConfig = CircuitConfig()
    deny_private_networks: bool = Field(
        False,
        description="Refuse to send to a host that resolves to a private, loopback or "
        "link-local address",
    )

    def endpoint_policy(self) -> EndpointPolicy:
        return EndpointPolicy(
            concurrency=self.concurrency or 0,
            circuit=self.circuit.enabled,
            window=self.circuit.window.total_seconds(),
            failure_ratio=self.circuit.failure_ratio,
            min_requests=self.circuit.min_requests,
            open_for=self.circuit.open_for.total_seconds(),
        )


class ActionConfig(BaseModel):
    """One entry of a route's ``send`` list; a connector's model adds its own options."""

    model_config = ConfigDict(extra="forbid")
    to: str = Field(description="Name of the destination")


@dataclass(frozen=True)
class NormalizeContext:
    """What a source connector is told when it normalizes an accepted webhook, and what
    it may ask: ``bookings`` knows the bookings the hub has seen."""

    source: str
    inbound_event_id: str
    received_at: datetime
    bookings: Bookings
    # the hub's HTTP client, for a source that must fetch what a webhook only points to
    http: aiohttp.ClientSession | None = None

    def event_id(self, index: int) -> str:
        """Id of the ``index``-th canonical event made from this webhook; stable on retry."""
        return f"{self.inbound_event_id}.{index}"


class SourceConnector(ABC):
    name: ClassVar[str]
    config_model: ClassVar[type[SourceConfig]] = SourceConfig
    schema: ClassVar[str | dict[str, Any]]
    # Headers ``verify`` and ``dedup_key`` read: a request that repeats one is refused
    # (401) before anything else, so no two readers can take different values of it.
    single_headers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, source: str, config: SourceConfig) -> None:
        self.source = source
        self.config = config
        self.validator = compile_schema(self.schema)

    def screen(self, headers: Mapping[str, str], now: float) -> None:  # noqa: B027
        """Raise SignatureError when the headers alone show the request cannot be authentic
        (a missing or malformed signature header, a stale timestamp). Called before the
        body is read, so a hopeless request holds no memory. Default: nothing to refuse."""

    @abstractmethod
    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Raise SignatureError unless ``body`` is authentic. ``now`` is epoch seconds."""

    def dedup_key(self, headers: Mapping[str, str], body: bytes) -> str:
        """Two requests with the same key are one webhook. Default: a hash of the body."""
        return hashlib.sha256(body).hexdigest()

    def dedup_window(self) -> timedelta | None:
        """How long this source's webhooks are remembered to drop duplicates; None for the
        store's ``dedup_window``."""
        return None

    def order_key(self, payload: dict[str, Any]) -> str | None:
        """Webhooks with the same key are turned into events one at a time, in the order
        they were accepted: return the provider's booking reference. Default: no order.
        On a partitioned store (a Cluster) it also picks the webhook's partition."""
        return None

    def partition_key(self, payload: dict[str, Any]) -> str | None:
        """On a partitioned store (a Cluster), the key whose partition the webhook goes to:
        the booking's reference this webhook follows on from (Calendly: the old invitee of
        a reschedule's new half, so both halves meet). Default: the ordering key."""
        return self.order_key(payload)

    def linked_keys(self, payload: dict[str, Any]) -> list[str]:
        """References that later webhooks of the same booking will carry (Calendly: the new
        invitee of a reschedule). A partitioned store routes them to this webhook's
        partition, so a booking's whole history shares one. Default: none."""
        return []

    def event_name(self, payload: dict[str, Any]) -> str | None:
        """The provider's own name of the event, as operators see it listed. Default: the
        payload's ``event`` or ``type`` field, if it is a string."""
        for field_name in ("event", "type"):
            value = payload.get(field_name)
            if isinstance(value, str):
                return value[:200]
        return None

    @abstractmethod
    async def normalize(
        self, payload: dict[str, Any], context: NormalizeContext
    ) -> list[BookingEvent]:
        """Turn a valid payload into canonical events (none for events the hub ignores)."""


@dataclass(frozen=True)
class Delivery:
    """One message to one destination. ``id`` is stable across attempts: send it as the
    idempotency key where the destination has one.

    ``data`` is the canonical event as JSON (``BookingEvent.to_json()``), validated when
    the event was made and kept as it is: a destination that sends the event sends it
    without another round trip through the model. ``event`` is the model, built from
    ``data`` the first time it is read.
    """

    id: str
    attempt: int
    route: str
    data: dict[str, Any]
    message: dict[str, Any]

    @functools.cached_property
    def event(self) -> BookingEvent:
        try:
            return BookingEvent.model_validate(self.data)
        except ValueError as error:
            raise PermanentDelivery(f"stored event does not parse: {error}") from error


@dataclass(frozen=True)
class DeliveryResult:
    status: int | None = None
    response: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Memory:
    """What one destination remembers between deliveries, kept in the store: say, the
    id the destination gave an appointment, by booking."""

    def __init__(self, store: Store, scope: str) -> None:
        self._store = store
        self._scope = scope

    async def get(self, key: str) -> str | None:
        return await self._store.recall(self._scope, key)

    async def set(self, key: str, value: str) -> None:
        await self._store.remember(self._scope, key, value)

    async def delete(self, key: str) -> None:
        await self._store.forget(self._scope, key)


@dataclass(frozen=True)
class ConnectorContext:
    """Shared resources handed to destination connectors."""

    http: aiohttp.ClientSession
    clock: Clock
    store: Store | None = None
    # the session that connects to public addresses only (``deny_private_networks``)
    public_http: aiohttp.ClientSession | None = None
    # the delivery client (``hub.posting``), and its twin for public addresses only
    posts: Poster | None = None
    public_posts: Poster | None = None

    def session(self, public_only: bool) -> aiohttp.ClientSession:
        """The session for a destination: the one that connects to public addresses only
        when it denies private networks (and there is one), else the shared one."""
        if public_only and self.public_http is not None:
            return self.public_http
        return self.http

    def poster(self, public_only: bool) -> Poster:
        """The delivery client for a destination (``hub.outbound.post_json`` sends through
        it): the one that connects to public addresses only when it denies private
        networks, else the shared one."""
        chosen = self.public_posts if public_only and self.public_posts else self.posts
        if chosen is None:
            raise RuntimeError("this context has no delivery client")
        return chosen

    def memory(self, destination: str) -> Memory:
        """The memory of one destination."""
        if self.store is None:
            raise RuntimeError("this context has no store")
        return Memory(self.store, destination)


class DestinationConnector(ABC):
    name: ClassVar[str]
    config_model: ClassVar[type[DestinationConfig]] = DestinationConfig
    action_model: ClassVar[type[ActionConfig]] = ActionConfig

    def __init__(self, destination: str, config: DestinationConfig, context: ConnectorContext):
        self.destination = destination
        self.config = config
        self.context = context

    @classmethod
    def unsupported(cls, event_type: str, action: ActionConfig) -> str | None:
        """Why this action cannot handle events of ``event_type``, or None if it can.

        Checked when hub.yaml is loaded, so a route that cannot work is refused up front.
        """
        return None

    @classmethod
    def check(cls, config: DestinationConfig, now: float) -> list[str]:
        """Warnings about this destination's settings, for ``hub check`` and the worker's
        start (an expiring credential, say)."""
        return []

    def plan(self, event: BookingEvent, action: ActionConfig) -> list[dict[str, Any]]:
        """The messages one action sends for one event; each becomes its own job."""
        return [{}]

    @abstractmethod
    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        """Send one message. Raise RetryableDelivery or PermanentDelivery on failure."""
