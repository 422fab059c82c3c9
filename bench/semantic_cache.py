"""Semantic cache: precision and recall of paraphrase hits by threshold, and what a lookup costs.

Data: ``bench/data/paraphrases.jsonl``, hand-written pairs ``{"domain", "paraphrase", "a", "b"}``:
true paraphrases (same intent, other words) and hard negatives (same topic, another question).
Every ``a`` is stored (one tenant, one context, so all compete), then every ``b`` is looked up:

- a true positive is a paraphrase's ``b`` answered with its own ``a``'s answer;
- a false positive is any other hit (a negative's ``b`` answered, or a ``b`` given another pair's answer);
- precision = TP / hits, recall = TP / paraphrase pairs.

Two results per threshold: "similarity alone" (the nearest ``a`` by cosine, computed here with numpy)
and "cache" (``ResponseCache.lookup``: cosine plus the minimal-edit guard, ``_keys.conflicting``).
The recommended threshold is the lowest whose cache precision is 1.0 on this data (a wrong answer
costs more than a miss). Then it times lookups (``time.perf_counter``, in-process
and, with ``--redis``, Redis): an exact hit averaged over ``--n`` iterations, and a semantic hit with
its embedding (every text new to the cache).

Run: ``.venv/bin/python bench/semantic_cache.py [--redis redis://127.0.0.1:6379/0] [--n 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio

from goldenpath.cache import ResponseCache
from goldenpath.config import CacheConfig
from goldenpath.providers._packaged import minilm_onnx, minilm_tokenizer
from goldenpath.providers.onnx_embeddings import OnnxEmbedder

DATA = Path(__file__).parent / "data" / "paraphrases.jsonl"
THRESHOLDS = [round(0.80 + 0.02 * i, 2) for i in range(10)]  # 0.80 .. 0.98
TENANT = "bench"
SYSTEM = "You are a helpful assistant."


def request(text: str) -> dict[str, Any]:
    return {
        "model": "bench-model",
        "temperature": 0,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
    }


def answer(pair: int) -> bytes:
    return orjson.dumps(
        {
            "id": f"chatcmpl-{pair}",
            "object": "chat.completion",
            "created": 0,
            "model": "bench-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": str(pair)}, "finish_reason": "stop"}],
        }
    )


def answered(body: bytes) -> int:
    return int(orjson.loads(body)["choices"][0]["message"]["content"])


def score(pairs: list[dict[str, Any]], answers: list[int | None]) -> dict[str, Any]:
    """Count the outcome of looking up every ``b``; ``answers[i]`` is the pair whose answer came back."""
    tp = fp_negative = fp_other = 0
    for i, (pair, got) in enumerate(zip(pairs, answers, strict=True)):
        if got is None:
            continue
        if not pair["paraphrase"]:
            fp_negative += 1
        elif got == i:
            tp += 1
        else:
            fp_other += 1
    hits = tp + fp_negative + fp_other
    positives = sum(p["paraphrase"] for p in pairs)
    return {
        "hits": hits,
        "tp": tp,
        "fp_negative": fp_negative,
        "fp_other": fp_other,
        "precision": tp / hits if hits else float("nan"),
        "recall": tp / positives,
    }


def similarity_alone(embedder: OnnxEmbedder, pairs: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    stored, _ = embedder.embed([p["a"] for p in pairs])
    queries, _ = embedder.embed([p["b"] for p in pairs])
    sims = queries @ stored.T
    best = sims.argmax(axis=1)
    return score(pairs, [int(j) if sims[i, j] >= threshold else None for i, j in enumerate(best)])


def ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


async def quality(embedder: OnnxEmbedder, pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = CacheConfig(enabled=True, semantic=True)
    cache = ResponseCache(base, embedder=embedder)
    for i, pair in enumerate(pairs):
        await cache.store(TENANT, "chat", request(pair["a"]), answer(i), base)
    rows = []
    for threshold in THRESHOLDS:
        config = base.model_copy(update={"semantic_threshold": threshold})
        answers = []
        for pair in pairs:
            hit = await cache.lookup(TENANT, "chat", request(pair["b"]), config)
            answers.append(None if hit is None else answered(hit.body))
        alone = similarity_alone(embedder, pairs, threshold)
        rows.append({"threshold": threshold, "alone": alone} | score(pairs, answers))
    await cache.close()
    assert cache.errors == 0, "cache errors during the benchmark"
    return rows


async def exact_hit_us(cache: ResponseCache, config: CacheConfig, n: int) -> float:
    body = request("What is the capital of France?")
    await cache.store(TENANT, "chat", body, answer(0), config)
    assert await cache.lookup(TENANT, "chat", body, config) is not None
    start = time.perf_counter()
    for _ in range(n):
        await cache.lookup(TENANT, "chat", body, config)
    return (time.perf_counter() - start) / n * 1e6


async def semantic_hit_ms(cache: ResponseCache, config: CacheConfig, pairs: list[dict[str, Any]]) -> list[float]:
    """Each ``b`` of a paraphrase pair once (new text: the embedding is part of the time)."""
    for i, pair in enumerate(pairs):
        await cache.store(TENANT, "chat", request(pair["a"]), answer(i), config)
    times = []
    for pair in pairs:
        if pair["paraphrase"]:
            start = time.perf_counter()
            await cache.lookup(TENANT, "chat", request(pair["b"]), config)
            times.append((time.perf_counter() - start) * 1000)
    return times


async def costs(embedder: OnnxEmbedder, pairs: list[dict[str, Any]], n: int, url: str | None) -> list[str]:
    exact = CacheConfig(enabled=True)
    semantic = CacheConfig(enabled=True, semantic=True)
    lines = []
    backends: list[tuple[str, redis.asyncio.Redis | None]] = [("in-process", None)]
    if url:
        backends.append(("Redis", redis.asyncio.Redis.from_url(url)))
    for name, client in backends:
        prefix = f"gp:bench:{uuid.uuid4().hex}"
        caches = [ResponseCache(exact, redis=client, prefix=prefix, embedder=embedder) for _ in range(3)]
        plain = await exact_hit_us(caches[0], exact, n)
        with_semantic = await exact_hit_us(caches[1], semantic, n)
        times = await semantic_hit_ms(caches[2], semantic, pairs)
        lines.append(f"| {name} | exact hit, semantic off | {plain:.1f} µs (mean of {n}) |")
        lines.append(f"| {name} | exact hit, semantic on | {with_semantic:.1f} µs (mean of {n}) |")
        lines.append(
            f"| {name} | semantic lookup, new text (embedding included) | "
            f"median {statistics.median(times):.2f} ms, max {max(times):.2f} ms ({len(times)} lookups) |"
        )
        for cache in caches:
            await cache.close()
            assert cache.errors == 0, f"{name}: cache errors while timing"
        if client is not None:
            async for key in client.scan_iter(match=f"{prefix}:*"):
                await client.delete(key)
            await client.aclose()
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--redis", help="also time the Redis backend at this URL")
    parser.add_argument("--n", type=int, default=1000, help="iterations of the exact-hit timing")
    args = parser.parse_args()

    pairs = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    positives = sum(p["paraphrase"] for p in pairs)
    embedder = OnnxEmbedder(minilm_onnx(), minilm_tokenizer(), max_length=256, n_threads=1)

    rows = await quality(embedder, pairs)
    print(f"{len(pairs)} pairs: {positives} paraphrases, {len(pairs) - positives} hard negatives\n")
    print(
        "| threshold | similarity alone: hits (wrong) | precision | recall "
        "| cache: hits | true | wrong: negative answered | wrong: other pair's answer | precision | recall |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        a = r["alone"]
        print(
            f"| {r['threshold']:.2f} | {a['hits']} ({a['hits'] - a['tp']}) | {ratio(a['precision'])} "
            f"| {ratio(a['recall'])} | {r['hits']} | {r['tp']} | {r['fp_negative']} | {r['fp_other']} "
            f"| {ratio(r['precision'])} | {ratio(r['recall'])} |"
        )
    exact_ones = [r for r in rows if r["hits"] and r["precision"] == 1.0]
    chosen = exact_ones[0]["threshold"] if exact_ones else None
    print(f"\nLowest threshold where the cache gave no wrong answer on this data: {chosen}.")

    print("\n| backend | lookup | cost |\n|---|---|---|")
    for line in await costs(embedder, pairs, args.n, args.redis):
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
