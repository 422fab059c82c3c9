"""Every request leaves a record, written in batches off the request path and flushed on shutdown."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import openai

from goldenpath.config import load_settings
from goldenpath.store import Store
from tests.conftest import ADMIN_KEY, Upstream, openai_alias

MESSAGES = [{"role": "user", "content": "hi"}]


def test_records_flushed_on_graceful_shutdown(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    a, _ = upstreams
    # A long flush interval: only the shutdown flush can write these.
    gw = gateway_factory(
        {
            "store": {"record_flush_interval_s": 3600},
            "models": [openai_alias("m", a, "ok"), openai_alias("bad", a, "error400")],
        }
    )
    client = openai.OpenAI(base_url=gw.base_url, api_key=ADMIN_KEY, max_retries=0)
    for _ in range(25):
        client.chat.completions.create(model="m", messages=MESSAGES)
    list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    httpx.post(
        gw.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        json={"model": "bad", "messages": MESSAGES},
    )
    gw.stop()
    store = Store(load_settings(gw.config, env={"GOLDENPATH_HOME": str(gw.home)}).database_url)
    records = store.latest_requests(100)
    assert len(records) == 27
    ok = [r for r in records if r.status == 200]
    assert len(ok) == 26
    first = ok[0]
    assert first.key_id == "admin" and first.model == "m" and first.deployment == "m#0:openai"
    assert first.prompt_tokens == 7 and first.completion_tokens == 5 and first.attempts == 1
    assert first.latency_ms > 0 and first.overhead_ms is not None and first.overhead_ms >= 0
    streamed = [r for r in records if r.stream]
    assert len(streamed) == 1 and streamed[0].ttft_ms is not None and streamed[0].completion_tokens == 5
    failed = [r for r in records if r.status != 200]
    assert failed[0].status == 400 and failed[0].error_type == "bad_messages"


def test_requests_tail_cli(gateway_factory: Any, upstreams: tuple[Upstream, Upstream]) -> None:
    a, _ = upstreams
    gw = gateway_factory({"models": [openai_alias("m", a, "ok")]})
    openai.OpenAI(base_url=gw.base_url, api_key=ADMIN_KEY).chat.completions.create(model="m", messages=MESSAGES)
    gw.stop()
    out = subprocess.run(
        [sys.executable, "-m", "goldenpath", "requests", "tail", "--config", str(gw.config), "-n", "5"],
        capture_output=True,
        text=True,
        env={"GOLDENPATH_HOME": str(gw.home), "PATH": "/usr/bin"},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    assert " 200 " in line and "m#0:openai" in line and "in=7" in line and "out=5" in line


def test_records_survive_a_failing_store_write(tmp_path: Any) -> None:
    import asyncio

    from goldenpath.store import RequestRecord, RequestRecorder

    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    store.migrate()
    broken = {"on": True}
    original = store.insert_requests

    def insert(records: Any) -> None:
        if broken["on"]:
            raise OSError("disk full")
        original(records)

    store.insert_requests = insert  # type: ignore[method-assign]

    async def run() -> None:
        rec = RequestRecorder(store, flush_interval_s=60, batch_size=1000, buffer_max=1000)
        for i in range(5):
            rec.add(
                RequestRecord(id=f"r{i}", ts=float(i), day="1970-01-01", endpoint="chat", status=200, latency_ms=1.0)
            )
        await rec.flush()  # fails, keeps them
        broken["on"] = False
        rec.add(RequestRecord(id="r5", ts=5.0, day="1970-01-01", endpoint="chat", status=200, latency_ms=1.0))
        await rec.close()

    asyncio.run(run())
    assert [r.id for r in store.latest_requests(10)] == [f"r{i}" for i in range(6)]
