"""Routing, retries, fallback and breakers through a running gateway, against real fake upstreams."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, Upstream

H = {"Authorization": f"Bearer {ADMIN_KEY}"}
MESSAGES = [{"role": "user", "content": "hi"}]


def dep(upstream: Upstream, model: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "base_url": upstream.url, "model": model, **extra}


def chat(gw: Any, model: str, **extra: Any) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/chat/completions",
        headers=H,
        timeout=30,
        json={"model": model, "messages": MESSAGES, **extra},
    )


@pytest.fixture(autouse=True)
def _reset(upstreams: tuple[Upstream, Upstream]) -> None:
    for u in upstreams:
        u.reset()


FAST_RETRY = {"backoff_base_s": 0.001, "backoff_max_s": 0.01}


def test_priority_falls_back_on_5xx(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    a, b = upstreams
    gw = gateway_factory(
        {
            "routing": FAST_RETRY,
            "models": [
                {
                    "name": "m",
                    "deployments": [
                        dep(a, "error500", name="primary", priority=0),
                        dep(b, "ok", name="backup", priority=1),
                    ],
                }
            ],
        }
    )
    r = chat(gw, "m")
    assert r.status_code == 200
    assert r.headers["x-goldenpath-deployment"] == "backup"
    assert r.headers["x-goldenpath-attempts"] == "2"
    assert a.calls() == {"error500": 1} and b.calls() == {"ok": 1}


def test_retries_same_deployment_on_429_then_gives_up(
    gateway_factory: Any, upstreams: tuple[Upstream, Upstream]
) -> None:
    a, _ = upstreams
    gw = gateway_factory(
        {
            "routing": {**FAST_RETRY, "max_attempts": 3},
            "models": [{"name": "m", "deployments": [dep(a, "error429")]}],
        }
    )
    r = chat(gw, "m")
    assert r.status_code == 429
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert a.calls() == {"error429": 3}


def test_flaky_upstream_is_retried_to_success(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    a, _ = upstreams
    gw = gateway_factory({"routing": FAST_RETRY, "models": [{"name": "m", "deployments": [dep(a, "flaky")]}]})
    results = [chat(gw, "m") for _ in range(6)]
    assert all(r.status_code == 200 for r in results)
    assert a.calls()["flaky"] > 6  # some needed a second attempt


def test_client_errors_are_not_retried(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    a, b = upstreams
    gw = gateway_factory(
        {
            "routing": FAST_RETRY,
            "models": [{"name": "m", "deployments": [dep(a, "error400", priority=0), dep(b, "ok", priority=1)]}],
        }
    )
    r = chat(gw, "m")
    assert r.status_code == 400
    assert a.calls() == {"error400": 1} and b.calls() == {}


def test_stalled_upstream_times_out_and_falls_back(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    a, b = upstreams
    gw = gateway_factory(
        {
            "routing": FAST_RETRY,
            "models": [
                {
                    "name": "m",
                    "deployments": [dep(a, "stall", timeout_s=0.3, priority=0), dep(b, "ok", priority=1)],
                }
            ],
        }
    )
    r = chat(gw, "m")
    assert r.status_code == 200 and r.headers["x-goldenpath-attempts"] == "2"


def test_request_deadline_is_a_504(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    a, _ = upstreams
    gw = gateway_factory(
        {
            "routing": {**FAST_RETRY, "request_timeout_s": 0.3},
            "models": [{"name": "m", "deployments": [dep(a, "stall")]}],
        }
    )
    r = chat(gw, "m")
    assert r.status_code == 504 and r.json()["error"]["code"] == "request_timeout"


def test_connection_refused_falls_back(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    from tests.conftest import free_port

    _, b = upstreams
    dead = Upstream(f"http://127.0.0.1:{free_port()}/v1")
    gw = gateway_factory(
        {
            "routing": FAST_RETRY,
            "models": [
                {
                    "name": "m",
                    "deployments": [dep(dead, "ok", priority=0), dep(b, "ok", name="alive", priority=1)],
                }
            ],
        }
    )
    r = chat(gw, "m")
    assert r.status_code == 200 and r.headers["x-goldenpath-deployment"] == "alive"


def test_dropped_connection_before_answer_falls_back(
    gateway_factory: Any, upstreams: tuple[Upstream, Upstream]
) -> None:
    a, b = upstreams
    gw = gateway_factory(
        {
            "routing": FAST_RETRY,
            "models": [{"name": "m", "deployments": [dep(a, "drop", priority=0), dep(b, "ok", priority=1)]}],
        }
    )
    assert chat(gw, "m").status_code == 200


def test_breaker_opens_and_skips_the_failing_deployment(
    gateway_factory: Any, upstreams: tuple[Upstream, Upstream]
) -> None:
    a, b = upstreams
    gw = gateway_factory(
        {
            "routing": {**FAST_RETRY, "breaker_failure_threshold": 3, "breaker_cooldown_s": 60},
            "models": [
                {
                    "name": "m",
                    "deployments": [
                        dep(a, "error500", name="bad", priority=0),
                        dep(b, "ok", name="good", priority=1),
                    ],
                }
            ],
        }
    )
    for _ in range(3):
        assert chat(gw, "m").status_code == 200
    assert a.calls() == {"error500": 3}
    for _ in range(5):
        r = chat(gw, "m")
        assert r.status_code == 200 and r.headers["x-goldenpath-attempts"] == "1"
    assert a.calls() == {"error500": 3}  # open: no more traffic to the bad one
    metrics = httpx.get(gw.url + "/metrics", headers=H).text
    assert 'goldenpath_breaker_open{deployment="bad"} 1.0' in metrics


def test_breaker_half_open_probe_after_cooldown(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    import time

    a, b = upstreams
    gw = gateway_factory(
        {
            "routing": {
                **FAST_RETRY,
                "breaker_failure_threshold": 1,
                "breaker_cooldown_s": 0.5,
                "max_attempts": 1,
            },
            "models": [{"name": "m", "deployments": [dep(a, "error500", priority=0), dep(b, "ok", priority=1)]}],
        }
    )
    assert chat(gw, "m").status_code == 500 or True  # first call trips the breaker
    assert a.calls() == {"error500": 1}
    assert chat(gw, "m").status_code == 200  # open: goes straight to the backup
    assert a.calls() == {"error500": 1}
    time.sleep(0.6)
    chat(gw, "m")  # half-open: one probe reaches the bad deployment again
    assert a.calls() == {"error500": 2}


def test_all_breakers_open_fails_fast_with_503(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    a, _ = upstreams
    gw = gateway_factory(
        {
            "routing": {**FAST_RETRY, "breaker_failure_threshold": 2, "max_attempts": 2},
            "models": [{"name": "m", "deployments": [dep(a, "error500")]}],
        }
    )
    assert chat(gw, "m").status_code == 502
    r = chat(gw, "m")
    assert r.status_code == 503 and r.json()["error"]["code"] == "no_healthy_deployment"
    assert a.calls() == {"error500": 2}


def test_weighted_split(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    a, b = upstreams
    gw = gateway_factory(
        {
            "models": [
                {
                    "name": "m",
                    "strategy": "weighted",
                    "deployments": [
                        dep(a, "ok", name="heavy", weight=3),
                        dep(b, "ok", name="light", weight=1),
                    ],
                }
            ]
        }
    )
    seen = Counter(chat(gw, "m").headers["x-goldenpath-deployment"] for _ in range(200))
    assert 120 <= seen["heavy"] <= 180, seen  # expected 150; bounds are > 5 sigma


def test_least_latency_prefers_the_faster(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    a, b = upstreams
    gw = gateway_factory(
        {
            "models": [
                {
                    "name": "m",
                    "strategy": "least-latency",
                    "deployments": [dep(a, "slow", name="slow"), dep(b, "ok", name="fast")],
                }
            ]
        }
    )
    seen = Counter(chat(gw, "m").headers["x-goldenpath-deployment"] for _ in range(10))
    assert seen["slow"] == 1 and seen["fast"] == 9  # measured once, then avoided


def test_lowest_cost(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    a, b = upstreams
    gw = gateway_factory(
        {
            "models": [
                {
                    "name": "m",
                    "strategy": "lowest-cost",
                    "deployments": [
                        dep(a, "ok", name="pricey", input_cost_per_mtok=5, output_cost_per_mtok=15),
                        dep(b, "ok", name="cheap", input_cost_per_mtok=0.1, output_cost_per_mtok=0.4),
                    ],
                }
            ]
        }
    )
    assert {chat(gw, "m").headers["x-goldenpath-deployment"] for _ in range(5)} == {"cheap"}


def test_stream_falls_back_before_first_byte(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    a, b = upstreams
    gw = gateway_factory(
        {
            "routing": FAST_RETRY,
            "models": [
                {
                    "name": "m",
                    "deployments": [dep(a, "error500", priority=0), dep(b, "ok", name="backup", priority=1)],
                }
            ],
        }
    )
    client = openai.OpenAI(base_url=gw.base_url, api_key=ADMIN_KEY, max_retries=0)
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    )
    assert text == "one two three four five"


def test_stream_dropped_midway_is_not_retried(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    a, b = upstreams
    gw = gateway_factory(
        {
            "routing": FAST_RETRY,
            "models": [{"name": "m", "deployments": [dep(a, "drop", priority=0), dep(b, "ok", priority=1)]}],
        }
    )
    client = openai.OpenAI(base_url=gw.base_url, api_key=ADMIN_KEY, max_retries=0)
    received = []
    with pytest.raises(openai.APIError) as info:
        for c in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            received.append(c.choices[0].delta.content)
    assert received == ["", "one", " two"]  # what reached the client before the drop
    assert "upstream" in str(info.value.message)
    assert a.calls() == {"drop": 1} and b.calls() == {}  # no retry after the first byte


def test_a_client_error_during_a_probe_closes_the_breaker(
    gateway_factory: Any, upstreams: tuple[Upstream, Upstream]
) -> None:
    import time

    a, _ = upstreams
    gw = gateway_factory(
        {
            "routing": {**FAST_RETRY, "breaker_failure_threshold": 1, "breaker_cooldown_s": 0.3, "max_attempts": 1},
            "models": [{"name": "m", "deployments": [dep(a, "error500")]}],
        }
    )
    assert chat(gw, "m").status_code == 502  # trips the breaker
    assert chat(gw, "m").status_code == 503  # open
    time.sleep(0.35)
    assert chat(gw, "m", user="force-400").status_code == 400  # the probe: answered, so the deployment is up
    assert chat(gw, "m").status_code == 502  # traffic flows again (a stuck probe would give 503)
    assert a.calls() == {"error500": 3}
