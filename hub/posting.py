"""The hub's HTTP/1.1 client for deliveries: one POST, its answer's status and first bytes.

A delivery needs little of an HTTP client: a body POSTed over a kept connection, the
status, the first ``EXCERPT`` bytes of the answer, its ``Retry-After`` and ``Location``.
aiohttp's client, made for every use, does much more for each request (cookies,
redirects, tracing, a URL and a header multidict built anew, a task to write the body),
and took more CPU per request than the rest of a delivery together. ``Poster`` does only
what a delivery needs, on the loop's own transports, and leaves parsing the answers to
llhttp (Node.js's HTTP parser, through ``httptools``). The hub's other requests (a
provider's API, the Auvious API) go through aiohttp.

What it does as aiohttp did for deliveries: connections are kept per origin (scheme,
host, port) and used again, most recently used first, for up to ``keepalive`` seconds;
TLS is verified against the system's certificates; redirects are answers like any other
(the caller refuses them); a connection whose answer was not read to its end (an excerpt
is all a delivery keeps) is closed, never used again; a POST is never sent twice by the
client itself (a connection the server closed as the request went out fails the attempt,
which the worker retries). A kept connection past its keepalive is closed at the next
POST to any origin, if the server has not closed it before; an origin has as many
connections as POSTs in flight to it at once (the worker's concurrency bounds them).
``public_only``: every address a host resolves to is checked
as it is connected to, and a host with no public address is refused (``PrivateAddress``),
so a name that resolves to a private address later (DNS rebinding) is refused too.

Hostile answers: the status line and headers of one answer may take ``MAX_HEAD`` bytes,
anything llhttp refuses (a malformed line, two lengths, a bad chunk) fails the attempt
with ``PostFailed`` and closes the connection, and a header value the caller gives may
not hold a line break or a NUL (``ValueError``: the message cannot be made).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import ipaddress
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import httptools
from yarl import URL

__all__ = ["EXCERPT", "MAX_HEAD", "Answer", "PostFailed", "Poster", "PrivateAddress"]

EXCERPT = 1024  # bytes of an answer's body kept
MAX_HEAD = 64 * 1024  # bytes of an answer's status line and headers, at most
CONNECT_TIMEOUT = 10.0  # seconds to resolve a host and connect to it
KEEPALIVE = 15.0  # seconds a connection is kept unused (aiohttp's default too)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110)
_BREAK = re.compile(r"[\r\n\x00]")  # what a header value may not hold


class PostFailed(Exception):
    """No answer: the host could not be reached, the connection dropped before the answer
    came, or the answer was not HTTP. The text names the host, never the body."""


class PrivateAddress(OSError):
    """A host that resolves to no public address, for a destination that sends to public
    addresses only."""


def refusal(host: str, ip: object) -> str:
    """Why a host is refused under ``deny_private_networks``."""
    return f"{host} resolves to {ip}, a private address, and deny_private_networks is set"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    excerpt: bytes  # the body's first EXCERPT bytes
    retry_after: str | None = None
    location: str | None = None


@dataclass(frozen=True, slots=True)
class _Target:
    """A URL as the client uses it, made once per URL."""

    origin: tuple[str, str, int]  # scheme, host, port
    host: str  # to resolve and to check the certificate against
    port: int
    tls: bool
    head: bytes  # the request line and the headers every request to it carries


class _Connection(asyncio.Protocol):
    """One kept connection: a request at a time, its answer parsed by llhttp as it comes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: set[_Connection]) -> None:
        self._loop = loop
        self._pool = pool  # the poster's open connections: this one leaves it as it closes
        self._parser = httptools.HttpResponseParser(self)
        # as lenient as aiohttp's own parser: an answer it read is read here too
        self._parser.set_dangerous_leniencies(
            lenient_headers=True,
            lenient_optional_cr_before_lf=True,
            lenient_spaces_after_chunk_size=True,
        )
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.used = 0.0  # when it was last given back, on the loop's clock
        self._waiter: asyncio.Future[Answer] | None = None
        self._head = 0  # bytes of the answer's head so far, by its headers
        self._fed = 0  # bytes fed while the head was still incomplete
        self._status = 0
        self._body: list[bytes] = []
        self._kept = 0  # bytes of the body kept
        self._complete = False  # the answer came to its end
        self._delimited = False  # the answer gives its body's length, or sends it chunked
        self._retry_after: str | None = None
        self._location: str | None = None

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(PostFailed("the answer switched protocols"))
        except httptools.HttpParserError as error:
            cause = error.__context__ if isinstance(error.__context__, PostFailed) else None
            self._fail(cause or PostFailed(f"the answer is not valid HTTP ({error})"))
        else:
            if self._waiter is None:
                return
            if self._status < 200:
                # a header still coming: llhttp gathers it whole before a callback
                self._fed += len(data)
                if self._fed > MAX_HEAD:
                    self._fail(PostFailed(f"the answer's headers exceed {MAX_HEAD} bytes"))
            elif self._kept >= EXCERPT:
                # all a delivery keeps, and the body goes on: the rest is not waited for
                self._finish(False)

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost says what it meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._pool.discard(self)
        if self._waiter is None or self._waiter.done():
            return
        if self._status >= 200 and exc is None and self._until_close():
            self._finish(False)  # a body delimited by the end of the connection
        else:
            self._fail(PostFailed("the connection closed before the answer came"))

    # --- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._waiter is None:  # a second answer to one request
            raise PostFailed("the server sent more than one answer")
        self._reset()

    def _reset(self) -> None:
        self._head = self._fed = self._status = self._kept = 0
        self._complete = self._delimited = False
        self._body = []
        self._retry_after = self._location = None

    def on_status(self, status: bytes) -> None:
        self._count(len(status))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # with ": " and the line end
        name = name.lower()
        if name == b"retry-after":
            self._retry_after = value.decode("latin-1")
        elif name == b"location":
            self._location = value.decode("latin-1")
        elif name == b"content-length":
            self._delimited = True
        elif name == b"transfer-encoding":
            # chunked if it is the last coding; else the body ends with the connection
            self._delimited = value.rsplit(b",", 1)[-1].strip().lower() == b"chunked"

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self._status < 200:
            return
        room = EXCERPT - self._kept
        if room > 0:
            self._body.append(body[:room])
            self._kept += min(len(body), room)

    def on_message_complete(self) -> None:
        if self._status < 200:  # 100 Continue, 103 Early Hints: the answer is still to come
            self._status = self._fed = 0
            return
        self._complete = True
        self._finish(self._parser.should_keep_alive())

    # --- the client's side -----------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future[Answer]:
        """Write one request; the future of its answer."""
        assert self.transport is not None and self._waiter is None
        self._waiter = self._loop.create_future()
        self._reset()
        self.transport.write(data)
        return self._waiter

    def usable(self, now: float, keepalive: float) -> bool:
        return (
            not self.lost
            and self.transport is not None
            and not self.transport.is_closing()
            and now - self.used < keepalive
        )

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()  # nothing of ours is left to write

    def _count(self, size: int) -> None:
        self._head += size
        if self._head > MAX_HEAD:
            raise PostFailed(f"the answer's headers exceed {MAX_HEAD} bytes")

    def _until_close(self) -> bool:
        # no length and not chunked: the body ends with the connection (HTTP/1.0 style)
        return not self._complete and not self._delimited

    def _finish(self, keep: bool) -> None:
        waiter, self._waiter = self._waiter, None
        if not keep:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(
                Answer(self._status, b"".join(self._body), self._retry_after, self._location)
            )

    def _fail(self, error: PostFailed) -> None:
        waiter, self._waiter = self._waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class Poster:
    """POSTs bodies over kept connections; ``post`` gives the ``Answer`` or raises
    ``PostFailed`` (or ``PrivateAddress`` with ``public_only``). A request that is
    cancelled (a delivery's time limit) closes its connection. ``ssl_context``: the TLS
    settings (the system's certificates unless given)."""

    def __init__(
        self,
        *,
        public_only: bool = False,
        user_agent: str = "hub",
        keepalive: float = KEEPALIVE,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.public_only = public_only
        self._agent = user_agent
        self._keepalive = keepalive
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], collections.deque[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._open: set[_Connection] = set()
        self._closed = False
        self._swept = 0.0  # when kept connections past their keepalive were last closed

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        target = self._targets.get(url) or self._target(url)
        request = target.head + _headers(headers, len(body)) + body
        loop = asyncio.get_running_loop()
        if loop.time() - self._swept > self._keepalive:
            self._sweep(loop.time())
        idle = self._idle.get(target.origin)
        connection = None
        while idle:
            candidate = idle.pop()  # the most recently used: least likely closed by now
            if candidate.usable(loop.time(), self._keepalive):
                connection = candidate
                break
            self._drop(candidate)
        if connection is None:
            connection = await self._connect(target, loop)
        try:
            answer = await connection.send(request)
        except BaseException:  # no answer, or no longer wanted: not used again
            self._drop(connection)
            raise
        if connection.lost or self._closed:
            self._drop(connection)
        else:
            connection.used = loop.time()
            self._idle.setdefault(target.origin, collections.deque()).append(connection)
        return answer

    async def close(self) -> None:
        """Close every connection; a request in flight fails."""
        self._closed = True
        for connection in list(self._open):
            self._drop(connection)
        self._idle.clear()

    def connections(self) -> int:
        """Connections open now, in use or kept."""
        return len(self._open)

    def _sweep(self, now: float) -> None:
        """Close the kept connections past their keepalive, of every origin: a destination
        no longer sent to holds none open for long."""
        self._swept = now
        for idle in self._idle.values():
            for connection in [c for c in idle if not c.usable(now, self._keepalive)]:
                idle.remove(connection)
                self._drop(connection)

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    def _target(self, url: str) -> _Target:
        parsed = URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.raw_host:
            raise ValueError("not an http(s) URL with a host")  # (its text may hold a password)
        host = parsed.raw_host  # IDNA-encoded: what is resolved and checked by TLS
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        lines = [
            f"POST {parsed.raw_path_qs} HTTP/1.1",
            f"Host: {parsed.host_port_subcomponent}",
            f"User-Agent: {self._agent}",
            "Content-Type: application/json",
        ]
        if parsed.raw_user is not None:  # credentials in the URL: Basic, as aiohttp sends them
            pair = f"{unquote(parsed.raw_user)}:{unquote(parsed.raw_password or '')}"
            try:
                raw = pair.encode("latin-1")  # as aiohttp encodes them
            except UnicodeEncodeError:
                raw = pair.encode()  # beyond latin-1: UTF-8 (RFC 7617)
            lines.append(f"Authorization: Basic {base64.b64encode(raw).decode()}")
        if _BREAK.search("".join(lines)):
            raise ValueError("the URL holds a line break")
        head = "".join(f"{line}\r\n" for line in lines)
        target = _Target(
            (parsed.scheme, host, port), host, port, parsed.scheme == "https", head.encode()
        )
        if len(self._targets) < 1024:  # the destinations' URLs; a bound all the same
            self._targets[url] = target
        return target

    async def _connect(self, target: _Target, loop: asyncio.AbstractEventLoop) -> _Connection:
        where = f"{target.host}:{target.port}"
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                found = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
                if self.public_only:
                    public = [f for f in found if is_public(f[4][0])]
                    if found and not public:
                        raise PrivateAddress(refusal(target.host, found[0][4][0]))
                    found = public
                error: BaseException | None = None
                for family, _, proto, _, address in found:
                    try:
                        _, connection = await loop.create_connection(
                            lambda: _Connection(loop, self._open),
                            address[0],
                            address[1],
                            family=family,
                            proto=proto,
                            ssl=self._tls() if target.tls else None,
                            server_hostname=target.host.rstrip(".") if target.tls else None,
                        )
                    except OSError as failed:  # ssl.SSLError is one too
                        error = failed
                        continue
                    self._open.add(connection)
                    return connection
        except PrivateAddress:
            raise
        except TimeoutError:
            raise PostFailed(
                f"cannot connect to {where}: no connection within {CONNECT_TIMEOUT:g} s"
            ) from None
        except (OSError, UnicodeError) as failed:  # a host name no lookup takes: UnicodeError
            error = failed
        raise PostFailed(f"cannot connect to {where}: {error or 'no address'}")

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl


def is_public(address: str) -> bool:
    """Whether an address a host resolved to is public (a zone index, ``%eth0``, aside)."""
    return ipaddress.ip_address(address.partition("%")[0]).is_global


_NAMES: set[str] = set()  # header names found to be tokens


def _headers(headers: Mapping[str, str], length: int) -> bytes:
    """The caller's headers and the body's length, as they go out; ValueError for a name
    that is not a token or a value that would end its line."""
    for name in headers:
        if name not in _NAMES:
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"header name {name!r} is not a token")
            if len(_NAMES) < 256:
                _NAMES.add(name)
    if _BREAK.search("".join(headers.values())):
        raise ValueError("a header value holds a line break or a NUL")
    lines = [f"{name}: {value}\r\n" for name, value in headers.items()]
    lines.append(f"Content-Length: {length}\r\n\r\n")
    return "".join(lines).encode()
