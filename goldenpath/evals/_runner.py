"""The evaluation runner: a task's samples through a gateway model, scored, cached and resumable.

Every (sample, epoch) is one chat completion through the official ``openai`` client (it retries
429s honouring ``Retry-After``, and 5xx and connection errors, with backoff), at most
``max_concurrency`` at a time. A completed item's output and scores are kept in a SQLite cache
keyed by the task version, the sample, the epoch, the target and the sampling parameters, so a rerun
of an unchanged task makes no upstream call. A run directory holds ``results.jsonl`` (one line per
scored item, appended as items finish; the result-file format ``goldenpath gate`` reads) and
``run.json`` (provenance, counts, tokens and the items that failed, with their errors). A rerun into
the same directory skips the items already in ``results.jsonl`` and retries the failed ones.
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import openai

from goldenpath.evals._datasets import Sample
from goldenpath.evals._results import EvalInputError, load_results
from goldenpath.evals._scorers import score_output
from goldenpath.evals._task import Task, TaskError

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"
HOME_ENV = "GOLDENPATH_HOME"
API_KEY_ENVS = ("GOLDENPATH_API_KEY", "GOLDENPATH_ADMIN_KEY")
MAX_RETRIES = 5
REQUEST_TIMEOUT_S = 300.0
PROGRESS_INTERVAL_S = 0.5
_SQL_BATCH = 500


def default_cache_path() -> Path:
    """``$GOLDENPATH_HOME/evals/cache.db`` (``./.goldenpath`` when unset)."""
    return Path(os.environ.get(HOME_ENV) or ".goldenpath") / "evals" / "cache.db"


@dataclass(frozen=True)
class TokenUsage:
    prompt: int = 0
    completion: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(self.prompt + other.prompt, self.completion + other.completion)

    def as_dict(self) -> dict[str, int]:
        return {"prompt": self.prompt, "completion": self.completion, "total": self.total}


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


def _api_key() -> str | None:
    for name in API_KEY_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    return None


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


async def _complete(
    client: openai.AsyncOpenAI, task: Task, messages: list[dict[str, str]], params: Mapping[str, Any]
) -> tuple[str, TokenUsage]:
    response = await client.chat.completions.create(
        model=task.target.model,
        messages=messages,  # type: ignore[arg-type]  # plain role/content dicts are valid message params
        **params,
    )
    if not response.choices:
        raise ValueError("the response has no choices")
    usage = response.usage
    tokens = TokenUsage(usage.prompt_tokens, usage.completion_tokens) if usage is not None else TokenUsage()
    return response.choices[0].message.content or "", tokens


async def run_task(
    task: Task,
    *,
    run_dir: str | Path,
    client: openai.AsyncOpenAI | None = None,
    resume: bool = True,
    progress: bool = True,
    cache_path: str | Path | None = None,
) -> RunSummary:
    """Run every sample and epoch of ``task`` not yet in ``run_dir`` and return the run's summary.

    ``client`` defaults to an ``AsyncOpenAI`` on the task's target (key from ``$GOLDENPATH_API_KEY``
    or ``$GOLDENPATH_ADMIN_KEY``), made only when an item is not cached. ``resume=False`` starts the
    run directory afresh. ``cache_path`` defaults to ``$GOLDENPATH_HOME/evals/cache.db``. Item
    failures (upstream errors after the client's retries, scorer errors) are recorded, not raised; a
    template that cannot be rendered for some sample raises ``TaskError`` before any call.
    """
    started = time.monotonic()
    run_dir = Path(run_dir)
    dataset = task.load_dataset()
    version = task.version(dataset)
    scorers = task.build_scorers()
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
        misses = [item for item in pending if item not in hits]
        # a cached item was rendered by this very task version: render (and fail fast on) the others only
        prompts = task.render(dataset.get(sample_id) for sample_id in dict.fromkeys(i for i, _ in misses))
        api_key = _api_key()
        if client is None and misses and api_key is None:
            raise TaskError(f"{len(misses)} items need the gateway: set {' or '.join('$' + n for n in API_KEY_ENVS)}")
    except BaseException:
        cache.close()
        raise
    own_client = client is None and bool(misses)
    if client is None and misses:
        client = openai.AsyncOpenAI(
            base_url=task.target.base_url, api_key=api_key, max_retries=MAX_RETRIES, timeout=REQUEST_TIMEOUT_S
        )

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
        "git_commit": _git_commit(task.base_dir or Path.cwd()),
        "started_at": (previous or {}).get("started_at") or _now(),
        "resumed_at": [*(previous or {}).get("resumed_at", []), *([_now()] if previous is not None else [])],
    }
    counters = {"cached": 0, "called": 0}
    tokens = TokenUsage()
    bar = _Progress(len(wanted), len(done), sys.stderr if progress else None)
    semaphore = asyncio.Semaphore(task.max_concurrency)
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

    def finish(item: tuple[str, int], line: dict[str, Any] | None, error: str | None, used: TokenUsage) -> None:
        if line is not None:
            text = json.dumps(line, ensure_ascii=False)
            results_file.write(text + "\n")
            results_file.flush()
            done[item] = line["scores"]
            errors.pop(item, None)
        else:
            errors[item] = error or "unknown error"
        bar.advance(error=line is None, tokens=used.total)

    async def score(sample: Sample, output: str) -> dict[str, float]:
        scores = await score_output(scorers, sample, output)
        if not scores:
            raise ValueError("no scorer gave a metric for this item")
        return scores

    async def run_hit(item: tuple[str, int], hit: dict[str, Any]) -> None:
        try:
            scores = hit.get("scores") or await score(dataset.get(item[0]), hit["output"])
        except Exception as exc:  # a scorer's failure is the item's, recorded
            finish(item, None, f"{type(exc).__name__}: {exc}", TokenUsage())
            return
        counters["cached"] += 1
        line = {"item_id": item[0], "epoch": item[1], "scores": scores, "output": hit["output"], "cached": True}
        finish(item, line, None, TokenUsage())

    async def run_miss(item: tuple[str, int], client: openai.AsyncOpenAI) -> None:
        nonlocal tokens
        sample_id, epoch = item
        params = task.sampling.request_params(epoch)
        async with semaphore:
            began = time.monotonic()
            try:
                output, used = await _complete(client, task, prompts[sample_id], params)
            except Exception as exc:  # upstream failure after the client's retries: the item's error
                finish(item, None, f"{type(exc).__name__}: {exc}", TokenUsage())
                return
            latency = time.monotonic() - began
        counters["called"] += 1
        tokens += used
        try:
            scores = await score(dataset.get(sample_id), output)
        except Exception as exc:  # a scorer's failure is the item's, recorded
            cache.put(keys[item], {"output": output, "scores": None})
            finish(item, None, f"{type(exc).__name__}: {exc}", used)
            return
        cache.put(keys[item], {"output": output, "scores": scores})
        line = {
            "item_id": sample_id,
            "epoch": epoch,
            "scores": scores,
            "output": output,
            "cached": False,
            "latency_s": round(latency, 6),
            "tokens": used.as_dict(),
        }
        finish(item, line, None, used)

    status = "interrupted"
    write_run("running")
    try:
        for item, hit in hits.items():
            await run_hit(item, hit)
        if misses:
            assert client is not None
            await asyncio.gather(*(run_miss(item, client) for item in misses))
        status = "finished"
    finally:
        bar.close()
        results_file.close()
        write_run(status)
        cache.close()
        if own_client and client is not None:
            await client.close()

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


def export_results(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's results as ``{"item_id", "epoch", "scores"}`` records (what ``goldenpath gate`` reads)."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.exists():
        raise EvalInputError(f"{path}: no results (is {run_dir} a run directory?)")
    load_results(path)  # validates, with FILE:LINE errors
    records = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.strip():
            record = json.loads(raw)
            records.append({"item_id": record["item_id"], "epoch": record["epoch"], "scores": record["scores"]})
    return records
