"""The delivery client (hub/posting.py) against real servers: aiohttp's for well-formed
answers, plain sockets for the answers a hostile or broken receiver gives."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.posting import EXCERPT, MAX_HEAD, Poster, PostFailed, _Connection

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Raw:
    """A plain socket server: each connection runs ``handler``; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Raw:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/in"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request: its head and its body (by Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


def answering(*answers: bytes, then_wait: bool = False) -> Handler:
    """Reads a request, writes the next answer, for each answer in turn."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await read_request(reader)
            writer.write(answer)
            await writer.drain()
        if then_wait:
            await reader.read()  # until the client closes

    return handler


@pytest.fixture
async def poster():
    client = Poster()
    yield client
    await client.close()


async def test_a_post_goes_out_as_given_and_its_connection_is_kept(aiohttp_server, poster):
    seen: list[tuple[str, str, dict[str, str], bytes, object]] = []

    async def receive(request: web.Request) -> web.Response:
        seen.append(
            (
                request.method,
                request.path_qs,
                dict(request.headers),
                await request.read(),
                request.transport.get_extra_info("peername"),  # type: ignore[union-attr]
            )
        )
        return web.Response(status=202, text="accepted")

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    server = await aiohttp_server(app)
    url = f"http://127.0.0.1:{server.port}/hooks/in?tenant=a%20b"
    for n in range(5):
        answer = await poster.post(url, b'{"n": %d}' % n, {"webhook-id": f"msg_{n}"})
        assert (answer.status, answer.excerpt) == (202, b"accepted")
    assert [s[3] for s in seen] == [b'{"n": %d}' % n for n in range(5)]
    method, path, headers, _, _ = seen[0]
    assert (method, path) == ("POST", "/hooks/in?tenant=a%20b")
    assert headers["Host"] == f"127.0.0.1:{server.port}"
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == "8"
    assert headers["User-Agent"] == "hub"
    assert headers["webhook-id"] == "msg_0"
    assert len({s[4] for s in seen}) == 1  # one connection for all five
    assert poster.connections() == 1


async def test_status_excerpt_retry_after_and_location_are_read(aiohttp_server, poster):
    async def receive(request: web.Request) -> web.Response:
        await request.read()
        if request.path == "/busy":
            return web.Response(status=503, body=b"x" * 3000, headers={"Retry-After": "7"})
        if request.path == "/moved":
            return web.Response(status=307, headers={"Location": "https://elsewhere/in"})
        response = web.StreamResponse(status=200)  # chunked, in pieces
        response.enable_chunked_encoding()
        await response.prepare(request)
        for piece in (b"first ", b"second ", b"third"):
            await response.write(piece)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    server = await aiohttp_server(app)
    base = f"http://127.0.0.1:{server.port}"
    busy = await poster.post(f"{base}/busy", b"{}", {})
    assert (busy.status, busy.retry_after, busy.excerpt) == (503, "7", b"x" * EXCERPT)
    moved = await poster.post(f"{base}/moved", b"{}", {})
    assert (moved.status, moved.location) == (307, "https://elsewhere/in")
    chunked = await poster.post(f"{base}/chunked", b"{}", {})
    assert (chunked.status, chunked.excerpt) == (200, b"first second third")


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (b"HELLO\r\n\r\n", "not valid HTTP"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEAD + 1) + b"\r\n\r\n", "exceed"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * (MAX_HEAD // 10) + b"\r\n", "exceed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\nok", "not valid"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n", "not"),
        (b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", "not valid HTTP"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "not valid HTTP"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", "closed before"),
        (b"", "closed before"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", "swit"),
    ],
    ids=[
        "garbage",
        "huge-header",
        "many-headers",
        "two-lengths",
        "bad-chunk",
        "no-colon",
        "bad-status",
        "truncated",
        "nothing",
        "upgrade",
    ],
)
async def test_a_broken_answer_fails_the_post_and_its_connection(answer, says, poster):
    async with Raw(answering(answer)) as server:
        with pytest.raises(PostFailed, match=says):
            await poster.post(server.url, b"{}", {})
        assert poster.connections() == 0
        # the next post has a new connection, and a good answer is read as ever
        server.handler = answering(b"HTTP/1.1 204 No Content\r\n\r\n")
        assert (await poster.post(server.url, b"{}", {})).status == 204
        assert server.connections == 2


async def test_answers_a_delivery_meets_in_the_wild(poster):
    # a body that ends with the connection (no length, not chunked)
    async with Raw(answering(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")) as server:
        answer = await poster.post(server.url, b"{}", {})
        assert (answer.status, answer.excerpt) == (200, b"until the end")
    # an interim answer first: the final one counts
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    async with Raw(answering(interim, interim)) as server:
        for _ in range(2):
            answer = await poster.post(server.url, b"{}", {})
            assert (answer.status, answer.excerpt) == (201, b"ok")
        assert server.connections == 1
    # "Connection: close": not used again
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    async with Raw(answering(closing)) as server:
        for _ in range(2):
            assert (await poster.post(server.url, b"{}", {})).status == 200
        assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",  # bare line feeds
        b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",  # space before colon
        b"HTTP/1.1 200 OK\r\nX-Odd: a\x01b\r\nContent-Length: 2\r\n\r\nok",  # a control byte
        b"HTTP/1.1 200 OK\r\nX-Odd: a\r\n folded\r\nContent-Length: 2\r\n\r\nok",  # obs-fold
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2  \r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nok",  # ends with the connection
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ],
    ids=["bare-lf", "space-colon", "control", "folded", "chunk-space", "identity", "gzip-chunked"],
)
async def test_answers_aiohttp_read_are_read(answer, poster):
    """A receiver that answered aiohttp's client is not failed by this one: a failure
    here is a retry, and the receiver has the message already."""
    async with Raw(answering(answer)) as server:
        answer = await poster.post(server.url, b"{}", {})
        assert (answer.status, answer.excerpt) == (200, b"ok")


async def test_a_header_that_never_ends_fails_at_its_limit(poster):
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        while not reader.at_eof():  # pieces of one value, until the client hangs up
            writer.write(b"a" * 8192)
            await writer.drain()

    async with Raw(endless) as server:
        with pytest.raises(PostFailed, match="exceed"):
            await poster.post(server.url, b"{}", {})


async def test_what_one_answer_left_does_not_finish_the_next(poster):
    """Per answer, everything starts anew: a stray line end before an answer (which llhttp
    skips) does not end the request with what the previous answer left."""
    loop = asyncio.get_running_loop()
    near, far = socket.socketpair()
    try:
        _, connection = await loop.create_connection(lambda: _Connection(loop, set()), sock=near)
        first = connection.send(b"POST / HTTP/1.1\r\n\r\n")
        connection.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000)
        assert (await first).excerpt == b"x" * EXCERPT
        second = connection.send(b"POST / HTTP/1.1\r\n\r\n")
        connection.data_received(b"\r\n")  # a segment of its own
        assert not second.done()
        connection.data_received(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom"
        )
        assert ((await second).status, (await second).excerpt) == (500, b"boom")
    finally:
        connection.close()
        far.close()


async def test_a_second_answer_to_one_request_closes_the_connection(poster):
    twice = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" * 2
    async with Raw(answering(twice, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) as server:
        assert (await poster.post(server.url, b"{}", {})).excerpt == b"ok"
        assert (await poster.post(server.url, b"{}", {})).status == 200
        assert server.connections == 2  # the first was not used again


async def test_an_endless_body_is_not_waited_for(poster):
    closed = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n" + b"y" * 4096)
        await writer.drain()
        await reader.read()  # the client closes it: this returns
        closed.set()

    async with Raw(endless) as server:
        answer = await poster.post(server.url, b"{}", {})
        assert (answer.status, answer.excerpt) == (200, b"y" * EXCERPT)
        await closed.wait()
        assert poster.connections() == 0


async def test_a_cancelled_post_closes_its_connection(poster):
    arrived, closed = asyncio.Event(), asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        arrived.set()
        await reader.read()  # no answer, until the client closes
        closed.set()

    async with Raw(silent) as server:
        task = asyncio.create_task(poster.post(server.url, b"{}", {}))
        await arrived.wait()
        task.cancel()  # as a delivery's time limit does
        with pytest.raises(asyncio.CancelledError):
            await task
        await closed.wait()
        assert poster.connections() == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"webhook-id": "msg_1\r\nX-Injected: 1"},
        {"webhook-id": "msg_1\nX-Injected: 1"},
        {"webhook-id": "msg_1\rX-Injected: 1"},
        {"webhook-id": "msg\x00"},
        {"X-Injected: 1\r\nwebhook-id": "msg_1"},
        {"webhook id": "msg_1"},
        {"": "msg_1"},
        {"webhook-id:": "msg_1"},
    ],
)
async def test_a_header_that_would_break_its_line_is_refused_before_sending(headers, poster):
    async with Raw(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) as server:
        with pytest.raises(ValueError, match="header"):
            await poster.post(server.url, b"{}", headers)
        assert server.connections == 0


async def test_a_url_cannot_inject_lines_and_its_credentials_go_as_basic(aiohttp_server, poster):
    seen: list[tuple[str, dict[str, str]]] = []

    async def receive(request: web.Request) -> web.Response:
        seen.append((request.raw_path, dict(request.headers)))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    server = await aiohttp_server(app)
    hostile = f"http://127.0.0.1:{server.port}/in\r\nX-Injected: 1?a=\r\nb"
    assert (await poster.post(hostile, b"{}", {})).status == 204
    path, headers = seen[0]
    assert "\r" not in path and "\n" not in path
    assert "X-Injected" not in headers
    await poster.post(f"http://us%40er:p%3Ass@127.0.0.1:{server.port}/in", b"{}", {})
    assert seen[1][1]["Authorization"] == "Basic dXNAZXI6cDpzcw=="  # us@er:p:ss
    await poster.post(f"http://u:p%C3%A4ss@127.0.0.1:{server.port}/in", b"{}", {})
    assert seen[2][1]["Authorization"] == "Basic dTpw5HNz"  # latin-1, as aiohttp sends it
    with pytest.raises(ValueError, match="not an http") as refused:
        await poster.post("ftp://user:s3cret@127.0.0.1/in", b"{}", {})
    assert "s3cret" not in str(refused.value)


async def test_an_unreachable_host_fails_the_post(unused_tcp_port, poster):
    with pytest.raises(PostFailed, match=rf"^cannot connect to 127\.0\.0\.1:{unused_tcp_port}"):
        await poster.post(f"http://127.0.0.1:{unused_tcp_port}/in", b"{}", {})
    with pytest.raises(PostFailed, match=r"cannot connect to no-such-host\.invalid:80"):
        await poster.post("http://no-such-host.invalid/in", b"{}", {})
    too_long = "a" * 64 + ".example"  # a label no lookup takes
    with pytest.raises(PostFailed, match="cannot connect to"):
        await poster.post(f"http://{too_long}/in", b"{}", {})


async def test_a_kept_connection_is_not_used_past_its_keepalive(aiohttp_server):
    peers: set[object] = set()

    async def receive(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/in", receive)
    server = await aiohttp_server(app)
    poster = Poster(keepalive=0.0)  # every kept connection has expired by its next use
    try:
        for _ in range(3):
            await poster.post(f"http://127.0.0.1:{server.port}/in", b"{}", {})
    finally:
        await poster.close()
    assert len(peers) == 3


async def test_a_connection_past_its_keepalive_is_closed_when_another_origin_is_sent_to():
    closed = asyncio.Event()

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await reader.read()  # until the client closes it
        closed.set()

    poster = Poster(keepalive=0.0)
    try:
        async with Raw(once) as first, Raw(answering(b"HTTP/1.1 204 OK\r\n\r\n")) as second:
            await poster.post(first.url, b"{}", {})
            assert not closed.is_set()
            await poster.post(second.url, b"{}", {})
            await closed.wait()  # the first origin's kept connection was closed
    finally:
        await poster.close()


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_is_verified(aiohttp_server, tmp_path):
    cert, key = _certificate(tmp_path)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)

    async def receive(request: web.Request) -> web.Response:
        return web.Response(status=202, text=request.headers["Host"])

    app = web.Application()
    app.router.add_post("/in", receive)
    server = await aiohttp_server(app, ssl=served)
    url = f"https://localhost:{server.port}/in"
    trusting = Poster(ssl_context=ssl.create_default_context(cafile=str(cert)))
    default = Poster()
    try:
        answer = await trusting.post(url, b"{}", {})
        assert (answer.status, answer.excerpt) == (202, f"localhost:{server.port}".encode())
        # the system's certificates do not know it: no request goes out
        with pytest.raises(PostFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await default.post(url, b"{}", {})
    finally:
        await trusting.close()
        await default.close()
