"""Exact entries on both backends: hits, TTL, the per-tenant bound, what is refused, Redis failures."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator

import orjson
import pytest
import redis.asyncio

from goldenpath.cache import CacheHit, ResponseCache, _backends
from goldenpath.cache._backends import MemoryBackend
from goldenpath.config import CacheConfig
from tests.cache.conftest import ON, MakeCache, chat, chat_answer, content_of
from tests.conftest import free_port


async def test_miss_store_hit_and_counters(make_cache: MakeCache) -> None:
    cache = make_cache()
    assert await cache.lookup("t1", "chat", chat("hi"), ON) is None
    await cache.store("t1", "chat", chat("hi"), chat_answer("hello"), ON)
    streamed = chat("hi", stream=True, stream_options={"include_usage": True})
    assert await cache.lookup("t1", "chat", streamed, ON) == CacheHit(chat_answer("hello"), "exact", None)
    assert await cache.lookup("t1", "chat", chat("hi", temperature=0.0, max_tokens=9), ON) is None
    assert (cache.hits_exact, cache.hits_semantic, cache.misses, cache.stores, cache.errors) == (1, 0, 2, 1, 0)


async def test_other_operations(make_cache: MakeCache) -> None:
    cache = make_cache()
    embeddings = {"model": "e", "input": ["a", "b"]}
    vectors = orjson.dumps({"object": "list", "data": [{"embedding": [1.0]}, {"embedding": [2.0]}]})
    await cache.store("t", "embeddings", embeddings, vectors, ON)
    hit = await cache.lookup("t", "embeddings", embeddings, ON)
    assert hit is not None and hit.body == vectors
    completion = {"model": "m", "prompt": "Once", "temperature": 0}
    text = orjson.dumps(
        {"object": "text_completion", "choices": [{"index": 0, "text": " upon", "finish_reason": "stop"}]}
    )
    await cache.store("t", "completions", completion, text, ON)
    hit = await cache.lookup("t", "completions", completion, ON)
    assert hit is not None and hit.body == text


async def test_a_later_store_replaces_the_entry(make_cache: MakeCache) -> None:
    cache = make_cache()
    await cache.store("t", "chat", chat("hi"), chat_answer("one"), ON)
    await cache.store("t", "chat", chat("hi"), chat_answer("two"), ON)
    hit = await cache.lookup("t", "chat", chat("hi"), ON)
    assert hit is not None and content_of(hit.body) == "two"


async def test_entries_expire(make_cache: MakeCache) -> None:
    config = ON.model_copy(update={"ttl_s": 0.2})
    cache = make_cache(config)
    await cache.store("t", "chat", chat("hi"), chat_answer("hello"), config)
    assert await cache.lookup("t", "chat", chat("hi"), config) is not None
    await asyncio.sleep(0.3)
    assert await cache.lookup("t", "chat", chat("hi"), config) is None


async def test_the_oldest_entries_of_a_tenant_are_evicted(make_cache: MakeCache) -> None:
    config = ON.model_copy(update={"max_entries": 3})
    cache = make_cache(config)
    for i in range(5):
        await cache.store("t", "chat", chat(f"q{i}"), chat_answer(f"a{i}"), config)
        await asyncio.sleep(0.002)  # distinct expiry times on Redis (ms resolution)
    await cache.store("other", "chat", chat("q0"), chat_answer("theirs"), config)
    found = [await cache.lookup("t", "chat", chat(f"q{i}"), config) for i in range(5)]
    assert [None if f is None else content_of(f.body) for f in found] == [None, None, "a2", "a3", "a4"]
    hit = await cache.lookup("other", "chat", chat("q0"), config)  # another tenant's bound is its own
    assert hit is not None and content_of(hit.body) == "theirs"


async def test_what_is_never_stored(make_cache: MakeCache) -> None:
    config = ON.model_copy(update={"max_entry_bytes": 1024})
    cache = make_cache(config)
    refused = [
        (chat("big"), chat_answer("x" * 2000)),
        (chat("error"), b'{"error": {"message": "upstream failed", "type": "server_error"}}'),
        (chat("partial", n=2), chat_answer("only one choice")),
        (chat("cut"), chat_answer("no finish", finish_reason=None)),
        (chat("sampled", temperature=0.8), chat_answer("random")),
    ]
    for body, response in refused:
        await cache.store("t", "chat", body, response, config)
        assert await cache.lookup("t", "chat", body, config.model_copy(update={"deterministic_only": False})) is None
    assert cache.stores == 0 and cache.errors == 0


def test_memory_backend_is_bounded() -> None:
    backend = MemoryBackend()
    for tenant in ("a", "b"):
        for i in range(50):
            backend.entries.put(tenant, f"k{i}", b"x", 60.0, 10)
    assert len(backend.entries) == 20
    assert backend.entries.get("a", "k49") == b"x" and backend.entries.get("a", "k39") is None


async def test_redis_layout_and_atomic_bound(redis_prefix: tuple[redis.asyncio.Redis, str]) -> None:
    client, prefix = redis_prefix
    config = ON.model_copy(update={"max_entries": 4, "ttl_s": 30})
    cache = ResponseCache(config, redis=client, prefix=prefix)
    tenant = "acme {x}:y"  # braces and colons are encoded, never able to reach another tenant's keys
    await asyncio.gather(*(cache.store(tenant, "chat", chat(f"q{i}"), chat_answer("a"), config) for i in range(20)))
    assert cache.stores == 20
    base = f"{prefix}:{{={tenant.encode().hex()}}}"
    keys = sorted([k.decode() async for k in client.scan_iter(match=f"{prefix}:*")])
    assert len(keys) == 5 and all(k.startswith(base + ":") for k in keys)
    assert await client.zcard(f"{base}:idx") == 4
    entry = next(k for k in keys if ":e:" in k)
    assert 0 < await client.pttl(entry) <= 30_000
    assert await client.pttl(f"{base}:idx") > 0


async def test_plain_tenant_names_are_written_as_they_are(redis_prefix: tuple[redis.asyncio.Redis, str]) -> None:
    client, prefix = redis_prefix
    cache = ResponseCache(ON, redis=client, prefix=prefix)
    await cache.store("key_01.team-a", "chat", chat("hi"), chat_answer("a"), ON)
    assert await client.exists(f"{prefix}:{{key_01.team-a}}:idx")


def test_decoded_redis_clients_are_refused() -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        ResponseCache(ON, redis=redis.asyncio.Redis(decode_responses=True))


def test_unknown_embedding_model_is_refused() -> None:
    with pytest.raises(ValueError, match="all-minilm-l6-v2"):
        CacheConfig(semantic_model="bge-small")  # type: ignore[arg-type]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel does) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.mark.parametrize("semantic", [False, True])
async def test_redis_down_never_fails_a_request(semantic: bool, caplog: pytest.LogCaptureFixture) -> None:
    config = ON.model_copy(update={"semantic": semantic})
    client = redis.asyncio.Redis(port=free_port())  # nothing listens there
    cache = ResponseCache(config, redis=client)
    with caplog.at_level(logging.WARNING, logger="goldenpath.cache"):
        assert await cache.lookup("t", "chat", chat("hi"), config) is None
        await cache.store("t", "chat", chat("hi"), chat_answer("hello"), config)
        assert await cache.lookup("t", "chat", chat("hi"), config) is None
    assert (cache.errors, cache.misses, cache.stores) == (3, 0, 0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis" in warnings[0].getMessage()  # rate limited
    await cache.close()
    await client.aclose()


async def test_a_hung_redis_times_out(silent_port: int) -> None:
    client = redis.asyncio.Redis(port=silent_port)
    cache = ResponseCache(ON, redis=client, timeout_s=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await cache.lookup("t", "chat", chat("hi"), ON) is None
    await cache.store("t", "chat", chat("hi"), chat_answer("hello"), ON)
    assert loop.time() - start < 2
    assert cache.errors == 2
    await cache.close()
    await client.aclose()


async def test_redis_is_skipped_after_a_failure_then_tried_again(
    redis_prefix: tuple[redis.asyncio.Redis, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, prefix = redis_prefix
    monkeypatch.setattr(_backends, "_RETRY_AFTER_S", 0.1)
    cache = ResponseCache(ON, redis=client, prefix=prefix)
    await cache.store("t", "chat", chat("hi"), chat_answer("hello"), ON)
    backend = cache._backend
    assert isinstance(backend, _backends.RedisBackend)
    backend._down_until = time.monotonic() + 0.1  # as after a failure
    assert await cache.lookup("t", "chat", chat("hi"), ON) is None
    assert cache.errors == 1
    await asyncio.sleep(0.15)
    assert await cache.lookup("t", "chat", chat("hi"), ON) is not None
