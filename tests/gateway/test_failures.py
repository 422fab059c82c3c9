"""Failures inside the gateway become OpenAI-style errors and honest records, in process (ASGI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from goldenpath.config import Settings
from goldenpath.gateway import Gateway
from goldenpath.tenancy import Admission, Decision, Governor
from tests.conftest import Upstream, openai_alias


class BrokenGovernor(Governor):
    async def admit(self, a: Admission) -> Decision:
        raise ConnectionError("redis is gone")

    async def settle(self, a: Admission, tokens: int, cost_micro: int) -> list[str]:
        raise ConnectionError("redis is gone")

    async def seed_spent(self, scope: str, spent_micro: int, ttl_s: float) -> None:
        return None


@pytest.fixture
async def gateway(tmp_path: Path, upstreams: tuple[Upstream, Upstream]) -> Any:
    settings = Settings.model_validate(
        {"data_dir": str(tmp_path), "models": [{**openai_alias("m", upstreams[0], "ok"), "rpm": 100}]}
    )
    gw = Gateway(settings, env={"GOLDENPATH_ADMIN_KEY": "gp-in-process-admin-key"})
    await gw.startup()
    yield gw
    await gw.shutdown()


async def test_governor_outage_is_a_503_and_recorded(gateway: Gateway) -> None:
    gateway.governance.governor = BrokenGovernor()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
        r = await client.post(
            "/v1/chat/completions",
            headers={"Authorization": "Bearer gp-in-process-admin-key"},
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "governance_unavailable" and r.headers["retry-after"] == "1"
    await gateway.recorder.flush()
    assert [x.status for x in gateway.store.latest_requests(5)] == [503]


async def test_unexpected_errors_are_a_500_with_an_openai_body(gateway: Gateway) -> None:
    async def explode(*_args: Any, **_kw: Any) -> Any:
        raise KeyError("bug")

    gateway.router.call = explode  # type: ignore[method-assign]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
        r = await client.post(
            "/v1/chat/completions",
            headers={"Authorization": "Bearer gp-in-process-admin-key"},
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error" and r.json()["error"]["type"] == "api_error"
    await gateway.recorder.flush()
    assert [(x.status, x.error_type) for x in gateway.store.latest_requests(5)] == [(500, "internal_error")]
