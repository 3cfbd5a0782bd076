"""Calls that share a round trip: what is sent to Redis in the same turn of the event loop
goes in one pipeline.

``TurnBatch`` is the mechanism: each caller gets its own reply or its own error, and a
failure of the whole pipeline (the connection, say) reaches every caller of the batch.
The store's scripts are one kind (``_Batch`` in ``hub/store/redis.py``); ``Reads`` is the
other: plain commands.

A worker starts many jobs at once (one claim fetches several), and each dispatch begins
with the same reads: the accepted event, the booking a reference names, the messages sent
for the event before. Batched, they cost one round trip and one write for all the jobs of
the turn instead of one each.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Reads", "TurnBatch"]


class TurnBatch:
    """Collects the calls of one turn of the event loop and sends them with ``_send``."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def _submit(self, call: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((call, future))
        if len(self._pending) == 1:
            loop.call_soon(self._start_flush)
        return await future

    def _start_flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._flush(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

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


class Reads(TurnBatch):
    """Plain commands, each parsed as redis-py parses it."""

    async def __call__(self, *command: Any) -> Any:
        """The reply to ``command`` (``"HGETALL", key`` say), sent with the turn's others."""
        return await self._submit(command)

    async def _send(self, calls: list[Any]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for command in calls:
                pipe.execute_command(*command)
            return await pipe.execute(raise_on_error=False)
