"""A 1,000-item evaluation run against a fake OpenAI-compatible server, then the same run again from the cache.

The issue's bar: a rerun of a finished 1,000-item run, served from the cache, is at least 50x faster
than the first run. The first run calls the server once per item (through the openai client, at the
task's max_concurrency); the rerun goes into a fresh run directory, so every item is looked up in
the SQLite cache and scored, none skipped as already done. The fake server (tests/evals/fake_openai.py)
runs in a thread of this process and echoes the prompt after ``--delay-ms``; with 0 ms the first
run's time is only the HTTP round trips, the least favourable case for the ratio.

    .venv/bin/python bench/eval_cache_rerun.py [--items 1000] [--delay-ms 0 --delay-ms 20] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from goldenpath.evals import Dataset, GatewayTarget, Sample, ScorerSpec, Task, run_task
from tests.evals.fake_openai import serve


def measure(items: int, delay_ms: float, concurrency: int, home: Path) -> tuple[float, float]:
    os.environ["GOLDENPATH_HOME"] = str(home)
    os.environ["GOLDENPATH_API_KEY"] = "bench"
    samples = tuple(
        Sample(id=f"q{i}", input={"question": f"What is item {i}?"}, expected=f"What is item {i}?")
        for i in range(items)
    )
    with serve(delay_s=delay_ms / 1000) as fake:
        task = Task(
            name="cache-bench",
            dataset=Dataset(name="bench", samples=samples),
            prompt="{{ question }}",
            target=GatewayTarget(model="fake-model", base_url=fake.base_url),
            scorers=(ScorerSpec(name="exact_match"), ScorerSpec(name="squad")),
            max_concurrency=concurrency,
        )
        began = time.perf_counter()
        first = asyncio.run(run_task(task, run_dir=home / "first", progress=False))
        first_s = time.perf_counter() - began
        began = time.perf_counter()
        rerun = asyncio.run(run_task(task, run_dir=home / "rerun", progress=False))
        rerun_s = time.perf_counter() - began
    assert (first.called, first.scored, first.errors) == (items, items, 0), first
    assert (rerun.cached, rerun.called, rerun.scored) == (items, 0, items), rerun
    assert fake.calls == items and rerun.metrics == first.metrics
    return first_s, rerun_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--delay-ms", type=float, action="append", help="Server latency per call (repeatable).")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    delays = args.delay_ms or [0.0, 20.0]
    print(f"{args.items} items, max_concurrency {args.concurrency}, scorers exact_match + squad\n")
    print("| server latency | first run | rerun from cache | ratio |")
    print("|---:|---:|---:|---:|")
    for delay in delays:
        with tempfile.TemporaryDirectory() as tmp:
            first_s, rerun_s = measure(args.items, delay, args.concurrency, Path(tmp))
        print(f"| {delay:g} ms | {first_s:.2f} s | {rerun_s:.3f} s | {first_s / rerun_s:.0f}x |")


if __name__ == "__main__":
    main()
