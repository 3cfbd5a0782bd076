"""Calls that share a round trip: what is sent to Redis in the same turn of the event loop
goes in one write.

``TurnBatch`` is the mechanism: each caller gets its own reply or its own error, and a
failure of the whole batch (the connection, say) reaches every caller of the batch.
The store's scripts are one kind (``_Batch`` in ``hub/store/redis.py``); ``Reads`` is the
other: plain commands.

One batch of a kind is in flight at a time: the calls made while it is out wait for its
answer and then go together. At low traffic a call goes at once; under load batches grow
with it, and the writes (each a system call, and a wake-up of Redis) do not.

A worker starts many jobs at once (one claim fetches several), and each dispatch begins
with the same reads: the accepted event, the booking a reference names, the messages sent
for the event before. Batched, they cost one round trip and one write for all the jobs of
the turn instead of one each.

On one Redis (plain or through Sentinel) a batch is one exchange on a connection of the
client's pool (``TurnBatch._round_trip``): what a non-transactional redis-py pipeline does,
without its per-call machinery. A Cluster's batches go through its pipelines, which route
each command to its node.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

__all__ = ["Reads", "TurnBatch"]


class TurnBatch:
    """Collects the calls of one turn of the event loop and sends them with ``_send``."""

    def __init__(self, client: Any) -> None:
        self._client = client
        # one Redis: batches go straight to a connection of its pool (a Cluster: pipelines)
        self._pool = client.connection_pool if isinstance(client, aioredis.Redis) else None
        self._pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self._flushes: set[asyncio.Task[None]] = set()
        self._out = False  # a batch is in flight: the next waits for its answer

    async def _submit(self, call: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((call, future))
        if len(self._pending) == 1 and not self._out:
            loop.call_soon(self._start_flush)
        return await future

    def _start_flush(self) -> None:
        batch, self._pending = self._pending, []
        self._out = True
        task = asyncio.create_task(self._flush(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        self._out = False
        if self._pending:  # the calls made while it was out, together
            self._start_flush()

    async def _send(self, calls: list[Any]) -> list[Any]:
        """The replies to ``calls``, one each (an exception for one that failed)."""
        raise NotImplementedError

    async def _round_trip(self, commands: list[tuple[Any, ...]], resend: bool) -> list[Any]:
        """The replies to ``commands``, written at once on one connection of the pool and read
        in order, each parsed as redis-py parses it (the client's response callbacks); an
        error reply is its command's exception. A connection or timeout error fails them
        all, and the connection is closed, never returned half-read to the pool. ``resend``:
        on such an error the connection's retry policy sends them again, as a pipeline
        would (the clients of ``client_for`` have none); without it they are sent once."""
        pool = self._pool
        connection = await pool.get_connection()
        try:
            if resend:
                replies = await connection.retry.call_with_retry(
                    lambda: self._exchange(connection, commands),
                    lambda error: connection.disconnect(),
                )
            else:
                replies = await self._exchange(connection, commands)
        finally:
            await pool.release(connection)
        callbacks = self._client.response_callbacks
        for i, reply in enumerate(replies):
            callback = callbacks.get(commands[i][0])
            if callback is not None and not isinstance(reply, ResponseError):
                reply = callback(reply)
                replies[i] = await reply if inspect.isawaitable(reply) else reply
        return replies

    @staticmethod
    async def _exchange(connection: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
        try:
            await connection.send_packed_command(connection.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as error:
                    replies.append(error)
            return replies
        except BaseException:
            await connection.disconnect(nowait=True)  # replies may be left unread
            raise

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


class Reads(TurnBatch):
    """Plain commands, each parsed as redis-py parses it."""

    async def __call__(self, *command: Any) -> Any:
        """The reply to ``command`` (``"HGETALL", key`` say), sent with the turn's others."""
        return await self._submit(command)

    async def _send(self, calls: list[Any]) -> list[Any]:
        if self._pool is not None:
            return await self._round_trip(calls, resend=True)  # reads: safe to send again
        async with self._client.pipeline(transaction=False) as pipe:
            for command in calls:
                pipe.execute_command(*command)
            return await pipe.execute(raise_on_error=False)
