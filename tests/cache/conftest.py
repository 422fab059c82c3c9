"""Cache fixtures: both backends (Redis on 127.0.0.1:6379, one fresh key prefix per test) and helpers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import orjson
import pytest
import redis.asyncio

from goldenpath.cache import ResponseCache
from goldenpath.config import CacheConfig
from goldenpath.providers._packaged import minilm_onnx, minilm_tokenizer
from goldenpath.providers.onnx_embeddings import OnnxEmbedder

REDIS_URL = "redis://127.0.0.1:6379/0"
ON = CacheConfig(enabled=True)

MakeCache = Callable[..., ResponseCache]


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "temperature": 0, "messages": [{"role": "user", "content": text}], **extra}


def chat_answer(content: str, *, n: int = 1, finish_reason: str | None = "stop") -> bytes:
    choices = [
        {"index": i, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}
        for i in range(n)
    ]
    return orjson.dumps(
        {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m", "choices": choices}
    )


def content_of(body: bytes) -> str:
    return str(orjson.loads(body)["choices"][0]["message"]["content"])


class ConstantEmbedder:
    """Every text is the same vector: every stored text of a partition is a perfect semantic match."""

    def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        return np.full((len(texts), 8), 8**-0.5, dtype=np.float32), len(texts)


async def delete_prefix(client: redis.asyncio.Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[tuple[redis.asyncio.Redis, str]]:
    """A Redis client and a key prefix no other test uses; the prefix's keys are deleted afterwards."""
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    prefix = f"gp:test:{uuid.uuid4().hex}"
    yield client, prefix
    await delete_prefix(client, prefix)
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def make_cache(request: pytest.FixtureRequest) -> AsyncIterator[MakeCache]:
    """Build caches on one backend; on Redis every cache is a separate replica sharing the prefix."""
    prefix = f"gp:test:{uuid.uuid4().hex}"
    clients: list[redis.asyncio.Redis] = []
    caches: list[ResponseCache] = []

    def make(config: CacheConfig = ON, **kw: Any) -> ResponseCache:
        client = None
        if request.param == "redis":
            client = redis.asyncio.Redis.from_url(REDIS_URL)
            clients.append(client)
        cache = ResponseCache(config, redis=client, prefix=prefix, **kw)
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        await cache.close()
    if clients:
        await delete_prefix(clients[0], prefix)
    for client in clients:
        await client.aclose()


@pytest.fixture(scope="session")
def embedder() -> Iterator[OnnxEmbedder]:
    yield OnnxEmbedder(minilm_onnx(), minilm_tokenizer(), max_length=256, n_threads=1)
