"""Limits and budgets on both backends: the same semantics, exact under concurrency."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from goldenpath.tenancy import Admission, Governor, MemoryGovernor, RedisGovernor

_ids = itertools.count()


def rid() -> str:
    return f"r{next(_ids)}"


@pytest.fixture(params=["memory", "redis"])
async def governor(request: pytest.FixtureRequest) -> AsyncIterator[Governor]:
    if request.param == "memory":
        yield MemoryGovernor()
        return
    client = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    prefix = "gptest-" + uuid.uuid4().hex[:8]
    yield RedisGovernor(client, prefix=prefix)
    keys = [k async for k in client.scan_iter(f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_rpm_allows_exactly_the_limit_under_concurrency(governor: Governor) -> None:
    decisions = await asyncio.gather(*[governor.admit(Admission(rid(), rpm=[("key:a", 7)])) for _ in range(30)])
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 7
    denied = [d for d in decisions if not d.allowed]
    assert all(d.reason == "rpm" and d.scope == "key:a" and d.retry_after_s is not None for d in denied)
    assert 0 < denied[0].retry_after_s <= 61  # type: ignore[operator]
    assert sorted(d.remaining_requests for d in allowed) == list(range(7))  # type: ignore[type-var]


async def test_every_scope_must_pass(governor: Governor) -> None:
    scopes = [("key:a", 100), ("tenant:t", 3), ("model:m", 100)]
    results = [await governor.admit(Admission(rid(), rpm=scopes)) for _ in range(5)]
    assert [d.allowed for d in results] == [True, True, True, False, False]
    assert results[-1].scope == "tenant:t"
    other_key = await governor.admit(Admission(rid(), rpm=[("key:b", 100), ("tenant:t", 3)]))
    assert not other_key.allowed  # the tenant's limit is shared by its keys
    other_tenant = await governor.admit(Admission(rid(), rpm=[("key:c", 100), ("tenant:u", 3)]))
    assert other_tenant.allowed


async def test_tpm_reserves_then_settles_actual(governor: Governor) -> None:
    first = Admission(rid(), tpm=[("key:a", 1000)], tokens=800)
    assert (await governor.admit(first)).allowed
    assert not (await governor.admit(Admission(rid(), tpm=[("key:a", 1000)], tokens=300))).allowed
    await governor.settle(first, tokens=100, cost_micro=0)  # it used far less than reserved
    d = await governor.admit(Admission(rid(), tpm=[("key:a", 1000)], tokens=300))
    assert d.allowed and d.remaining_tokens == 600
    too_big = await governor.admit(Admission(rid(), tpm=[("key:a", 1000)], tokens=5000))
    assert not too_big.allowed and too_big.retry_after_s is None  # can never fit


async def test_hard_budget_counts_reservations_in_flight(governor: Governor) -> None:
    budget = [("key:a:2026-11", 1_000_000, True)]  # $1
    a1 = Admission(rid(), budgets=budget, reserve_micro=600_000)
    assert (await governor.admit(a1)).allowed
    a2 = Admission(rid(), budgets=budget, reserve_micro=600_000)
    d2 = await governor.admit(a2)
    assert not d2.allowed and d2.reason == "budget" and d2.retry_after_s is None
    assert await governor.settle(a1, tokens=10, cost_micro=200_000) == []
    assert (await governor.admit(a2)).allowed  # 0.2 spent + 0.6 reserved
    assert await governor.settle(a2, tokens=10, cost_micro=900_000) == ["key:a:2026-11"]
    assert not (await governor.admit(Admission(rid(), budgets=budget, reserve_micro=1))).allowed


async def test_soft_budget_only_warns(governor: Governor) -> None:
    budget = [("tenant:t:2026-11", 100, False)]
    a = Admission(rid(), budgets=budget, reserve_micro=1000)
    assert (await governor.admit(a)).allowed
    assert await governor.settle(a, tokens=1, cost_micro=500) == ["tenant:t:2026-11"]
    d = await governor.admit(Admission(rid(), budgets=budget, reserve_micro=1000))
    assert d.allowed and d.budget_exceeded == ["tenant:t:2026-11"]


async def test_seeded_spend_counts_and_is_not_overwritten(governor: Governor) -> None:
    await governor.seed_spent("key:z:2026-11", 900, ttl_s=3600)
    await governor.seed_spent("key:z:2026-11", 0, ttl_s=3600)  # a second replica starting later
    d = await governor.admit(Admission(rid(), budgets=[("key:z:2026-11", 1000, True)], reserve_micro=200))
    assert not d.allowed


async def test_window_slides() -> None:
    now = [1000.0]
    g = MemoryGovernor(clock=lambda: now[0])
    for _ in range(3):
        assert (await g.admit(Admission(rid(), rpm=[("k", 3)]))).allowed
        now[0] += 10
    d = await g.admit(Admission(rid(), rpm=[("k", 3)]))
    # The first request's one-second bucket leaves the window 61 s after it opened (never early).
    assert not d.allowed and d.retry_after_s == pytest.approx(31.0)
    now[0] = 1060.5
    assert not (await g.admit(Admission(rid(), rpm=[("k", 3)]))).allowed
    now[0] = 1061.0
    assert (await g.admit(Admission(rid(), rpm=[("k", 3)]))).allowed
    assert not (await g.admit(Admission(rid(), rpm=[("k", 3)]))).allowed


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(1, 50)), min_size=1, max_size=60), st.integers(1, 120))
def test_no_trailing_window_ever_exceeds_the_token_limit(steps: list[tuple[int, int]], limit: int) -> None:
    now = [0.0]
    g = MemoryGovernor(clock=lambda: now[0])
    admitted: list[tuple[float, int]] = []

    async def run() -> None:
        for gap, tokens in steps:
            now[0] += gap * 7.5
            if (await g.admit(Admission(rid(), tpm=[("k", limit)], tokens=tokens))).allowed:
                admitted.append((now[0], tokens))

    asyncio.run(run())
    for t, _ in admitted:
        assert sum(n for s, n in admitted if t - 60 < s <= t) <= limit


async def test_redis_governors_share_state() -> None:
    prefix = "gptest-" + uuid.uuid4().hex[:8]
    clients: list[Any] = [aioredis.Redis.from_url("redis://127.0.0.1:6379/0") for _ in range(2)]
    govs = [RedisGovernor(c, prefix=prefix) for c in clients]
    decisions = await asyncio.gather(
        *[govs[i % 2].admit(Admission(rid(), rpm=[("key:shared", 10)])) for i in range(40)]
    )
    assert sum(d.allowed for d in decisions) == 10
    keys = [k async for k in clients[0].scan_iter(f"{prefix}:*")]
    await clients[0].delete(*keys)
    for c in clients:
        await c.aclose()
