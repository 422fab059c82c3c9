"""The Ray backend: a run's items on a Ray cluster, with the local backend's results.

One async actor per CPU of the cluster (at most one per chunk of work) opens the task's target once
(an in-process gateway loads its models once per actor) and runs chunks of items with at most
``ceil(max_concurrency / actors)`` in flight, calling ``execute_item`` exactly as the local backend
does. The driver keeps the cache, the run directory and the progress line: it sends only the items
the cache does not hold and writes each chunk's results as it comes back. Ray is imported only here,
and this module only when the backend is used. The workers need goldenpath installed (and the
retriever's class importable, for a collection target).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from goldenpath.evals._datasets import Sample
from goldenpath.evals._runner import ItemResult, WorkItem, execute_item
from goldenpath.evals._scorers import Scorer
from goldenpath.evals._targets import RetrievalTarget, TargetSession, open_session
from goldenpath.evals._task import Task, TaskError

CHUNKS_PER_ACTOR = 4
MAX_CHUNK = 64


class ItemActor:
    """Runs chunks of one task's items; Ray makes it a remote actor class (``ray.remote(ItemActor)``)."""

    def __init__(self, task: Task, concurrency: int, retriever: RetrievalTarget | None, key: str | None) -> None:
        self._task, self._retriever, self._key = task, retriever, key
        self._semaphore = asyncio.Semaphore(concurrency)
        self._lock = asyncio.Lock()
        self._session: TargetSession | None = None
        self._scorers: Mapping[str, Scorer] = {}

    async def _open(self) -> TargetSession:
        async with self._lock:
            if self._session is None:
                task = self._task
                self._session = await open_session(
                    task.target,
                    base_dir=task.base_dir,
                    aliases=task.gateway_aliases(),
                    retriever=self._retriever,
                    key=self._key,
                )
                self._scorers = task.build_scorers(self._session.judge_chat)
        return self._session

    async def run(self, work: Sequence[WorkItem], samples: Mapping[str, Sample]) -> list[ItemResult]:
        session = await self._open()

        async def one(item: WorkItem) -> ItemResult:
            async with self._semaphore:
                return await execute_item(session, self._scorers, samples[item.sample_id], item)

        return list(await asyncio.gather(*(one(item) for item in work)))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.aclose()


def _connect(address: str | None) -> Any:
    try:
        import ray
    except ImportError:
        raise TaskError("the ray backend needs ray (pip install 'ray>=2.30')") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    return ray


async def run_on_ray(
    task: Task,
    work: Sequence[WorkItem],
    samples: Mapping[str, Sample],
    finish: Callable[[ItemResult], None],
    *,
    address: str | None = None,
    retriever: RetrievalTarget | None = None,
    key: str | None = None,
) -> None:
    """Run ``work`` on the cluster at ``address`` (the connected one, else ``ray.init(address)``) and pass
    each result to ``finish`` as its chunk comes back."""
    ray = _connect(address)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    size = max(1, min(MAX_CHUNK, math.ceil(len(work) / (cpus * CHUNKS_PER_ACTOR))))
    chunks = [list(work[i : i + size]) for i in range(0, len(work), size)]
    n_actors = min(cpus, len(chunks))
    concurrency = math.ceil(task.max_concurrency / n_actors)
    remote_actor = ray.remote(num_cpus=1)(ItemActor)
    actors = [remote_actor.remote(task, concurrency, retriever, key) for _ in range(n_actors)]
    futures: list[asyncio.Future[list[ItemResult]]] = []
    try:
        futures = [
            asyncio.wrap_future(
                actors[i % n_actors].run.remote(chunk, {w.sample_id: samples[w.sample_id] for w in chunk}).future()
            )
            for i, chunk in enumerate(chunks)
        ]
        for next_done in asyncio.as_completed(futures):
            try:
                results = await next_done
            except ray.exceptions.RayTaskError as exc:  # e.g. the target could not be opened: its own error
                cause = exc.cause
                raise cause if isinstance(cause, Exception) else exc from None
            for result in results:
                finish(result)
    finally:
        for future in futures:  # after a failure: the other chunks' outcomes are dropped, not left unread
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()
        closing = [asyncio.wrap_future(actor.close.remote().future()) for actor in actors]
        await asyncio.gather(*closing, return_exceptions=True)
        for actor in actors:
            ray.kill(actor)
