"""The evaluation runner: a task's samples through its target, scored, cached and resumable.

Every (sample, epoch) is one call of the task's target (a chat completion through the official
``openai`` client, which retries 429s honouring ``Retry-After`` and 5xx and connection errors with
backoff; a search; a detector), at most ``max_concurrency`` at a time, scored (the LLM judge inside
the same bound), in this process or on a Ray cluster (``backend="ray"``). A completed item's output
and scores are kept in a SQLite cache keyed by the task version, the sample, the epoch, the target
and the sampling parameters, so a rerun of an unchanged task makes no upstream call. A run directory
holds ``results.jsonl`` (one line per scored item, appended as items finish; the result-file format
``goldenpath gate`` reads) and ``run.json`` (provenance, counts, tokens and the items that failed,
with their errors). A rerun into the same directory skips the items already in ``results.jsonl`` and
retries the failed ones. Every run is indexed by id in the cache database, so commands take a run id
wherever they take a run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

import openai

from goldenpath.evals._datasets import Sample
from goldenpath.evals._results import EvalInputError, RunResults, load_results
from goldenpath.evals._scorers import Scorer, score_item
from goldenpath.evals._targets import RetrievalTarget, TargetSession, TokenUsage, api_key, open_session
from goldenpath.evals._task import Task, TaskError

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"
HOME_ENV = "GOLDENPATH_HOME"
PROGRESS_INTERVAL_S = 0.5
_SQL_BATCH = 500
Backend = Literal["local", "ray"]


def default_cache_path() -> Path:
    """``$GOLDENPATH_HOME/evals/cache.db`` (``./.goldenpath`` when unset)."""
    return Path(os.environ.get(HOME_ENV) or ".goldenpath") / "evals" / "cache.db"


@dataclass(frozen=True)
class RunSummary:
    """One invocation of ``run_task``. ``items`` is samples times epochs; ``scored`` and ``errors`` count the
    whole run (earlier invocations included); ``skipped``, ``cached``, ``called`` and ``tokens`` count
    this invocation (items already in the run directory, served from the cache, sent upstream)."""

    run_dir: Path
    run_id: str
    task_version: str
    status: str
    items: int
    scored: int
    errors: int
    skipped: int
    cached: int
    called: int
    tokens: TokenUsage
    elapsed_s: float
    metrics: dict[str, float] = field(default_factory=dict)


class ResultCache:
    """Completed items in SQLite (WAL), keyed by a hash of everything that decides the item's result."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS items (key TEXT PRIMARY KEY, value TEXT NOT NULL, at REAL NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, run_dir TEXT NOT NULL)")

    @staticmethod
    def key(task_version: str, sample_id: str, epoch: int, target: Mapping[str, Any], params: Mapping[str, Any]) -> str:
        text = json.dumps([task_version, sample_id, epoch, target, params], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The cached values of those keys that are cached."""
        wanted, found = list(keys), {}
        for start in range(0, len(wanted), _SQL_BATCH):
            batch = wanted[start : start + _SQL_BATCH]
            marks = ",".join("?" * len(batch))
            for key, value in self._db.execute(f"SELECT key, value FROM items WHERE key IN ({marks})", batch):
                found[key] = json.loads(value)
        return found

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO items (key, value, at) VALUES (?, ?, ?)", (key, json.dumps(value), time.time())
        )

    def register_run(self, run_id: str, run_dir: Path) -> None:
        self._db.execute("INSERT OR REPLACE INTO runs (run_id, run_dir) VALUES (?, ?)", (run_id, str(run_dir)))

    def find_runs(self, prefix: str) -> dict[str, Path]:
        """The indexed runs whose id starts with ``prefix``: run id → run directory."""
        rows = self._db.execute(
            "SELECT run_id, run_dir FROM runs WHERE substr(run_id, 1, ?) = ?", (len(prefix), prefix)
        )
        return {run_id: Path(run_dir) for run_id, run_dir in rows}

    def close(self) -> None:
        self._db.close()


class _Progress:
    """One status line on stderr, redrawn at most every ``PROGRESS_INTERVAL_S`` seconds."""

    def __init__(self, total: int, already: int, stream: TextIO | None) -> None:
        self.total, self.done, self.errors, self.tokens = total, already, 0, 0
        self._already, self._stream = already, stream
        self._start = time.monotonic()
        self._last = 0.0

    def advance(self, *, error: bool, tokens: int) -> None:
        self.done += 1
        self.errors += int(error)
        self.tokens += tokens
        now = time.monotonic()
        if now - self._last >= PROGRESS_INTERVAL_S:
            self._draw(now)

    def _draw(self, now: float) -> None:
        if self._stream is None:
            return
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        rate = (self.done - self._already) / elapsed
        eta = f"{(self.total - self.done) / rate:.0f}s" if rate > 0 else "-"
        self._stream.write(
            f"\r{self.done}/{self.total} items  {rate:.1f}/s  ETA {eta}  errors {self.errors}  tokens {self.tokens}"
        )
        self._stream.flush()

    def close(self) -> None:
        if self._stream is not None:
            self._draw(time.monotonic())
            self._stream.write("\n")
            self._stream.flush()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _git_commit(where: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def _read_done(results_path: Path, wanted: set[tuple[str, int]]) -> dict[tuple[str, int], dict[str, float]]:
    """The finished items' scores in ``results.jsonl``; a torn line (an interrupted write) is dropped."""
    if not results_path.exists():
        return {}
    done: dict[tuple[str, int], dict[str, float]] = {}
    kept: list[str] = []
    lines = results_path.read_text(encoding="utf-8").splitlines()
    for raw in lines:
        try:
            record = json.loads(raw)
            item, scores = (str(record["item_id"]), int(record["epoch"])), dict(record["scores"])
        except (ValueError, KeyError, TypeError):
            continue
        if item in wanted and item not in done:
            done[item] = scores
            kept.append(raw)
    if len(kept) != len(lines):
        results_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return done


def _metric_means(done: Mapping[tuple[str, int], Mapping[str, float]]) -> dict[str, float]:
    """Each metric's mean over items, each item's epochs averaged first (as ``RunResults.mean``)."""
    values: dict[str, dict[str, list[float]]] = {}
    for (item_id, _), scores in done.items():
        for metric, value in scores.items():
            values.setdefault(metric, {}).setdefault(item_id, []).append(float(value))
    return {
        metric: math.fsum(math.fsum(v) / len(v) for v in items.values()) / len(items)
        for metric, items in sorted(values.items())
    }


def _previous_run(run_dir: Path, task_version: str) -> dict[str, Any] | None:
    path = run_dir / RUN_FILE
    if not path.exists():
        return None
    try:
        previous: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvalInputError(f"{path}: cannot resume from an unreadable run file: {exc}") from None
    if previous.get("task", {}).get("version") != task_version:
        raise TaskError(
            f"{run_dir}: holds a run of another task version; rerun with resume off (--no-resume) or another run dir"
        )
    return previous


@dataclass(frozen=True)
class WorkItem:
    """One (sample, epoch) to run: its rendered messages and request parameters, or the cached output of
    an item whose scoring failed before (then only the scorers run)."""

    sample_id: str
    epoch: int
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    cached_output: Any = None


@dataclass(frozen=True)
class ItemResult:
    """What running a ``WorkItem`` gave: scores (``None`` with ``error`` on failure) and provenance."""

    sample_id: str
    epoch: int
    output: Any = None
    scores: dict[str, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] | None = None
    error: str | None = None
    tokens: TokenUsage = field(default_factory=TokenUsage)
    latency_s: float | None = None
    called: bool = False


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _detail_tokens(details: Mapping[str, Any]) -> TokenUsage:
    """Tokens the scorers spent (the LLM judge's), from their provenance."""
    total = TokenUsage()
    for detail in details.values():
        used = detail.get("tokens") if isinstance(detail, Mapping) else None
        if isinstance(used, Mapping):
            total += TokenUsage(int(used.get("prompt", 0)), int(used.get("completion", 0)))
    return total


async def execute_item(
    session: TargetSession, scorers: Mapping[str, Scorer], sample: Sample, work: WorkItem
) -> ItemResult:
    """Ask the target (unless the output is cached) and score; failures become the item's error."""
    item: dict[str, Any] = {"sample_id": work.sample_id, "epoch": work.epoch}
    output, info, tokens, latency, called = work.cached_output, None, TokenUsage(), None, False
    if output is None:
        began = time.monotonic()
        try:
            answer = await session.answer(work.messages, work.params)
        except Exception as exc:  # the target's failure (after the client's retries) is the item's
            return ItemResult(**item, error=_error(exc))
        output, info, tokens, called = answer.output, answer.info, answer.tokens, True
        latency = time.monotonic() - began
    try:
        scores, details = await score_item(scorers, sample, output)
        if not scores:
            raise ValueError("no scorer gave a metric for this item")
    except Exception as exc:  # a scorer's failure (the judge's too) is the item's
        return ItemResult(
            **item, output=output, info=info, error=_error(exc), tokens=tokens, latency_s=latency, called=called
        )
    return ItemResult(
        **item,
        output=output,
        scores=scores,
        details=details,
        info=info,
        tokens=tokens,
        latency_s=latency,
        called=called,
    )


async def run_task(
    task: Task,
    *,
    run_dir: str | Path,
    client: openai.AsyncOpenAI | None = None,
    retriever: RetrievalTarget | None = None,
    resume: bool = True,
    progress: bool = True,
    cache_path: str | Path | None = None,
    backend: Backend = "local",
    ray_address: str | None = None,
) -> RunSummary:
    """Run every sample and epoch of ``task`` not yet in ``run_dir`` and return the run's summary.

    The target is opened only when an item is not cached: a gateway target through ``client`` (default
    an ``AsyncOpenAI`` on its base URL, key from ``$GOLDENPATH_API_KEY`` or ``$GOLDENPATH_ADMIN_KEY``),
    an in-process gateway built from its config, a collection through ``retriever``, a detector.
    ``resume=False`` starts the run directory afresh. ``cache_path`` defaults to
    ``$GOLDENPATH_HOME/evals/cache.db``. ``backend="ray"`` runs the items on the Ray cluster at
    ``ray_address`` (default: the one this process is connected to, else a local one); the cache, the
    run directory and the results stay here. Item failures (target errors after retries, scorer and
    judge errors) are recorded, not raised; a template that cannot be rendered for some sample raises
    ``TaskError`` before any call.
    """
    started = time.monotonic()
    if backend not in ("local", "ray"):
        raise TaskError(f"unknown backend {backend!r} (local or ray)")
    if backend == "ray" and client is not None:
        raise TaskError("the ray backend opens the target in its workers: do not pass a client")
    run_dir = Path(run_dir)
    dataset = task.load_dataset()
    version = task.version(dataset)
    wanted = [(sample.id, epoch) for epoch in range(task.epochs) for sample in dataset.samples]
    run_dir.mkdir(parents=True, exist_ok=True)
    results_path = run_dir / RESULTS_FILE
    previous = _previous_run(run_dir, version) if resume else None
    if resume and previous is None and results_path.exists():
        raise TaskError(f"{results_path}: results without a {RUN_FILE}; rerun with resume off or another run dir")
    if not resume:
        results_path.unlink(missing_ok=True)
    done = _read_done(results_path, set(wanted))
    pending = [item for item in wanted if item not in done]
    open_items = set(pending)
    errors = {
        (e["item_id"], e["epoch"]): e["error"]
        for e in (previous or {}).get("errors", [])
        if (e["item_id"], e["epoch"]) in open_items
    }

    target = task.target.model_dump()
    cache = ResultCache(Path(cache_path) if cache_path is not None else default_cache_path())
    keys = {
        item: ResultCache.key(version, item[0], item[1], target, task.sampling.request_params(item[1]))
        for item in pending
    }
    try:
        cached = cache.get_many(keys.values())
        hits = {item: cached[keys[item]] for item in pending if keys[item] in cached}
        # a cached item was rendered by this very task version: render (and fail fast on) the others only
        misses = [item for item in pending if item not in hits]
        prompts = task.render(dataset.get(sample_id) for sample_id in dict.fromkeys(i for i, _ in misses))
    except BaseException:
        cache.close()
        raise
    work = [WorkItem(item[0], item[1], prompts[item[0]], task.sampling.request_params(item[1])) for item in misses] + [
        WorkItem(item[0], item[1], [], {}, cached_output=hit["output"])
        for item, hit in hits.items()
        if not hit.get("scores")  # scoring failed last time: score the cached output again
    ]

    previous_tokens = TokenUsage(**{k: v for k, v in (previous or {}).get("tokens", {}).items() if k != "total"})
    provenance: dict[str, Any] = {
        "run_id": (previous or {}).get("run_id") or uuid.uuid4().hex,
        "task": {"name": task.name, "definition_hash": task.definition_hash, "version": version},
        "dataset": {
            "name": dataset.name,
            "version": dataset.version,
            "samples": len(dataset),
            "source": task.dataset if isinstance(task.dataset, str) else None,
            "limit": task.limit,
        },
        "target": target,
        "sampling": task.sampling.model_dump(),
        "scorers": [spec.model_dump(mode="json") for spec in task.scorers],
        "epochs": task.epochs,
        "backend": backend,
        "git_commit": _git_commit(task.base_dir or Path.cwd()),
        "started_at": (previous or {}).get("started_at") or _now(),
        "resumed_at": [*(previous or {}).get("resumed_at", []), *([_now()] if previous is not None else [])],
    }
    cache.register_run(provenance["run_id"], run_dir.resolve())
    counters = {"cached": 0, "called": 0}
    tokens = TokenUsage()
    bar = _Progress(len(wanted), len(done), sys.stderr if progress else None)
    results_file = results_path.open("a", encoding="utf-8")

    def write_run(status: str) -> None:
        record = {
            **provenance,
            "status": status,
            "finished_at": _now(),
            "counts": {"items": len(wanted), "scored": len(done), "errors": len(errors), **counters},
            "tokens": (previous_tokens + tokens).as_dict(),
            "errors": [{"item_id": i, "epoch": e, "error": m} for (i, e), m in sorted(errors.items())],
        }
        tmp = run_dir / f".{RUN_FILE}.tmp"
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        tmp.replace(run_dir / RUN_FILE)

    def write_line(item: tuple[str, int], line: dict[str, Any]) -> None:
        results_file.write(json.dumps(line, ensure_ascii=False) + "\n")
        results_file.flush()
        done[item] = line["scores"]
        errors.pop(item, None)

    def finish(result: ItemResult) -> None:
        nonlocal tokens
        item = (result.sample_id, result.epoch)
        spent = result.tokens + _detail_tokens(result.details)  # the target's and the judge's
        tokens += spent
        counters["called"] += int(result.called)
        if result.output is not None and (result.called or result.scores is not None):
            value = {"output": result.output, "scores": result.scores, "details": result.details, "info": result.info}
            cache.put(keys[item], value)
        if result.scores is None:
            errors[item] = result.error or "unknown error"
        else:
            counters["cached"] += int(not result.called)
            line: dict[str, Any] = {
                "item_id": result.sample_id,
                "epoch": result.epoch,
                "scores": result.scores,
                "output": result.output,
                "cached": not result.called,
            }
            if result.called:
                line["latency_s"] = round(result.latency_s or 0.0, 6)
                line["tokens"] = result.tokens.as_dict()
            for key, extra in (("details", result.details), ("info", result.info)):
                if extra:
                    line[key] = extra
            write_line(item, line)
        bar.advance(error=result.scores is None, tokens=spent.total)

    status = "interrupted"
    write_run("running")
    try:
        for item, hit in hits.items():
            if hit.get("scores"):
                counters["cached"] += 1
                line = {
                    "item_id": item[0],
                    "epoch": item[1],
                    "scores": hit["scores"],
                    "output": hit["output"],
                    "cached": True,
                }
                for key in ("details", "info"):
                    if hit.get(key):
                        line[key] = hit[key]
                write_line(item, line)
                bar.advance(error=False, tokens=0)
        if work:
            samples = {w.sample_id: dataset.get(w.sample_id) for w in work}
            if backend == "ray":
                from goldenpath.evals._ray import run_on_ray

                await run_on_ray(task, work, samples, finish, address=ray_address, retriever=retriever, key=api_key())
            else:
                await _run_local(task, work, samples, finish, client=client, retriever=retriever)
        status = "finished"
    finally:
        bar.close()
        results_file.close()
        write_run(status)
        cache.close()

    return RunSummary(
        run_dir=run_dir,
        run_id=provenance["run_id"],
        task_version=version,
        status=status,
        items=len(wanted),
        scored=len(done),
        errors=len(errors),
        skipped=len(wanted) - len(pending),
        cached=counters["cached"],
        called=counters["called"],
        tokens=tokens,
        elapsed_s=time.monotonic() - started,
        metrics=_metric_means(done),
    )


async def _run_local(
    task: Task,
    work: list[WorkItem],
    samples: Mapping[str, Sample],
    finish: Callable[[ItemResult], None],
    *,
    client: openai.AsyncOpenAI | None,
    retriever: RetrievalTarget | None,
) -> None:
    session = await open_session(
        task.target, base_dir=task.base_dir, aliases=task.gateway_aliases(), client=client, retriever=retriever
    )
    try:
        scorers = task.build_scorers(session.judge_chat)
        semaphore = asyncio.Semaphore(task.max_concurrency)

        async def run(item: WorkItem) -> None:
            async with semaphore:
                result = await execute_item(session, scorers, samples[item.sample_id], item)
            finish(result)

        await asyncio.gather(*(run(item) for item in work))
    finally:
        await session.aclose()


def resolve_run(ref: str | Path, cache_path: str | Path | None = None) -> Path:
    """The run directory ``ref`` names: a directory holding a run, or a run id (or a unique prefix of
    at least 6 characters of one) indexed in the cache database."""
    path = Path(ref)
    if path.is_dir():
        return path
    text = str(ref)
    db = Path(cache_path) if cache_path is not None else default_cache_path()
    if len(text) >= 6 and all(c in "0123456789abcdef" for c in text) and db.exists():
        cache = ResultCache(db)
        try:
            found = cache.find_runs(text)
        finally:
            cache.close()
        if len(found) == 1:
            return next(iter(found.values()))
        if len(found) > 1:
            raise EvalInputError(f"{text}: matches {len(found)} runs ({', '.join(sorted(found))}): give more of the id")
    raise EvalInputError(
        f"{text}: cannot read result file: no such file, run directory or run id (run ids are looked up in {db})"
    )


def load_run_results(ref: str | Path, cache_path: str | Path | None = None) -> RunResults:
    """Per-item results from a result file (JSONL), a run directory, or a run id."""
    path = Path(ref)
    if path.is_file():
        return load_results(path)
    run_dir = resolve_run(ref, cache_path)
    results = run_dir / RESULTS_FILE
    if not results.exists():
        raise EvalInputError(f"{results}: no results (is {run_dir} a run directory?)")
    return load_results(results)


def export_results(run: str | Path) -> list[dict[str, Any]]:
    """The run's results (a run directory or run id) as ``{"item_id", "epoch", "scores"}`` records."""
    run_dir = resolve_run(run)
    path = run_dir / RESULTS_FILE
    if not path.exists():
        raise EvalInputError(f"{path}: no results (is {run_dir} a run directory?)")
    load_results(path)  # validates, with FILE:LINE errors
    records = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.strip():
            record = json.loads(raw)
            records.append({"item_id": record["item_id"], "epoch": record["epoch"], "scores": record["scores"]})
    return records
