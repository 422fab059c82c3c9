"""Tenants, keys, scopes, limits and budgets through running gateways, embedded and on PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import openai
import pytest

from goldenpath.config import load_settings
from goldenpath.store import Store
from tests.conftest import ADMIN_KEY, RunningGateway, Upstream, redis_prefix

MESSAGES = [{"role": "user", "content": "hi"}]
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
SECRET = "test-server-secret-0123456789"


def priced(upstream: Upstream, name: str = "m", **extra: Any) -> dict[str, Any]:
    # The fake upstream reports 7 prompt and 5 completion tokens: $0.017 a request at these prices.
    return {
        "name": name,
        **extra,
        "deployments": [
            {
                "provider": "openai",
                "base_url": upstream.url,
                "model": "ok",
                "input_cost_per_mtok": 1000.0,
                "output_cost_per_mtok": 2000.0,
            }
        ],
    }


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def admin_post(gw: RunningGateway, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.url + path, headers=ADMIN, json=body, timeout=30)


def new_key(gw: RunningGateway, tenant: str, **spec: Any) -> tuple[str, str]:
    r = admin_post(gw, "/admin/keys", {"tenant": tenant, "name": unique("svc"), **spec})
    assert r.status_code == 201, r.text
    return r.json()["key"], r.json()["id"]


def new_tenant(gw: RunningGateway, **spec: Any) -> str:
    name = unique("t")
    r = admin_post(gw, "/admin/tenants", {"name": name, **spec})
    assert r.status_code == 201, r.text
    return name


def chat(gw: RunningGateway, key: str, model: str = "m", **extra: Any) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
        json={"model": model, "messages": MESSAGES, **extra},
    )


@pytest.fixture
def embedded(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> RunningGateway:
    a, _ = upstreams
    gw: RunningGateway = gateway_factory({"models": [priced(a), priced(a, "other")]})
    return gw


def test_scopes_limit_models(embedded: RunningGateway) -> None:
    tenant = new_tenant(embedded)
    key, _ = new_key(embedded, tenant, models=["m"])
    assert chat(embedded, key).status_code == 200
    r = chat(embedded, key, model="other")
    assert r.status_code == 403
    assert r.json()["error"] == {
        "message": "This API key may not use the model `other`.",
        "type": "permission_error",
        "param": "model",
        "code": "model_not_allowed",
    }


def test_rpm_limit_with_openai_headers(embedded: RunningGateway) -> None:
    tenant = new_tenant(embedded)
    key, _ = new_key(embedded, tenant, rpm=3)
    ok = [chat(embedded, key) for _ in range(3)]
    assert [r.status_code for r in ok] == [200, 200, 200]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in ok] == ["2", "1", "0"]
    assert ok[0].headers["x-ratelimit-limit-requests"] == "3"
    assert ok[0].headers["x-ratelimit-reset-requests"].endswith("s")
    limited = chat(embedded, key)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 61
    err = limited.json()["error"]
    assert err["code"] == "rate_limit_exceeded" and err["type"] == "requests" and "key:" in err["message"]
    client = openai.OpenAI(base_url=embedded.base_url, api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]


def test_tenant_limit_is_shared_by_its_keys(embedded: RunningGateway) -> None:
    tenant = new_tenant(embedded, rpm=2)
    k1, _ = new_key(embedded, tenant)
    k2, _ = new_key(embedded, tenant)
    assert [chat(embedded, k).status_code for k in (k1, k2, k1, k2)] == [200, 200, 429, 429]
    other, _ = new_key(embedded, new_tenant(embedded, rpm=2))
    assert chat(embedded, other).status_code == 200


def test_tpm_limit(embedded: RunningGateway) -> None:
    key, _ = new_key(embedded, new_tenant(embedded), tpm=200)
    assert chat(embedded, key, max_tokens=100).status_code == 200  # reserves ~120, settles 12
    assert chat(embedded, key, max_tokens=100).status_code == 200
    too_big = chat(embedded, key, max_tokens=5000)
    assert too_big.status_code == 429 and too_big.headers["x-should-retry"] == "false"
    assert too_big.json()["error"]["type"] == "tokens"


def test_hard_budget_is_never_overspent_under_concurrency(embedded: RunningGateway) -> None:
    key, key_id = new_key(embedded, new_tenant(embedded), budget_usd=0.1)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            rs = await asyncio.gather(
                *[
                    c.post(
                        embedded.base_url + "/chat/completions",
                        json={"model": "m", "messages": MESSAGES, "max_tokens": 10},
                    )
                    for _ in range(20)
                ]
            )
        return [r.status_code for r in rs]

    statuses = asyncio.run(burst())
    # Reservations of $0.045 each: two fit in $0.1 at once; more only as earlier ones settle at $0.017.
    assert 2 <= statuses.count(200) <= 4
    for _ in range(10):  # then spend it down one request at a time
        r = chat(embedded, key, max_tokens=10)
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded"
    assert r.json()["error"]["type"] == "insufficient_quota" and r.headers["x-should-retry"] == "false"
    embedded.stop()
    store = Store(load_settings(embedded.config, env={"GOLDENPATH_HOME": str(embedded.home)}).database_url)
    spent = store.spent_since(since_ts=0, key_id=key_id)
    assert spent == pytest.approx(0.017 * statuses.count(200))
    assert spent <= 0.1 and statuses.count(200) == 4


def test_soft_budget_warns_but_serves(embedded: RunningGateway) -> None:
    key, _ = new_key(embedded, new_tenant(embedded), budget_usd=0.02, budget_hard=False)
    first = chat(embedded, key, max_tokens=10)
    second = chat(embedded, key, max_tokens=10)
    third = chat(embedded, key, max_tokens=10)
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 200]
    assert "x-goldenpath-budget-warning" not in first.headers
    assert "key:" in third.headers["x-goldenpath-budget-warning"]
    metrics = httpx.get(embedded.url + "/metrics", headers=ADMIN).text
    assert "goldenpath_budget_alerts_total" in metrics


def test_admin_api_requires_admin_and_hides_secrets(embedded: RunningGateway) -> None:
    tenant = new_tenant(embedded)
    key, key_id = new_key(embedded, tenant)
    r = httpx.get(embedded.url + "/admin/keys", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
    listed = httpx.get(embedded.url + f"/admin/keys?tenant={tenant}", headers=ADMIN).json()["data"]
    assert [k["id"] for k in listed] == [key_id]
    assert key not in str(listed) and listed[0]["prefix"] == key[:8] and "key_hash" not in listed[0]
    assert admin_post(embedded, "/admin/tenants", {"name": tenant}).status_code == 409
    bad = admin_post(embedded, "/admin/keys", {"tenant": tenant, "name": "x", "rpm": -1})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rpm"
    bad = admin_post(embedded, "/admin/keys", {"tenant": tenant, "name": "x", "models": ["nope"]})
    assert bad.status_code == 400 and "unknown model" in bad.json()["error"]["message"]
    assert admin_post(embedded, "/admin/keys", {"tenant": "missing", "name": "x"}).status_code == 400


def test_rotate_and_revoke(embedded: RunningGateway) -> None:
    key, key_id = new_key(embedded, new_tenant(embedded))
    rotated = admin_post(embedded, f"/admin/keys/{key_id}/rotate", {})
    assert rotated.status_code == 200
    new = rotated.json()["key"]
    assert chat(embedded, key).status_code == 401
    assert chat(embedded, new).status_code == 200
    assert httpx.delete(embedded.url + f"/admin/keys/{key_id}", headers=ADMIN).status_code == 200
    assert chat(embedded, new).status_code == 401
    assert httpx.delete(embedded.url + f"/admin/keys/{key_id}", headers=ADMIN).status_code == 404


def test_expired_key_is_refused(embedded: RunningGateway) -> None:
    key, _ = new_key(embedded, new_tenant(embedded), expires_in="1s")
    assert chat(embedded, key).status_code == 200
    time.sleep(1.2)
    assert chat(embedded, key).status_code == 401


def test_usage_report_api_and_cli(embedded: RunningGateway) -> None:
    tenant = new_tenant(embedded)
    key, _ = new_key(embedded, tenant)
    for _ in range(3):
        chat(embedded, key)
    chat(embedded, key, model="nope")  # a failure counts as a request, not a success
    time.sleep(1.0)  # the recorder writes every 0.5 s
    rows = httpx.get(embedded.url + f"/admin/usage?tenant={tenant}&by=model,day", headers=ADMIN).json()["data"]
    m = next(r for r in rows if r["model"] == "m")
    assert m["requests"] == 3 and m["succeeded"] == 3
    assert m["prompt_tokens"] == 21 and m["completion_tokens"] == 15
    assert m["cost_usd"] == pytest.approx(0.051) and m["cost_per_success_usd"] == pytest.approx(0.017)
    assert httpx.get(embedded.url + "/admin/usage?by=colour", headers=ADMIN).status_code == 400
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "goldenpath",
            "usage",
            "--tenant",
            tenant,
            "--by",
            "model,day",
            "--config",
            str(embedded.config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"GOLDENPATH_HOME": str(embedded.home), "PATH": "/usr/bin"},
    )
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("m "))
    assert "0.051000" in line and "0.017000" in line


def test_cli_keys_create_prints_the_key_last(embedded: RunningGateway) -> None:
    env = {"GOLDENPATH_HOME": str(embedded.home), "PATH": "/usr/bin"}
    cfg = ["--config", str(embedded.config)]
    tenant = unique("acme")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "goldenpath", *args, *cfg], capture_output=True, text=True, timeout=60, env=env
        )

    assert run("tenants", "create", tenant).returncode == 0
    out = run(
        "keys",
        "create",
        "--tenant",
        tenant,
        "--name",
        "ci-bot",
        "--models",
        "m",
        "--rpm",
        "600",
        "--tpm",
        "100000",
        "--budget-usd",
        "50",
        "--budget-period",
        "month",
        "--expires-in",
        "90d",
    )
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip().splitlines()[-1]
    assert key.startswith("gp-")
    deadline = time.monotonic() + 5
    while chat(embedded, key).status_code != 200:  # the running gateway picks the new key up by itself
        assert time.monotonic() < deadline
        time.sleep(0.1)
    listing = run("keys", "list", "--tenant", tenant).stdout
    assert "ci-bot" in listing and key not in listing and key[:8] in listing
    key_id = listing.splitlines()[1].split()[0]
    assert run("keys", "revoke", key_id).returncode == 0
    deadline = time.monotonic() + 1.0
    while chat(embedded, key).status_code != 401:
        assert time.monotonic() < deadline, "revocation took longer than 1 s"
        time.sleep(0.05)


# Scale-out: two replicas on one PostgreSQL and one Redis


@pytest.fixture
def replicas(gateway_factory: Any, upstreams: tuple[Upstream, Upstream], postgres_url: str) -> list[RunningGateway]:
    a, _ = upstreams
    env = {
        "GOLDENPATH_DATABASE_URL": postgres_url,
        "GOLDENPATH_REDIS_URL": "redis://127.0.0.1:6379/0",
        "GOLDENPATH_SECRET": SECRET,
    }
    config = {"redis_prefix": redis_prefix(), "models": [priced(a)]}
    return [gateway_factory(config, env=env) for _ in range(2)]


def test_two_replicas_enforce_one_combined_limit_exactly(replicas: list[RunningGateway]) -> None:
    limit = 10
    for _run in range(5):
        key, _ = new_key(replicas[0], new_tenant(replicas[0]), rpm=limit)
        deadline = time.monotonic() + 5
        while chat(replicas[1], key, model="nope").status_code == 401:  # wait for replica 2 to know the key
            assert time.monotonic() < deadline
            time.sleep(0.05)

        async def burst(key: str = key) -> list[int]:
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
                rs = await asyncio.gather(
                    *[
                        c.post(
                            replicas[i % 2].base_url + "/chat/completions", json={"model": "m", "messages": MESSAGES}
                        )
                        for i in range(3 * limit)
                    ]
                )
            return [r.status_code for r in rs]

        statuses = asyncio.run(burst())
        assert statuses.count(200) == limit, statuses
        assert statuses.count(429) == 2 * limit


def test_revoked_key_refused_by_every_replica_within_one_second(replicas: list[RunningGateway]) -> None:
    key, key_id = new_key(replicas[0], new_tenant(replicas[0]))
    deadline = time.monotonic() + 5
    while chat(replicas[1], key).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert httpx.delete(replicas[0].url + f"/admin/keys/{key_id}", headers=ADMIN).status_code == 200
    revoked_at = time.monotonic()
    while chat(replicas[1], key).status_code != 401:
        assert time.monotonic() - revoked_at < 1.0, "replica 2 still accepts the revoked key"
        time.sleep(0.02)


def test_budget_shared_across_replicas(replicas: list[RunningGateway], postgres_url: str) -> None:
    key, key_id = new_key(replicas[0], new_tenant(replicas[0]), budget_usd=0.1)
    time.sleep(0.6)
    statuses = [chat(replicas[i % 2], key, max_tokens=10).status_code for i in range(8)]
    # See priced(): $0.017 each, $0.045 reserved: four fit. A request may land before the previous
    # one's settlement reaches Redis and be refused early; never late.
    assert statuses.count(200) in (3, 4) and statuses[-1] == 429
    time.sleep(1.0)  # both recorders flush every 0.5 s
    spent = Store(postgres_url).spent_since(since_ts=0, key_id=key_id)
    assert spent == pytest.approx(0.017 * statuses.count(200)) and spent <= 0.1


def test_restart_mid_load_loses_nothing(
    gateway_factory: Any, upstreams: tuple[Upstream, Upstream], postgres_url: str
) -> None:
    a, _ = upstreams
    env = {
        "GOLDENPATH_DATABASE_URL": postgres_url,
        "GOLDENPATH_REDIS_URL": "redis://127.0.0.1:6379/0",
        "GOLDENPATH_SECRET": SECRET,
    }
    config = {"redis_prefix": redis_prefix(), "store": {"record_flush_interval_s": 30}, "models": [priced(a)]}
    gw = gateway_factory(config, env=env)
    key, key_id = new_key(gw, new_tenant(gw))
    answered: list[str] = []

    async def load() -> None:
        enough = asyncio.Event()
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:

            async def one() -> None:
                try:
                    r = await c.post(gw.base_url + "/chat/completions", json={"model": "m", "messages": MESSAGES})
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    answered.append(r.headers["x-request-id"])
                    if len(answered) >= 20:
                        enough.set()

            tasks = [asyncio.create_task(one()) for _ in range(300)]
            await asyncio.wait_for(enough.wait(), 20)
            gw.proc.send_signal(15)  # SIGTERM while most requests are still in flight
            await asyncio.gather(*tasks)

    asyncio.run(load())
    gw.proc.wait(30)
    assert answered
    store = Store(postgres_url)
    recorded = {r.id: r for r in store.latest_requests(10_000) if r.key_id == key_id}
    missing = [rid for rid in answered if rid not in recorded]
    assert not missing, f"{len(missing)} answered requests have no record"
    assert all(recorded[rid].cost_usd == pytest.approx(0.017) for rid in answered)
