"""Request records are queued in memory on the request path and written in batches by a background task."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from goldenpath.store._store import RequestRecord, Store

log = logging.getLogger("goldenpath.store")


class RequestRecorder:
    def __init__(self, store: Store, *, flush_interval_s: float, batch_size: int, buffer_max: int) -> None:
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self.buffer_max = buffer_max
        self.dropped = 0
        self.written = 0
        self._pending: list[RequestRecord] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def add(self, record: RequestRecord) -> None:
        """Called on the request path: an append, nothing else."""
        pending = self._pending
        pending.append(record)
        if len(pending) >= self.batch_size:
            self._wake.set()
        if len(pending) > self.buffer_max:
            # The store has been failing for long; keep the newest records and count the loss.
            excess = len(pending) - self.buffer_max
            del pending[:excess]
            self.dropped += excess

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="request-recorder")

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.flush_interval_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self.store.insert_requests, batch)
                self.written += len(batch)
            except Exception:
                log.exception("writing %d request records failed; will retry", len(batch))
                self._pending[:0] = batch

    async def close(self) -> None:
        """Stop the background task and write everything still queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
