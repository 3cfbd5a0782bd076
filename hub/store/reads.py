"""Calls that share a round trip: what is sent to Redis in the same turn of the event loop
goes in one write.

Each caller gets its own reply or its own error, and a failure of the whole write (the
connection, say) reaches every caller of the write. The calls come in kinds
(``TurnBatch``): ``Reads`` (plain commands) and one ``_Batch`` per script of the store
(``hub/store/redis.py``).

On one Redis (plain or through Sentinel) the calls of every kind go through one ``Sender``
per client: those made in the same turn share one write on one connection of the
client's pool, read back in order (what a non-transactional redis-py pipeline does,
without its per-call machinery). One write is in flight at a time as a rule: the calls
made while it is out wait for its answer and then go together. At low traffic a call goes
at once; under load writes grow with it, and their number (each a system call, and a
wake-up of Redis) does not. A webhook accepted in the turn a job finishes and another is
claimed costs Redis one write for all three. Once 8 completions of jobs (FINISH, the
calls that hold Redis longest) wait behind a write, the calls waiting go at once in a
second (on a second connection, from a pool that allows 8 or more): Redis runs the one
while this process reads the other's answer, where each waited for the other. The calls
after those wait for one of the two to answer. Other calls do not count: webhooks
accepted at a high rate would make writes smaller and more, for little. Calls in flight
together run in either order, as calls of concurrent tasks may; a caller that needs one
answered before the next awaits it.

A Cluster's calls go per kind, each kind's batch through a pipeline of the Cluster, which
routes each command to its node.

A worker starts many jobs at once (one claim fetches several), and each dispatch begins
with the same reads: the accepted event, the booking a reference names, the messages sent
for the event before. Batched, they cost one round trip and one write for all the jobs of
the turn instead of one each.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeout

from hub.deadlines import Deadlines
from hub.errors import StoreUnavailable

__all__ = ["Reads", "Sender", "TurnBatch", "sender_for"]

_UNREAD = object()  # a reply still to be read
_SECOND = 8  # completions waiting behind a batch out that send the calls waiting at once
_KEEP_FROM = 8  # the fewest connections a pool must allow for a sender to keep one


class _Queue:
    """Collects the calls of one turn of the event loop and sends them with ``_send``; one
    batch in flight at a time, the calls made meanwhile go together when it answers; with
    ``_most`` 2, once ``_SECOND`` heavy ones wait, they go at once as a second batch."""

    _most = 1  # batches in flight at a time

    def __init__(self) -> None:
        self._pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self._flushes: set[asyncio.Task[None]] = set()
        self._out = 0  # batches in flight
        self._counted = 0  # calls waiting that count toward a second batch

    def _submit(self, call: Any, heavy: bool = False) -> asyncio.Future[Any]:
        """The future of ``call``'s reply: awaited by its caller. ``heavy``: it counts
        toward a second batch."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((call, future))
        if len(self._pending) == 1 and not self._out:
            loop.call_soon(self._start_flush)  # the calls of this turn go together
        elif heavy and 0 < self._out < self._most:
            self._counted += 1
            if self._counted == _SECOND:
                loop.call_soon(self._start_flush)
        return future

    def _start_flush(self) -> None:
        if not self._pending or self._out >= self._most:
            return  # sent meanwhile, or they go when a batch answers
        batch, self._pending, self._counted = self._pending, [], 0
        self._out += 1
        task = asyncio.create_task(self._flush(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        self._out -= 1
        self._start_flush()  # the calls made while it was out, together

    async def _send(self, calls: list[Any]) -> list[Any]:
        """The replies to ``calls``, one each (an exception for one that failed)."""
        raise NotImplementedError

    async def _flush(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            results = await self._send([call for call, _ in batch])
        except Exception as error:  # the connection: every caller hears of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def close(self) -> None:
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)


class TurnBatch(_Queue):
    """The calls of one kind. On one Redis they go through the client's ``Sender``, with the
    calls of every other kind (``_command``: what a call is on the wire); on a Cluster, in
    a pipeline of their own (``_send``)."""

    _script: Any = None  # a script: loaded again, and its calls resent, when Redis lost it
    _wait: tuple[int, int] | None = None  # WAIT after the write: replicas, timeout (ms)
    _resend = False  # may be sent again on a connection error (the client's retry policy)
    # calls that hold Redis long enough for a second write to be worth its cost (FINISH)
    heavy = False

    def __init__(self, client: Any, sender: Sender | None = None) -> None:
        super().__init__()
        self._client = client
        self._sender = sender if sender is not None else sender_for(client)

    def _submit(self, call: Any) -> asyncio.Future[Any]:
        if self._sender is not None:
            return self._sender._submit((self, call), self.heavy)
        return super()._submit(call)

    def _command(self, call: Any) -> tuple[Any, ...]:
        """``call`` as a command for Redis."""
        raise NotImplementedError

    async def close(self) -> None:
        await super().close()
        if self._sender is not None:
            await self._sender.close()


def sender_for(client: Any) -> Sender | None:
    """The sender the kinds of calls on ``client`` share: one Redis has one; a Cluster (or
    anything else) none, its kinds send their own pipelines."""
    return Sender(client) if isinstance(client, aioredis.Redis) else None


class Sender(_Queue):
    """The calls of every kind on one Redis: those of a turn in one write on one connection,
    each caller still hearing its own reply or error, each script call still atomic on its
    own. Scripts Redis lost (a restart, SCRIPT FLUSH) are loaded again and only the calls
    that missed them sent again. When a kind in the write asks for WAIT, one WAIT follows
    the write on its connection, and unless enough replicas confirm it, every caller of a
    kind that asked hears StoreUnavailable."""

    def __init__(self, client: aioredis.Redis) -> None:
        super().__init__()
        self._client = client
        self._pool = client.connection_pool
        # The connection of the last round trip, kept for the next: one round trip is out
        # at a time as a rule, and the pool's checks and bookkeeping cost as much as a
        # small write.
        # A pool of a few connections (max_connections in the store's URL) gets it back
        # after each round trip: its other users may need it.
        self._kept: Any = None
        self._keeps = (getattr(self._pool, "max_connections", 0) or 0) >= _KEEP_FROM
        # a second round trip takes a second connection: not from a pool of a few
        self._most = 2 if self._keeps else 1
        self._closed = False
        self._deadlines = Deadlines()  # the read timeouts of its round trips, one timer

    async def close(self) -> None:
        self._closed = True  # from now on, a round trip gives its connection back
        while self._flushes:  # those started meanwhile too (calls queued behind one)
            await super().close()
        if self._kept is not None:
            connection, self._kept = self._kept, None
            await self._pool.release(connection)

    async def _send(self, calls: list[tuple[TurnBatch, Any]]) -> list[Any]:
        kinds = [kind for kind, _ in calls]
        commands = [kind._command(call) for kind, call in calls]
        results = await self._write(commands, kinds)
        missing = [
            i
            for i, result in enumerate(results)
            if isinstance(result, NoScriptError) and kinds[i]._script is not None
        ]
        if missing:  # Redis restarted: load what it lost, send again the calls that missed
            loads = {kinds[i]._script.sha: kinds[i]._script.script for i in missing}
            try:
                again = await self._write(
                    [*(("SCRIPT LOAD", script) for script in loads.values())]
                    + [commands[i] for i in missing],
                    [None] * len(loads) + [kinds[i] for i in missing],
                )
                again = again[len(loads) :]
            except Exception as error:  # only the calls sent again hear of it
                again = [error] * len(missing)
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _write(self, commands: list[Any], kinds: list[TurnBatch | None]) -> list[Any]:
        """The replies to ``commands``, sent in one write; with one WAIT after them when a
        kind of them asks for it (a NoScriptError is left as it is: the call goes again)."""
        present = set(kinds)  # a few kinds, many calls
        waits = [kind._wait for kind in present if kind is not None and kind._wait]
        resend = all(kind is not None and kind._resend for kind in present)
        if not waits:
            return await self._round_trip(commands, resend)
        wait = (max(w[0] for w in waits), max(w[1] for w in waits))
        replies = await self._round_trip([*commands, ("WAIT", *wait)], resend)
        confirmed = replies.pop()
        for i, kind in enumerate(kinds):
            wanted = kind._wait if kind is not None else None
            if (
                wanted
                and not isinstance(replies[i], NoScriptError)
                and (isinstance(confirmed, Exception) or int(confirmed) < wanted[0])
            ):
                replies[i] = StoreUnavailable(
                    f"{confirmed} of {wanted[0]} replicas confirmed the write within {wanted[1]} ms"
                )
        return replies

    async def _round_trip(self, commands: list[tuple[Any, ...]], resend: bool) -> list[Any]:
        """The replies to ``commands``, written at once on one connection of the pool and read
        in order, each parsed as redis-py parses it (the client's response callbacks); an
        error reply is its command's exception, and so is an argument that cannot be sent
        (that command is left out). A connection or timeout error fails them all, and the
        connection is closed, never returned half-read to the pool. ``resend``: on such an
        error the connection's retry policy sends them again, as a pipeline would (the
        clients of ``client_for`` have none); without it they are sent once."""
        pool = self._pool
        connection, self._kept = self._kept, None
        if connection is not None and not _still_open(pool, connection):
            # closed, so that the pool connects it anew (its own check before it hands a
            # connection out misses a socket the server closed)
            await connection.disconnect(nowait=True)
            await pool.release(connection)
            connection = None
        if connection is None:
            connection = await pool.get_connection()
        try:
            if resend:
                replies = await connection.retry.call_with_retry(
                    lambda: self._exchange(connection, commands),
                    lambda error: connection.disconnect(),
                )
            else:
                replies = await self._exchange(connection, commands)
        except BaseException:
            await pool.release(connection)
            raise
        if self._keeps and not self._closed and self._kept is None:
            self._kept = connection  # one kept: that of a second round trip goes back
        else:
            await pool.release(connection)
        callbacks = self._client.response_callbacks
        for i, reply in enumerate(replies):
            callback = callbacks.get(commands[i][0])
            if callback is not None and not isinstance(reply, Exception):
                reply = callback(reply)
                replies[i] = await reply if inspect.isawaitable(reply) else reply
        return replies

    async def _exchange(self, connection: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        packed: list[bytes] = []
        replies: list[Any] = []
        for command in commands:
            try:
                packed += connection.pack_command(*command)
                replies.append(_UNREAD)
            except Exception as error:  # its caller's mistake, not the write's
                replies.append(error)
        # One socket timeout for the whole batch of replies rather than a timer for each
        # (``math.inf`` turns redis-py's own off), kept by the sender's one loop timer.
        limit = connection.socket_timeout
        try:
            if packed:
                await connection.send_packed_command([b"".join(packed)])
            read = _read_replies(connection, replies)
            try:
                await (self._deadlines.within(limit, read) if limit else read)
            except TimeoutError:
                raise RedisTimeout(f"Timeout reading from Redis ({limit} s)") from None
            return replies
        except BaseException:
            await connection.disconnect(nowait=True)  # replies may be left unread
            raise


async def _read_replies(connection: Any, replies: list[Any]) -> None:
    """The replies still ``_UNREAD`` in ``replies``, read in order into their places; an
    error reply is its command's exception."""
    for i, reply in enumerate(replies):
        if reply is _UNREAD:
            try:
                replies[i] = await connection.read_response(timeout=math.inf)
            except ResponseError as error:
                replies[i] = error


def _still_open(pool: Any, connection: Any) -> bool:
    """Whether a connection kept since the last round trip can take the next as it is: the
    server has not closed it meanwhile and, under Sentinel, it is the current primary's."""
    writer = getattr(connection, "_writer", None)
    reader = getattr(connection, "_reader", None)
    return (
        writer is not None
        and reader is not None
        and not writer.transport.is_closing()
        and not reader.at_eof()
        and not connection.should_reconnect()  # a maintenance notice moved its endpoint
        and (
            not getattr(pool, "is_master", False)  # under Sentinel: the current primary's
            or pool.master_address == (connection.host, connection.port)
        )
    )


class Reads(TurnBatch):
    """Plain commands, each parsed as redis-py parses it."""

    _resend = True  # reads: safe to send again

    async def __call__(self, *command: Any) -> Any:
        """The reply to ``command`` (``"HGETALL", key`` say), sent with the turn's others."""
        return await self._submit(command)

    def _command(self, call: Any) -> tuple[Any, ...]:
        return call

    async def _send(self, calls: list[Any]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for command in calls:
                pipe.execute_command(*command)
            return await pipe.execute(raise_on_error=False)
