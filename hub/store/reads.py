"""Reads that share a round trip: plain Redis commands issued in the same turn of the event
loop go to Redis together, in one pipeline.

A worker starts many jobs at once (one claim fetches several), and each dispatch begins
with the same reads: the accepted event, the booking a reference names, the messages sent
for the event before. Batched, they cost one round trip and one write for all the jobs of
the turn instead of one each. Every caller gets its own reply, parsed as redis-py parses
that command, or its own error; a connection failure reaches every caller of the batch.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Reads"]


class Reads:
    def __init__(self, client: Any) -> None:
        self._client = client
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def __call__(self, *command: Any) -> Any:
        """The reply to ``command`` (``"HGETALL", key`` say), sent with the turn's others."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((command, future))
        if len(self._pending) == 1:
            loop.call_soon(self._start_flush)
        return await future

    def _start_flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._flush(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for command, _ in batch:
                    pipe.execute_command(*command)
                results = await pipe.execute(raise_on_error=False)
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
