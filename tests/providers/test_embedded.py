"""The embedded models answering for real through the gateway (llama.cpp and onnxruntime)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from goldenpath.store import Store
from tests.conftest import ADMIN_KEY, RunningGateway, start_gateway

pytestmark = pytest.mark.models

CONFIG = {
    "models": [
        {
            "name": "smollm2-135m-instruct",
            "deployments": [{"provider": "llamacpp", "model": "smollm2-135m-instruct", "n_ctx": 2048}],
        },
        {
            "name": "gemma-3-270m",
            "deployments": [
                {
                    "provider": "llamacpp",
                    "model": "gemma-3-270m",
                    "chat": False,
                    "n_ctx": 1024,
                    "n_parallel": 1,
                }
            ],
        },
        {
            "name": "all-minilm-l6-v2",
            "deployments": [{"provider": "onnx-embeddings", "model": "all-minilm-l6-v2"}],
        },
    ]
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    g = start_gateway(tmp_path_factory.mktemp("embedded"), CONFIG)
    yield g
    g.stop()


@pytest.fixture
def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=ADMIN_KEY, max_retries=0)


def test_chat(client: openai.OpenAI) -> None:
    done = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        max_tokens=24,
        temperature=0,
        seed=1,
    )
    assert "Paris" in (done.choices[0].message.content or "")
    assert done.model == "smollm2-135m-instruct"
    assert done.usage is not None and 0 < done.usage.completion_tokens <= 24


def test_stream_token_by_token_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": "Count from one to ten."}],
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 8  # one event per token, not one blob
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16


def test_concurrent_requests_are_safe(gw: RunningGateway) -> None:
    import asyncio

    async def run() -> list[str]:
        client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=ADMIN_KEY, max_retries=0)
        questions = [f"What is {i} plus {i}?" for i in range(6)]
        outs = await asyncio.gather(
            *[
                client.chat.completions.create(
                    model="smollm2-135m-instruct",
                    max_tokens=12,
                    temperature=0,
                    messages=[{"role": "user", "content": q}],
                )
                for q in questions
            ]
        )
        await client.close()
        return [o.choices[0].message.content or "" for o in outs]

    answers = asyncio.run(run())
    assert len(answers) == 6 and all(answers)


def test_client_disconnect_stops_generation(gw: RunningGateway) -> None:
    with httpx.stream(
        "POST",
        gw.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        json={
            "model": "smollm2-135m-instruct",
            "max_tokens": 1000,
            "stream": True,
            "messages": [{"role": "user", "content": "Write a very long story."}],
        },
        timeout=60,
    ) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i > 4:
                break
    # The request is recorded as abandoned by the client, long before 1,000 tokens could be made.
    store = Store(f"sqlite:///{gw.home / 'goldenpath.db'}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        gone = [x for x in store.latest_requests(50) if x.status == 499]
        if gone:
            assert gone[-1].error_type == "client_disconnected"
            return
        time.sleep(0.2)
    raise AssertionError("no record of the disconnected stream")


def test_gemma_serves_plain_completions_only(client: openai.OpenAI) -> None:
    done = client.completions.create(
        model="gemma-3-270m", prompt="Paris is the capital city of", max_tokens=4, temperature=0
    )
    assert "France" in done.choices[0].text
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemma-3-270m", messages=[{"role": "user", "content": "hi"}])
    assert "does not support chat completions" in info.value.message


def test_embeddings_are_meaningful(client: openai.OpenAI) -> None:
    texts = [
        "A cat sits on the mat.",
        "A kitten is sitting on a rug.",
        "Quarterly revenue rose by 4 percent.",
    ]
    out = client.embeddings.create(model="all-minilm-l6-v2", input=texts)
    v = np.array([d.embedding for d in out.data])
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    sims = v @ v.T
    assert sims[0, 1] > 0.6 > sims[0, 2] + 0.3
    assert out.usage.prompt_tokens > 0


def test_embeddings_base64_and_bad_input(client: openai.OpenAI, gw: RunningGateway) -> None:
    import base64

    packed = client.embeddings.create(model="all-minilm-l6-v2", input="hello", encoding_format="base64")
    assert isinstance(packed.data[0].embedding, str)
    decoded = np.frombuffer(base64.b64decode(packed.data[0].embedding), dtype=np.float32)
    plain = client.embeddings.create(model="all-minilm-l6-v2", input="hello").data[0].embedding
    assert decoded.shape == (384,) and np.allclose(decoded, plain, atol=1e-6)
    r = httpx.post(
        gw.base_url + "/embeddings",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        json={"model": "all-minilm-l6-v2", "input": [[1, 2, 3]]},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
