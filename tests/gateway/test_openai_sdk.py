"""The official OpenAI SDK, unchanged, against a running gateway in front of a fake upstream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, RunningGateway, Upstream, openai_alias, start_gateway


@pytest.fixture(scope="module")
def gw(upstreams: tuple[Upstream, Upstream], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    up, _ = upstreams
    config = {
        "server": {"max_body_bytes": 64 * 1024},
        "models": [
            openai_alias("fake-model", up, "ok"),
            openai_alias("embedder", up, "ok"),
            openai_alias("strict-upstream", up, "error400"),
        ],
    }
    g = start_gateway(tmp_path_factory.mktemp("sdk"), config)
    yield g
    g.stop()


@pytest.fixture
def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=ADMIN_KEY, max_retries=0)


MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


def test_sync_chat(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="fake-model", messages=MESSAGES, seed=7)
    done = raw.parse()
    assert done.choices[0].message.content == "hello from ok"
    assert done.usage is not None and done.usage.total_tokens == 12
    assert raw.headers["x-goldenpath-deployment"] == "fake-model#0:openai"
    assert float(raw.headers["x-goldenpath-overhead-ms"]) >= 0
    assert raw.headers["x-request-id"].startswith("req_")


def test_tools_and_sampling_parameters_reach_upstream(gw: RunningGateway) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    r = httpx.post(
        gw.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        json={
            "model": "fake-model",
            "messages": MESSAGES,
            "tools": tools,
            "tool_choice": "auto",
            "seed": 3,
            "temperature": 0.5,
            "top_p": 0.9,
            "max_completion_tokens": 10,
            "stop": ["\n"],
            "response_format": {"type": "json_object"},
        },
    )
    assert r.status_code == 200, r.text
    echo = r.json()["echo"]
    assert echo["seen_model"] == "ok"  # the alias was rewritten to the deployment's model
    assert echo["tools"] == tools and echo["seed"] == 3


async def test_async_chat(gw: RunningGateway) -> None:
    client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=ADMIN_KEY, max_retries=0)
    done = await client.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert done.choices[0].message.content == "hello from ok"
    await client.close()


def test_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="fake-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four five"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_streaming_without_usage_hides_the_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True))
    assert all(c.usage is None and c.choices for c in chunks)


def test_embeddings(client: openai.OpenAI) -> None:
    out = client.embeddings.create(model="embedder", input=["a", "b"])
    assert [d.index for d in out.data] == [0, 1]
    assert out.data[0].embedding == [0.1, 0.2, 0.3]


def test_models_list(client: openai.OpenAI) -> None:
    assert {m.id for m in client.models.list()} == {"fake-model", "embedder", "strict-upstream"}
    assert client.models.retrieve("embedder").id == "embedder"


def test_wrong_key_is_authentication_error(gw: RunningGateway) -> None:
    bad = openai.OpenAI(base_url=gw.base_url, api_key="gp-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert info.value.code == "invalid_api_key"


def test_missing_key_is_401_everywhere_but_probes(gw: RunningGateway) -> None:
    for path in ("/v1/models", "/metrics", "/v1/models/fake-model"):
        r = httpx.get(gw.url + path)
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    assert httpx.post(gw.base_url + "/chat/completions", json={}).status_code == 401
    assert httpx.get(gw.url + "/healthz").status_code == 200
    assert httpx.get(gw.url + "/readyz").status_code == 200


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert info.value.code == "model_not_found"
    assert info.value.body["param"] == "model"  # type: ignore[index]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, ""),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
        ({"stream_options": {"include_usage": True}}, ""),
    ],
)
def test_invalid_parameters_are_bad_requests(gw: RunningGateway, extra: dict[str, object], param: str) -> None:
    body = {"model": "fake-model", "messages": MESSAGES, **extra}
    r = httpx.post(gw.base_url + "/chat/completions", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert (err["param"] or "") == param
    assert err["message"]


def test_missing_required_parameter(gw: RunningGateway) -> None:
    r = httpx.post(
        gw.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        json={"model": "fake-model"},
    )
    assert r.status_code == 400
    assert r.json()["error"] | {} == {
        "message": "Missing required parameter: 'messages'.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "missing_required_parameter",
    }


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b"", b"\xff\xfe"])
def test_malformed_json(gw: RunningGateway, payload: bytes) -> None:
    r = httpx.post(gw.base_url + "/chat/completions", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, content=payload)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_json"


def test_oversized_body(gw: RunningGateway) -> None:
    big = {"model": "fake-model", "messages": [{"role": "user", "content": "x" * 70_000}]}
    r = httpx.post(gw.base_url + "/chat/completions", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, json=big)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"


def test_oversized_chunked_body(gw: RunningGateway) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    r = httpx.post(
        gw.base_url + "/chat/completions", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, content=chunks()
    )
    assert r.status_code == 413


def test_wrong_method_and_unknown_path(gw: RunningGateway) -> None:
    h = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert httpx.get(gw.base_url + "/chat/completions", headers=h).status_code == 405
    r = httpx.get(gw.url + "/v2/nothing", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"


def test_upstream_without_the_route_is_forwarded_as_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.completions.create(model="fake-model", prompt="x")  # the fake upstream has no /v1/completions
    assert "HTTP 404" in info.value.message


def test_upstream_client_error_is_forwarded(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="strict-upstream", messages=MESSAGES)
    assert info.value.code == "bad_messages"
    assert "upstream says" in info.value.message


def test_metrics_are_prometheus_text(gw: RunningGateway, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="fake-model", messages=MESSAGES)
    r = httpx.get(gw.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert (
        'goldenpath_requests_total{deployment="fake-model#0:openai",endpoint="chat",model="fake-model",status="200"}'
        in r.text
    )
    assert "goldenpath_request_latency_seconds_bucket" in r.text
    assert "goldenpath_overhead_seconds_count" in r.text


def test_admin_key_file_is_private_when_generated(tmp_path: Path, upstreams: tuple[Upstream, Upstream]) -> None:
    import os
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text("models: []\n")
    env = {k: v for k, v in os.environ.items() if k != "GOLDENPATH_ADMIN_KEY"}
    env["GOLDENPATH_HOME"] = str(tmp_path / "home")
    from tests.conftest import free_port, wait_http

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "goldenpath", "serve", "--config", str(cfg), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        key_file = tmp_path / "home" / "admin.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text().strip()
        r = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode()
    assert key in out  # printed once on first start
    assert key not in (tmp_path / "home" / "goldenpath.db").read_bytes().decode("latin-1")
