"""The response cache: exact answers by request hash, and (chat) answers to close paraphrases.

Exact layer. The key is the sha256 of the canonical JSON of the normalized request (``_keys``):
operation, model alias and every field that can change the answer; ``stream``, ``stream_options``
and ``user`` are left out, so a streamed and a plain request share an entry. Entries live under their
tenant, which is part of every key and index: a tenant can only ever read its own entries.

Semantic layer (chat only, when ``semantic`` is on). A request is split into its context (every
message but the last user message, tools, model, sampling: all of ``_keys.normalize`` but that text)
and the last user message's text. The context hash names a partition; within it the text is
embedded (all-MiniLM-L6-v2, unit vectors) and compared by cosine with the texts answered before; the
best one at or above ``semantic_threshold`` is a hit, unless the two texts are a minimal edit of each
other (``_keys.conflicting``: same words reordered, or one or two words swapped; the embedding cannot
tell "dollars to euros" from "euros to dollars"; see ``bench/semantic_cache.py``). A semantic row
points at an exact entry, so it shares its TTL and eviction. Texts that the model would truncate
(≥ 256 tokens) are never compared.

In process, partitions are numpy matrices (``_index.VectorIndex``), one matrix product per lookup,
bounded per tenant by ``max_entries`` rows with the TTL. With Redis, each partition is a Redis
stream of (entry key, vector, expiry) rows that every replica mirrors into its own ``VectorIndex``:
the lookup script returns either the exact entry or the stream rows added since this replica's
cursor, in one round trip; a hit then fetches the entry's body (a second round trip), and a row
whose entry has expired or been evicted is dropped from the mirror, so Redis stays the judge of TTL
and bounds. Store is one script: entry, stream row, tenant index by expiry, trim to ``max_entries``.

Failures of the cache (Redis down or slow, the embedding model missing) never fail a request: a
lookup answers None, a store does nothing, ``errors`` counts them and a warning is logged at most
every ``_LOG_INTERVAL_S`` seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import redis.asyncio

from goldenpath.cache._backends import Backend, MemoryBackend, RedisBackend
from goldenpath.cache._index import SemanticRow, Vector
from goldenpath.cache._keys import (
    OPERATIONS,
    complete_answer,
    conflicting,
    deterministic,
    digest,
    normalize,
    semantic_parts,
)
from goldenpath.config import CacheConfig

log = logging.getLogger("goldenpath.cache")

_MAX_TOKENS = 256  # the embedder's truncation length: a text this long may differ past what it read
_MAX_CHARS = 4096  # longer texts are not compared (nearly always ≥ _MAX_TOKENS; skipping only loses hits)
_VECTOR_MEMO = 1024
_LOG_INTERVAL_S = 10.0


class Embedder(Protocol):
    """What the semantic layer needs of a model (``OnnxEmbedder`` is one)."""

    def embed(self, texts: list[str]) -> tuple[Any, int]: ...


@dataclass(slots=True, frozen=True)
class CacheHit:
    body: bytes  # the stored non-streaming response JSON
    kind: Literal["exact", "semantic"]
    similarity: float | None  # cosine, for semantic hits


class ResponseCache:
    """Cached answers per tenant, in process or in Redis (shared by replicas); see the module docs.

    ``config`` is the top-level cache section (its ``semantic_model`` is checked here); each call
    takes the alias's effective one. An ``embedder`` must truncate at 256 tokens (as the built-in one
    does); without one, the built-in model is loaded on first semantic use, in a thread. The Redis
    client is borrowed (``close`` leaves it open); each Redis round trip is bounded by ``timeout_s``.

    Counters for metrics: ``hits_exact``, ``hits_semantic``, ``misses`` (lookups answered None
    without error), ``stores`` (entries written), ``errors`` (lookups and stores that failed, or were
    skipped because Redis failed in the last few seconds; those answer None or store nothing).
    """

    def __init__(
        self,
        config: CacheConfig,
        *,
        redis: redis.asyncio.Redis | None = None,
        embedder: Embedder | None = None,
        prefix: str = "gp:cache",
        timeout_s: float = 0.5,
    ) -> None:
        self._backend: Backend = MemoryBackend() if redis is None else RedisBackend(redis, prefix, timeout_s)
        self._embedder = embedder
        self._embedder_lock = asyncio.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gp-cache-embed")
        self._vectors: OrderedDict[bytes, Vector | None] = OrderedDict()  # text hash → vector (None: too long)
        self._log_after = 0.0
        self._log_suppressed = 0
        self.hits_exact = 0
        self.hits_semantic = 0
        self.misses = 0
        self.stores = 0
        self.errors = 0

    def cacheable(self, op: str, body: dict[str, Any], config: CacheConfig) -> bool:
        """Whether this request may be answered from, and its answer written to, the cache."""
        if not config.enabled or op not in OPERATIONS:
            return False
        return op == "embeddings" or not config.deterministic_only or deterministic(body)

    async def lookup(self, tenant: str, op: str, body: dict[str, Any], config: CacheConfig) -> CacheHit | None:
        """An exact hit, else (chat, ``semantic`` on) the closest paraphrase's answer, else None."""
        if not self.cacheable(op, body, config):
            return None
        try:
            hit = await self._lookup(tenant, op, body, config)
        except Exception as exc:
            self._failed("lookup", exc)
            return None
        if hit is None:
            self.misses += 1
        elif hit.kind == "exact":
            self.hits_exact += 1
        else:
            self.hits_semantic += 1
        return hit

    async def _lookup(self, tenant: str, op: str, body: dict[str, Any], config: CacheConfig) -> CacheHit | None:
        request = normalize(op, body)
        key = digest(request)
        semantic = self._semantic_parts(request, config)
        sync = None if semantic is None else (semantic[0], config.max_entries)
        found = await self._backend.get(tenant, key, sync)
        if found is not None:
            return CacheHit(found, "exact", None)
        if semantic is None or not self._backend.index.has_rows(tenant, semantic[0]):
            return None
        partition, text = semantic
        vector = await self._vector(text)
        if vector is None:
            return None
        for near, near_text, similarity in self._backend.index.nearest(
            tenant, partition, vector, config.semantic_threshold
        ):
            if conflicting(near_text, text):
                continue
            found = await self._backend.get(tenant, near)
            if found is not None:
                return CacheHit(found, "semantic", similarity)
            self._backend.index.discard(tenant, partition, near)
        return None

    async def store(self, tenant: str, op: str, body: dict[str, Any], response: bytes, config: CacheConfig) -> None:
        """Keep ``response`` if it is a whole, successful answer within ``max_entry_bytes``."""
        if not self.cacheable(op, body, config) or len(response) > config.max_entry_bytes:
            return
        try:
            if not complete_answer(op, body, response):
                return
            request = normalize(op, body)
            semantic = self._semantic_parts(request, config)
            row = None
            if semantic is not None:
                vector = await self._vector(semantic[1])
                row = None if vector is None else SemanticRow(semantic[0], semantic[1], vector)
            await self._backend.put(tenant, digest(request), response, config.ttl_s, config.max_entries, row)
        except Exception as exc:
            self._failed("store", exc)
            return
        self.stores += 1

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _semantic_parts(self, request: dict[str, Any], config: CacheConfig) -> tuple[str, str] | None:
        if not config.semantic:
            return None
        parts = semantic_parts(request, config.semantic_model)
        return None if parts is None or len(parts[1]) > _MAX_CHARS else parts

    async def _vector(self, text: str) -> Vector | None:
        """The text's unit vector (memoized: a miss's store reuses its lookup's), None if too long."""
        memo = hashlib.sha256(text.encode()).digest()
        if memo in self._vectors:
            self._vectors.move_to_end(memo)
            return self._vectors[memo]
        embedder = self._embedder or await self._load_embedder()
        matrix, tokens = await asyncio.get_running_loop().run_in_executor(self._pool, embedder.embed, [text])
        vector = None if tokens >= _MAX_TOKENS else np.asarray(matrix[0], dtype=np.float32)
        self._vectors[memo] = vector
        if len(self._vectors) > _VECTOR_MEMO:
            self._vectors.popitem(last=False)
        return vector

    async def _load_embedder(self) -> Embedder:
        async with self._embedder_lock:
            if self._embedder is None:
                self._embedder = await asyncio.get_running_loop().run_in_executor(self._pool, _builtin_embedder)
            return self._embedder

    def _failed(self, what: str, exc: Exception) -> None:
        self.errors += 1
        now = time.monotonic()
        if now < self._log_after:
            self._log_suppressed += 1
            return
        unlogged = f" ({self._log_suppressed} more since the last warning)" if self._log_suppressed else ""
        log.warning("cache %s failed, answering without the cache: %s: %s%s", what, type(exc).__name__, exc, unlogged)
        self._log_after = now + _LOG_INTERVAL_S
        self._log_suppressed = 0


def _builtin_embedder() -> Embedder:
    from goldenpath.providers._packaged import minilm_onnx, minilm_tokenizer
    from goldenpath.providers.onnx_embeddings import OnnxEmbedder

    return OnnxEmbedder(minilm_onnx(), minilm_tokenizer(), max_length=_MAX_TOKENS, n_threads=1)
