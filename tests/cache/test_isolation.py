"""Property: a tenant never receives another tenant's entry, exact or semantic, on either backend."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goldenpath.cache import ResponseCache
from goldenpath.config import CacheConfig
from tests.cache.conftest import REDIS_URL, ConstantEmbedder, chat, delete_prefix

CONFIG = CacheConfig(enabled=True, semantic=True, max_entries=100)
# Far apart in words (the minimal-edit guard passes them), identical to ConstantEmbedder: any stored
# question of a partition is a semantic match for every other, the strongest temptation to leak.
QUESTIONS = ["What is the capital of France?", "How do I bake bread at home quickly?", "Explain entanglement simply."]
MODELS = ["m1", "m2"]

Store = tuple[str, str, str]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[str], list[Store]]:
    tenants = draw(st.lists(st.text(max_size=6), min_size=2, max_size=4, unique=True))
    stores = draw(
        st.lists(st.tuples(st.sampled_from(tenants), st.sampled_from(QUESTIONS), st.sampled_from(MODELS)), max_size=12)
    )
    return tenants, stores


async def check(writer: ResponseCache, reader: ResponseCache, tenants: list[str], stores: list[Store]) -> None:
    latest: dict[Store, bytes] = {}
    for seq, (tenant, question, model) in enumerate(stores):
        answer = {"tenant": tenant, "question": question, "model": model, "seq": seq}
        message = {"role": "assistant", "content": orjson.dumps(answer).decode()}
        body = orjson.dumps({"object": "chat.completion", "choices": [{"message": message, "finish_reason": "stop"}]})
        await writer.store(tenant, "chat", chat(question, model=model), body, CONFIG)
        latest[(tenant, question, model)] = body
    for tenant in tenants:
        for model in MODELS:
            has_partition = any(t == tenant and m == model for t, _, m in latest)
            for question in QUESTIONS:
                hit = await reader.lookup(tenant, "chat", chat(question, model=model), CONFIG)
                own = latest.get((tenant, question, model))
                if own is not None:
                    assert hit is not None and hit.kind == "exact" and hit.body == own
                    continue
                assert (hit is not None) == has_partition
                if hit is not None:
                    answer = orjson.loads(orjson.loads(hit.body)["choices"][0]["message"]["content"])
                    assert hit.kind == "semantic" and answer["tenant"] == tenant and answer["model"] == model
    assert writer.stores == len(stores) and writer.errors == reader.errors == 0
    await writer.close()
    await reader.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_tenants_are_isolated_in_process(scenario: tuple[list[str], list[Store]]) -> None:
    cache = ResponseCache(CONFIG, embedder=ConstantEmbedder())
    asyncio.run(check(cache, cache, *scenario))


async def _on_redis(tenants: list[str], stores: list[Store]) -> None:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    prefix = f"gp:test:{uuid.uuid4().hex}"
    try:
        # Two replicas: one writes, the other reads (shared keys and the reader's mirror on trial).
        writer = ResponseCache(CONFIG, redis=client, prefix=prefix, embedder=ConstantEmbedder())
        reader = ResponseCache(CONFIG, redis=client, prefix=prefix, embedder=ConstantEmbedder())
        await check(writer, reader, tenants, stores)
    finally:
        await delete_prefix(client, prefix)
        await client.aclose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_tenants_are_isolated_on_redis(scenario: tuple[list[str], list[Store]]) -> None:
    asyncio.run(_on_redis(*scenario))


@pytest.mark.parametrize("tenant", ["a", "=61", "{a}", "a:e", ""])
def test_lookalike_tenants_do_not_share_keys(tenant: str) -> None:
    """``=61`` is how a non-plain tenant would be hex-encoded; no plain tenant can spell it."""
    asyncio.run(_on_redis(["a", tenant] if tenant != "a" else ["a", "b"], [("a", QUESTIONS[0], "m1")]))
