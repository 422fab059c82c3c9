"""A real OpenAI-compatible server on loopback whose behaviour is chosen by the model name.

Run: ``python tests/fake_upstream.py PORT``. Models:
``ok`` answers; ``slow`` answers after 0.2 s; ``error500``/``error429``/``error400`` fail with that status;
``stall`` never answers; ``drop`` closes the connection before answering (for streams: after two
chunks); ``flaky`` fails every other call with 503. Any request with ``"user": "force-400"`` gets a
400. ``GET /_calls`` returns the calls per model, ``POST /_reset`` clears them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter

from aiohttp import web

calls: Counter[str] = Counter()


def _usage() -> dict[str, int]:
    return {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


async def _fail(model: str, request: web.Request, body: dict[str, object]) -> web.StreamResponse | None:
    if body.get("user") == "force-400":
        return web.json_response({"error": {"message": "refused", "type": "invalid_request_error"}}, status=400)
    if model == "error500":
        return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500)
    if model == "error429":
        return web.json_response({"error": {"message": "slow down", "type": "rate_limit_error"}}, status=429)
    if model == "error400":
        err = {
            "message": "upstream says: bad messages",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "bad_messages",
        }
        return web.json_response({"error": err}, status=400)
    if model == "flaky" and calls[model] % 2 == 1:
        return web.json_response({"error": {"message": "unavailable"}}, status=503)
    if model == "stall":
        await asyncio.sleep(3600)
    if model == "slow":
        await asyncio.sleep(0.2)
    return None


def _answer(model: str) -> str:
    # "cite": an answer that cites sources 1 and 3 of a grounded prompt, and a number with no source
    return "It is in the handbook [1][3] and nowhere else [9]." if model == "cite" else "hello from " + model


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    model = body.get("model", "")
    calls[model] += 1
    failed = await _fail(model, request, body)
    if failed is not None:
        return failed
    if model == "drop" and not body.get("stream"):
        assert request.transport is not None
        request.transport.close()
        return web.Response()
    if not body.get("stream"):
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": _answer(model)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": _usage(),
                "echo": {
                    "seen_model": model,
                    "tools": body.get("tools"),
                    "seed": body.get("seed"),
                    "last_user": [m.get("content") for m in body.get("messages", []) if m.get("role") == "user"][-1:],
                    "system": [m.get("content") for m in body.get("messages", []) if m.get("role") == "system"],
                },
            }
        )
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)

    def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
        c = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(c).encode() + b"\n\n"

    await resp.write(chunk({"role": "assistant", "content": ""}))
    for i, word in enumerate(["one", " two", " three", " four", " five"]):
        if model == "drop" and i == 2:
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.write(chunk({"content": word}))
    await resp.write(chunk({}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        u = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [],
            "usage": _usage(),
        }
        await resp.write(b"data: " + json.dumps(u).encode() + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def embeddings(request: web.Request) -> web.Response:
    body = await request.json()
    model = body.get("model", "")
    calls[model] += 1
    failed = await _fail(model, request, body)
    if failed is not None:
        return failed  # type: ignore[return-value]
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(inputs))]
    return web.json_response(
        {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 3, "total_tokens": 3}}
    )


async def get_calls(_request: web.Request) -> web.Response:
    return web.json_response(dict(calls))


async def reset(_request: web.Request) -> web.Response:
    calls.clear()
    return web.json_response({})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/_calls", get_calls)
    app.router.add_post("/_reset", reset)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
