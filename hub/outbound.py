"""Sending HTTP deliveries, and what a response means for the job."""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from hub.connector import DeliveryResult
from hub.errors import PermanentDelivery, RetryableDelivery

__all__ = [
    "RESPONSE_EXCERPT",
    "check_public",
    "client_session",
    "parse_retry_after",
    "post_json",
    "redirect_refused",
]

RESPONSE_EXCERPT = 1024  # bytes of a response body kept with an attempt
# Client errors that may succeed later: timeout, conflict, too early, too many requests.
_RETRYABLE_4XX = {408, 409, 425, 429}


# A socket that does not connect within this many seconds fails the attempt (retried).
CONNECT_TIMEOUT = 10.0


def client_session(connector: aiohttp.BaseConnector | None = None) -> aiohttp.ClientSession:
    """The session the hub's outbound requests go through. Its only limit of its own is on
    connecting a socket: a delivery is bounded as a whole by its destination's ``timeout``
    (the worker's), a source's API call by its own. No per-request limit here, so a request
    over a pooled connection arms no timer (aiohttp's ``total`` and ``connect`` each would)."""
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
        ip = ipaddress.ip_address(address[0])
        if not ip.is_global:
            raise PermanentDelivery(
                f"{host} resolves to {ip}, a private address, and deny_private_networks is set"
            )


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
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any] | bytes,
    *,
    now: float,
    headers: dict[str, str] | None = None,
    deny_private_networks: bool = False,
) -> DeliveryResult:
    """POST ``body`` as JSON (bytes are sent as they are: what was signed is what goes).
    2xx is success; 408/409/425/429 and 5xx are retryable (with the destination's
    Retry-After); any other status is permanent. A network error is retryable."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    if deny_private_networks:
        await check_public(url)
    try:
        async with session.post(
            url,
            data=data,
            headers={"Content-Type": "application/json", **(headers or {})},
            allow_redirects=False,
        ) as response:
            excerpt = (await response.content.read(RESPONSE_EXCERPT)).decode(errors="replace")
            status = response.status
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
            location = response.headers.get("Location")
    except aiohttp.ClientError as error:
        raise RetryableDelivery(f"{type(error).__name__}: {error}") from error
    if 300 <= status < 400:
        redirect_refused(url, status, location, excerpt)
    if 200 <= status < 300:
        return DeliveryResult(status=status, response=excerpt)
    detail = f"{url} answered {status}"
    if status >= 500 or status in _RETRYABLE_4XX:
        raise RetryableDelivery(detail, status=status, response=excerpt, retry_after=retry_after)
    raise PermanentDelivery(detail, status=status, response=excerpt)
