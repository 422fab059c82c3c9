"""GGUF models run in process by llama.cpp, through the prebuilt ``xllamacpp`` binding.

xllamacpp embeds llama.cpp's server engine: requests are queued into ``n_parallel`` slots decoded
together, so concurrent calls are safe; the native call releases the GIL. Each call blocks a worker
thread of this provider's own pool (so it never starves the event loop's default executor), and a
stream hands chunks to the event loop as they are produced. Returning ``True`` from the stream
callback cancels the task inside llama.cpp, which is how a client disconnect stops generation.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from goldenpath.config import LlamaCppDeployment
from goldenpath.providers._base import (
    InvalidRequestForProvider,
    Operation,
    Provider,
    ProviderError,
    ProviderNotReady,
    Response,
    usage_from,
)
from goldenpath.providers._packaged import gemma3_270m_gguf, smollm2_gguf

_END = object()


def resolve_model_path(config: LlamaCppDeployment, data_dir: Path) -> Path:
    if config.model_path is not None:
        return config.model_path
    if config.model == "smollm2-135m-instruct":
        return smollm2_gguf()
    if config.model == "gemma-3-270m":
        return gemma3_270m_gguf(data_dir)
    raise ValueError(
        f"llamacpp model {config.model!r} is not built in (smollm2-135m-instruct, gemma-3-270m); set model_path"
    )


class LlamaCppProvider(Provider):
    def __init__(self, name: str, config: LlamaCppDeployment, data_dir: Path) -> None:
        self.name = name
        self.config = config
        self.data_dir = data_dir
        self.operations = frozenset({"chat", "completions"} if config.chat else {"completions"})
        self._server: Any = None
        self._error: str | None = None
        # One worker per slot plus room for queued requests waiting inside llama.cpp.
        self._pool = ThreadPoolExecutor(max_workers=config.n_parallel * 8, thread_name_prefix=f"llama-{name}")

    @property
    def ready(self) -> bool:
        return self._server is not None

    def _load(self) -> Any:
        import xllamacpp

        path = resolve_model_path(self.config, self.data_dir)
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = self.config.n_ctx * self.config.n_parallel
        params.n_parallel = self.config.n_parallel
        params.n_predict = self.config.default_max_tokens
        threads = self.config.n_threads or max(1, min(4, os.cpu_count() or 1))
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.use_jinja = True
        params.verbosity = -1
        # The engine also opens a loopback HTTP listener; lock it with a key nobody knows.
        params.api_keys = [secrets.token_urlsafe(32)]
        return xllamacpp.Server(params)

    async def start(self) -> None:
        try:
            self._server = await asyncio.get_running_loop().run_in_executor(self._pool, self._load)
        except Exception as exc:
            self._error = f"{self.name}: cannot load model: {exc}"
            raise

    async def close(self) -> None:
        self._server = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _prepare(self, op: Operation, body: dict[str, Any]) -> dict[str, Any]:
        if op not in self.operations:
            if op == "chat":
                raise InvalidRequestForProvider(
                    f"model {self.config.model} is a base model without a chat template; "
                    "use /v1/completions with a prompt",
                    param="model",
                    deployment=self.name,
                )
            raise InvalidRequestForProvider(f"{self.name} does not serve {op}", deployment=self.name)
        if self._server is None:
            raise ProviderNotReady(self._error or f"{self.name}: model is still loading", deployment=self.name)
        body = dict(body)
        if "max_completion_tokens" in body:
            body["max_tokens"] = body.pop("max_completion_tokens")
        return body

    def _handler(self, op: Operation) -> Any:
        return self._server.handle_chat_completions if op == "chat" else self._server.handle_completions

    def _finish(self, out: Any) -> dict[str, Any]:
        if not isinstance(out, dict):
            raise ProviderError(f"{self.name}: unexpected engine output", deployment=self.name)
        err = out.get("error")
        if isinstance(err, dict):
            message = str(err.get("message", "engine error"))
            if err.get("type") == "invalid_request_error" or err.get("code") == 400:
                raise InvalidRequestForProvider(message, deployment=self.name)
            raise ProviderError(f"{self.name}: {message}", deployment=self.name)
        out["model"] = self.config.model
        out.pop("timings", None)
        return out

    def _run(self, op: Operation, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._finish(self._handler(op)(body))
        except ValueError as exc:  # the binding's own request validation
            raise InvalidRequestForProvider(str(exc), deployment=self.name) from exc

    async def call(self, op: Operation, body: dict[str, Any]) -> Response:
        prepared = self._prepare(op, body)
        out = await asyncio.get_running_loop().run_in_executor(self._pool, self._run, op, prepared)
        return Response(body=orjson.dumps(out), usage=usage_from(out))

    async def stream(self, op: Operation, body: dict[str, Any]) -> AsyncIterator[bytes]:
        prepared = self._prepare(op, body)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def on_chunk(chunk: Any) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return cancelled.is_set()

        def produce() -> None:
            try:
                out = self._handler(op)(prepared, on_chunk)
                if isinstance(out, dict) and "error" in out:
                    self._finish(out)
            except ValueError as exc:
                loop.call_soon_threadsafe(queue.put_nowait, InvalidRequestForProvider(str(exc), deployment=self.name))
            except Exception as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        worker = loop.run_in_executor(self._pool, produce)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, Exception):
                    raise item
                chunk = self._finish(item)
                yield orjson.dumps(chunk)
        finally:
            # The engine sees the flag at its next token and ends the task; the worker then returns.
            cancelled.set()
            del worker
