"""The semantic layer with the real embedding model (all-MiniLM-L6-v2 on onnxruntime)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from goldenpath.cache import ResponseCache
from goldenpath.config import CacheConfig
from goldenpath.providers.onnx_embeddings import OnnxEmbedder
from tests.cache.conftest import MakeCache, chat, chat_answer, content_of

pytestmark = pytest.mark.models

SEMANTIC = CacheConfig(enabled=True, semantic=True, semantic_threshold=0.9)
PARAPHRASES = [
    ("What is the capital of France?", "What's France's capital city?"),
    (
        "What is the difference between a Roth IRA and a traditional IRA?",
        "How does a Roth IRA differ from a traditional IRA?",
    ),
    ("What is an index fund?", "Can you explain what an index fund is?"),
    ("Is tap water safe to drink in Mexico City?", "Can you drink the tap water in Mexico City?"),
    ("How many moons does Mars have?", "What is the number of moons orbiting Mars?"),
]
OTHER_QUESTIONS = [
    ("What is the capital of France?", "What is the population of France?"),
    ("How do I reverse a list in Python?", "How do I sort a list in Python?"),
    ("Convert 100 US dollars to euros.", "Convert 100 euros to US dollars."),  # cosine 0.99: the guard refuses it
    ("What is the tax rate on stocks held over a year?", "What is the tax rate on stocks held under a year?"),
]


async def test_paraphrases_hit(make_cache: MakeCache, embedder: OnnxEmbedder) -> None:
    cache = make_cache(SEMANTIC, embedder=embedder)
    for i, (stored, _) in enumerate(PARAPHRASES):
        await cache.store("t", "chat", chat(stored), chat_answer(f"answer {i}"), SEMANTIC)
    for i, (_, asked) in enumerate(PARAPHRASES):
        hit = await cache.lookup("t", "chat", chat(asked), SEMANTIC)
        assert hit is not None and hit.kind == "semantic", asked
        assert content_of(hit.body) == f"answer {i}"
        assert hit.similarity is not None and SEMANTIC.semantic_threshold <= hit.similarity < 1
    assert await cache.lookup("other-tenant", "chat", chat(PARAPHRASES[0][1]), SEMANTIC) is None
    assert (cache.hits_semantic, cache.misses, cache.errors) == (len(PARAPHRASES), 1, 0)


@pytest.mark.parametrize(("stored", "asked"), OTHER_QUESTIONS)
async def test_different_questions_miss(make_cache: MakeCache, embedder: OnnxEmbedder, stored: str, asked: str) -> None:
    cache = make_cache(SEMANTIC, embedder=embedder)
    await cache.store("t", "chat", chat(stored), chat_answer("a"), SEMANTIC)
    assert await cache.lookup("t", "chat", chat(asked), SEMANTIC) is None


async def test_only_the_last_user_message_is_compared(make_cache: MakeCache, embedder: OnnxEmbedder) -> None:
    cache = make_cache(SEMANTIC, embedder=embedder)
    stored, asked = PARAPHRASES[0]
    await cache.store("t", "chat", chat(stored), chat_answer("Paris"), SEMANTIC)
    french = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": asked}]
    for other in (chat(asked, model="other"), chat(asked, max_tokens=5), chat(asked, messages=french)):
        assert await cache.lookup("t", "chat", other, SEMANTIC) is None
    assert await cache.lookup("t", "chat", chat(asked), SEMANTIC.model_copy(update={"semantic": False})) is None
    assert await cache.lookup("t", "chat", chat(asked, stream=True), SEMANTIC) is not None


async def test_texts_the_model_would_truncate_are_not_compared(make_cache: MakeCache, embedder: OnnxEmbedder) -> None:
    cache = make_cache(SEMANTIC, embedder=embedder)
    long = "Summarize this. " + "The quick brown fox jumps over the lazy dog. " * 40
    first, second = long + "Then translate it into French.", long + "Afterwards count how many words appear there."
    await cache.store("t", "chat", chat(first), chat_answer("a"), SEMANTIC)
    assert await cache.lookup("t", "chat", chat(second), SEMANTIC) is None  # same first 256 tokens: cosine 1
    assert await cache.lookup("t", "chat", chat(first), SEMANTIC) is not None  # exact


async def test_replicas_share_rows_and_redis_decides_ttl_and_eviction(
    redis_prefix: tuple[redis.asyncio.Redis, str], embedder: OnnxEmbedder
) -> None:
    client, prefix = redis_prefix
    config = SEMANTIC.model_copy(update={"max_entries": 2, "ttl_s": 1.0})
    a = ResponseCache(config, redis=client, prefix=prefix, embedder=embedder)
    b = ResponseCache(config, redis=client, prefix=prefix, embedder=embedder)
    await a.store("t", "chat", chat(PARAPHRASES[0][0]), chat_answer("Paris"), config)
    hit = await b.lookup("t", "chat", chat(PARAPHRASES[0][1]), config)
    assert hit is not None and hit.kind == "semantic" and content_of(hit.body) == "Paris"

    # A evicts the entry (bound 2): B's mirror still has the row, but Redis no longer has the entry.
    await a.store("t", "chat", chat(PARAPHRASES[1][0]), chat_answer("IRA"), config)
    await a.store("t", "chat", chat(PARAPHRASES[2][0]), chat_answer("fund"), config)
    assert await b.lookup("t", "chat", chat(PARAPHRASES[0][1]), config) is None
    streams = [k async for k in client.scan_iter(match=f"{prefix}:*:s:*")]
    assert len(streams) == 1 and await client.xlen(streams[0]) == 2  # the evicted row left the stream too

    hit = await b.lookup("t", "chat", chat(PARAPHRASES[2][1]), config)
    assert hit is not None and content_of(hit.body) == "fund"
    await asyncio.sleep(1.1)
    assert await b.lookup("t", "chat", chat(PARAPHRASES[2][1]), config) is None
    assert a.errors == b.errors == 0


async def test_builtin_embedder_loads_on_first_use() -> None:
    cache = ResponseCache(SEMANTIC)
    stored, asked = PARAPHRASES[0]
    await cache.store("t", "chat", chat(stored), chat_answer("Paris"), SEMANTIC)
    hit = await cache.lookup("t", "chat", chat(asked), SEMANTIC)
    assert hit is not None and hit.kind == "semantic"
    await cache.close()
