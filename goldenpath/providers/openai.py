"""Any OpenAI-compatible HTTP upstream, through one pooled aiohttp session per deployment."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from goldenpath.config import OpenAIDeployment
from goldenpath.providers._base import (
    Operation,
    Provider,
    Response,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    usage_from,
)

_PATHS: dict[Operation, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}


class OpenAIProvider(Provider):
    operations = frozenset(_PATHS)

    def __init__(self, name: str, config: OpenAIDeployment) -> None:
        self.name = name
        self.config = config
        base = config.base_url.rstrip("/")
        self._urls = {op: base + path for op, path in _PATHS.items()}
        self._headers = {"Content-Type": "application/json", **config.headers}
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise ValueError(
                    f"deployment {name}: environment variable {config.api_key_env} (api_key_env) is not set"
                )
            self._headers["Authorization"] = f"Bearer {key}"
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.config.max_connections, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.config.connect_timeout_s, sock_read=self.config.timeout_s
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers=self._headers,
            json_serialize=lambda o: orjson.dumps(o).decode(),
            auto_decompress=True,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"provider {self.name} used before start()")
        return self._session

    def _error(self, exc: BaseException) -> Exception:
        if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
            return UpstreamTimeout(f"{self.name}: upstream timed out", deployment=self.name)
        if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError):
            return UpstreamConnectError(f"{self.name}: cannot reach upstream: {exc}", deployment=self.name)
        return UpstreamConnectError(f"{self.name}: upstream connection failed: {exc!r}", deployment=self.name)

    async def _status_error(self, resp: aiohttp.ClientResponse) -> UpstreamStatusError:
        body = await resp.read()
        detail = body[:500].decode("utf-8", "replace")
        return UpstreamStatusError(
            f"{self.name}: upstream answered HTTP {resp.status}: {detail}",
            status=resp.status,
            body=body,
            deployment=self.name,
        )

    async def call(self, op: Operation, body: dict[str, Any]) -> Response:
        try:
            async with self.session.post(self._urls[op], data=orjson.dumps(body)) as resp:
                if resp.status >= 400:
                    raise await self._status_error(resp)
                raw = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._error(exc) from exc
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError(f"{self.name}: upstream sent invalid JSON", deployment=self.name) from exc
        return Response(body=raw, usage=usage_from(parsed))

    async def stream(self, op: Operation, body: dict[str, Any]) -> AsyncIterator[bytes]:
        try:
            async with self.session.post(self._urls[op], data=orjson.dumps(body)) as resp:
                if resp.status >= 400:
                    raise await self._status_error(resp)
                if not resp.headers.get("Content-Type", "").startswith("text/event-stream"):
                    raise UpstreamProtocolError(
                        f"{self.name}: expected an event stream, got {resp.headers.get('Content-Type')!r}",
                        deployment=self.name,
                    )
                async for line in resp.content:
                    if not line.startswith(b"data:"):
                        continue  # blank separators, comments, event: and id: fields
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        return
                    if payload:
                        yield payload
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._error(exc) from exc
        raise UpstreamConnectError(f"{self.name}: stream ended without [DONE]", deployment=self.name)
