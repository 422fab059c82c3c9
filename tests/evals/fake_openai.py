"""A tiny OpenAI-compatible chat server on loopback for the runner's tests and benchmark.

It answers with the last message's content (an echo), or with the next of the ``replies`` scripted
for the request's model; it counts the calls and keeps every request body; it can answer the first
``throttle`` calls with 429 and ``retry-after-ms``, delay each answer, refuse (400) a prompt that
starts with ``BAD``, and refuse (400) any ``response_format`` when ``reject_response_format`` is set.
It runs on its own event loop in a thread, so synchronous callers (click's test runner, which runs
its own ``asyncio.run``) can use it too.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web


class FakeUpstream:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls = 0
        self.throttle = 0
        self.base_url = ""
        self.replies: dict[str, list[str]] = {}
        self.requests: list[dict[str, Any]] = []
        self.reject_response_format = False

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        body: dict[str, Any] = await request.json()
        self.requests.append(body)
        if self.throttle > 0:
            self.throttle -= 1
            error = {"error": {"message": "slow down", "type": "rate_limit_error"}}
            return web.json_response(error, status=429, headers={"retry-after-ms": "20"})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.reject_response_format and "response_format" in body:
            refusal = {"message": "response_format is not supported", "type": "invalid_request_error"}
            return web.json_response({"error": refusal}, status=400)
        content = body["messages"][-1]["content"]
        if content.startswith("BAD"):
            return web.json_response({"error": {"message": "refused", "type": "invalid_request_error"}}, status=400)
        scripted = self.replies.get(body["model"])
        if scripted:
            content = scripted.pop(0)
        words = len(content.split())
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": words, "completion_tokens": words, "total_tokens": 2 * words},
            }
        )


@contextmanager
def serve(delay_s: float = 0.0) -> Iterator[FakeUpstream]:
    """Start a ``FakeUpstream`` on a free loopback port; ``base_url`` is set while the block runs."""
    fake = FakeUpstream(delay_s)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    runner = web.AppRunner(app, access_log=None)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port: int = runner.addresses[0][1]
        return port

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
