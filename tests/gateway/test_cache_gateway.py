"""The response cache through running gateways: exact and semantic hits, streams, bypass, tenants, replicas."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, RunningGateway, Upstream, openai_alias, redis_prefix

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
Q = [{"role": "user", "content": "What is the capital of France?"}]


def chat(
    gw: RunningGateway, key: str = ADMIN_KEY, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    payload = {"model": "m", "messages": Q, "temperature": 0, **body}
    return httpx.post(
        gw.base_url + "/chat/completions",
        json=payload,
        timeout=30,
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
    )


def tenant_key(gw: RunningGateway) -> str:
    import uuid

    name = "t-" + uuid.uuid4().hex[:6]
    assert httpx.post(gw.url + "/admin/tenants", headers=ADMIN, json={"name": name}).status_code == 201
    r = httpx.post(gw.url + "/admin/keys", headers=ADMIN, json={"tenant": name, "name": "svc"})
    return str(r.json()["key"])


@pytest.fixture
def cached(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> RunningGateway:
    up, _ = upstreams
    up.reset()
    gw: RunningGateway = gateway_factory(
        {"cache": {"enabled": True, "ttl_s": 30}, "models": [openai_alias("m", up, "ok")]}
    )
    return gw


def test_exact_hit_skips_the_upstream(cached: RunningGateway, upstreams: tuple[Upstream, Upstream]) -> None:
    first = chat(cached)
    assert first.headers["x-goldenpath-cache"] == "miss"
    time.sleep(0.1)  # the store happens after the answer is sent
    second = chat(cached)
    assert second.headers["x-goldenpath-cache"] == "hit-exact"
    assert second.json()["choices"] == first.json()["choices"]
    assert upstreams[0].calls() == {"ok": 1}
    metrics = httpx.get(cached.url + "/metrics", headers=ADMIN).text
    assert 'goldenpath_cache_total{result="hit_exact"} 1.0' in metrics


def test_tenants_never_share_answers(cached: RunningGateway, upstreams: tuple[Upstream, Upstream]) -> None:
    a, b = tenant_key(cached), tenant_key(cached)
    time.sleep(0.3)
    chat(cached, a)
    time.sleep(0.1)
    assert chat(cached, a).headers["x-goldenpath-cache"] == "hit-exact"
    assert chat(cached, b).headers["x-goldenpath-cache"] == "miss"


def test_stream_answered_from_cache_as_a_stream(cached: RunningGateway) -> None:
    client = openai.OpenAI(base_url=cached.base_url, api_key=ADMIN_KEY, max_retries=0)
    streamed = list(
        client.chat.completions.create(
            model="m",
            messages=Q,
            temperature=0,
            stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )
    )
    time.sleep(0.1)
    raw = client.chat.completions.with_raw_response.create(
        model="m",
        messages=Q,
        temperature=0,
        stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )
    assert raw.headers["x-goldenpath-cache"] == "hit-exact"
    replay = list(raw.parse())
    text = lambda chunks: "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)  # noqa: E731
    assert text(replay) == text(streamed) == "one two three four five"
    assert replay[-1].usage is not None and replay[-1].usage.total_tokens == 12
    plain = chat(cached)  # the streamed answer also serves non-streaming requests
    assert plain.headers["x-goldenpath-cache"] == "hit-exact"
    assert plain.json()["choices"][0]["message"]["content"] == "one two three four five"


def test_cache_control(cached: RunningGateway, upstreams: tuple[Upstream, Upstream]) -> None:
    chat(cached)
    time.sleep(0.1)
    r = chat(cached, headers={"Cache-Control": "no-cache"})
    assert r.headers["x-goldenpath-cache"] == "bypass"
    r = chat(cached, headers={"Cache-Control": "no-store"}, seed=5)
    time.sleep(0.1)
    assert chat(cached, seed=5).headers["x-goldenpath-cache"] == "miss"  # no-store kept nothing
    assert upstreams[0].calls() == {"ok": 4}


def test_sampled_requests_are_not_cached(cached: RunningGateway) -> None:
    r = chat(cached, temperature=0.8)
    assert "x-goldenpath-cache" not in r.headers


def test_ttl(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    gw = gateway_factory({"cache": {"enabled": True, "ttl_s": 0.5}, "models": [openai_alias("m", upstreams[0], "ok")]})
    chat(gw)
    time.sleep(0.1)
    assert chat(gw).headers["x-goldenpath-cache"] == "hit-exact"
    time.sleep(0.6)
    assert chat(gw).headers["x-goldenpath-cache"] == "miss"


def test_replicas_share_the_cache_on_redis(
    gateway_factory: Any, upstreams: tuple[Upstream, Upstream], postgres_url: str
) -> None:
    env = {
        "GOLDENPATH_DATABASE_URL": postgres_url,
        "GOLDENPATH_REDIS_URL": "redis://127.0.0.1:6379/0",
        "GOLDENPATH_SECRET": "s" * 20,
    }
    config = {
        "redis_prefix": redis_prefix(),
        "cache": {"enabled": True},
        "models": [openai_alias("m", upstreams[0], "ok")],
    }
    one, two = gateway_factory(config, env=env), gateway_factory(config, env=env)
    assert chat(one, seed=11).headers["x-goldenpath-cache"] == "miss"
    time.sleep(0.1)
    assert chat(two, seed=11).headers["x-goldenpath-cache"] == "hit-exact"


@pytest.mark.models
def test_semantic_hit_for_a_paraphrase(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    gw = gateway_factory(
        {"cache": {"enabled": True, "semantic": True}, "models": [openai_alias("m", upstreams[0], "ok")]}
    )
    chat(gw, messages=[{"role": "user", "content": "How do I reset my password?"}])
    time.sleep(0.5)
    r = chat(gw, messages=[{"role": "user", "content": "How can I reset my password?"}])
    assert r.headers["x-goldenpath-cache"] == "hit-semantic"
    other = chat(gw, messages=[{"role": "user", "content": "How do I delete my account?"}])
    assert other.headers["x-goldenpath-cache"] == "miss"
