"""Sending HTTP deliveries, and what an answer means for the job; the session of API calls."""

from __future__ import annotations

import asyncio
import email.utils
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from hub.connector import DeliveryResult
from hub.errors import PermanentDelivery, RetryableDelivery
from hub.posting import EXCERPT, Poster, PostFailed, PrivateAddress, is_public, refusal

__all__ = [
    "RESPONSE_EXCERPT",
    "PrivateAddress",
    "PublicResolver",
    "check_public",
    "client_session",
    "parse_retry_after",
    "post_json",
    "redirect_refused",
    "request_failed",
]

RESPONSE_EXCERPT = EXCERPT  # bytes of a response body kept with an attempt
# Client errors that may succeed later: timeout, conflict, too early, too many requests.
_RETRYABLE_4XX = {408, 409, 425, 429}


# A socket that does not connect within this many seconds fails the attempt (retried).
CONNECT_TIMEOUT = 10.0


class PublicResolver(AbstractResolver):
    """aiohttp's resolver, keeping only public addresses: a host with none left is refused
    (``PrivateAddress``). The addresses a connection is made to are the ones checked, so
    a name that resolved to a public address for ``check_public`` and to a private one a
    moment later (DNS rebinding) is refused too."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        public = [r for r in found if is_public(r["host"])]
        if found and not public:
            raise PrivateAddress(refusal(host, found[0]["host"]))
        return public

    async def close(self) -> None:
        await self._resolver.close()


def client_session(
    connector: aiohttp.BaseConnector | None = None, *, public_only: bool = False
) -> aiohttp.ClientSession:
    """The session of the hub's API calls (a provider's API, Auvious's; deliveries POST
    through ``hub.posting.Poster``). Its only limit of its own is on connecting a socket: a
    call made in a delivery is bounded as a whole by its destination's ``timeout`` (the
    worker's), a source's API call by its own. No per-request limit here, so a request
    over a pooled connection arms no timer (aiohttp's ``total`` and ``connect`` each would).
    ``public_only``: it connects to public addresses only (``PublicResolver``), for the
    destinations with ``deny_private_networks``; its pooled connections are its own."""
    if public_only and connector is None:
        connector = aiohttp.TCPConnector(resolver=PublicResolver())
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
        headers={"User-Agent": "hub"},
    )


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now, 0.0)


async def check_public(url: str) -> None:
    """Refuse (permanently) a URL whose host resolves to a private, loopback, link-local
    or otherwise non-public address: a destination's ``deny_private_networks`` guard."""
    host = urlsplit(url).hostname or ""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as error:
        raise RetryableDelivery(f"cannot resolve {host}: {error}") from error
    for *_, address in found:
        if not is_public(address[0]):
            raise PermanentDelivery(refusal(host, address[0]))


def request_failed(error: aiohttp.ClientError, what: str = "") -> Exception:
    """What a request that failed without an answer means for the attempt: a host found
    to be private as it was connected to is permanent, anything else may pass."""
    if isinstance(error, aiohttp.ClientConnectorError) and isinstance(
        error.os_error, PrivateAddress
    ):
        return PermanentDelivery(str(error.os_error))
    return RetryableDelivery(f"{what}{type(error).__name__}: {error}")


def redirect_refused(url: str, status: int, location: str | None, excerpt: str) -> None:
    """Redirects are not followed (a body must not go where nobody configured it): a 3xx is
    a failed attempt that names where it pointed."""
    raise PermanentDelivery(
        f"{url} answered {status} redirecting to {location or '(no Location)'}; redirects are "
        "not followed: set the destination's URL to where it should go",
        status=status,
        response=excerpt,
    )


async def post_json(
    poster: Poster,
    url: str,
    body: dict[str, Any] | bytes,
    *,
    now: float,
    headers: dict[str, str] | None = None,
    deny_private_networks: bool = False,
) -> DeliveryResult:
    """POST ``body`` as JSON through the hub's delivery client (``ConnectorContext.poster``;
    bytes are sent as they are: what was signed is what goes). 2xx is success;
    408/409/425/429 and 5xx are retryable (with the destination's Retry-After); any other
    status is permanent. No answer (a network error, a malformed answer) is retryable; a
    host found to be private as it is connected to is permanent."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    if deny_private_networks:
        await check_public(url)
    try:
        answer = await poster.post(url, data, headers or {})
    except PrivateAddress as error:
        raise PermanentDelivery(str(error)) from error
    except PostFailed as error:
        raise RetryableDelivery(str(error)) from error
    status = answer.status
    excerpt = answer.excerpt.decode(errors="replace")
    if 200 <= status < 300:
        return DeliveryResult(status=status, response=excerpt)
    if 300 <= status < 400:
        redirect_refused(url, status, answer.location, excerpt)
    detail = f"{url} answered {status}"
    if status >= 500 or status in _RETRYABLE_4XX:
        retry_after = parse_retry_after(answer.retry_after, now)
        raise RetryableDelivery(detail, status=status, response=excerpt, retry_after=retry_after)
    raise PermanentDelivery(detail, status=status, response=excerpt)
