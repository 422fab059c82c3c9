"""The one interface every backend implements, and the errors it raises."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

Operation = Literal["chat", "completions", "embeddings"]


class ProviderError(Exception):
    """A backend failed to answer. ``retryable`` says whether another attempt may succeed."""

    retryable: bool = True
    status: int = 502
    code: str = "upstream_error"

    def __init__(self, message: str, *, deployment: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.deployment = deployment


class UpstreamConnectError(ProviderError):
    code = "upstream_connect_error"


class UpstreamTimeout(ProviderError):
    status = 504
    code = "upstream_timeout"


class UpstreamProtocolError(ProviderError):
    """The upstream answered something that is not a valid OpenAI-style response."""

    code = "upstream_bad_response"


class ProviderNotReady(ProviderError):
    status = 503
    code = "model_loading"


class UpstreamStatusError(ProviderError):
    """The upstream answered with an HTTP error status; 429 and 5xx are retryable."""

    def __init__(self, message: str, *, status: int, body: bytes = b"", deployment: str = "") -> None:
        super().__init__(message, deployment=deployment)
        self.upstream_status = status
        self.body = body
        self.retryable = status == 429 or status >= 500
        self.status = status if 400 <= status < 500 else 502
        self.code = "upstream_rate_limited" if status == 429 else "upstream_error"


class InvalidRequestForProvider(ProviderError):
    """The request is valid OpenAI but this backend cannot serve it (client error, not retryable)."""

    retryable = False
    status = 400
    code = "unsupported_parameter"

    def __init__(self, message: str, *, param: str | None = None, deployment: str = "") -> None:
        super().__init__(message, deployment=deployment)
        self.param = param


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(slots=True)
class Response:
    """A complete (non-streamed) answer: the JSON body for the client and the token usage."""

    body: bytes
    usage: Usage | None


def usage_from(obj: Any) -> Usage | None:
    """Read an OpenAI ``usage`` object, tolerating absent or partial ones."""
    if not isinstance(obj, dict):
        return None
    u = obj.get("usage")
    if not isinstance(u, dict):
        return None
    prompt = u.get("prompt_tokens")
    completion = u.get("completion_tokens")
    return Usage(
        prompt_tokens=prompt if isinstance(prompt, int) else 0,
        completion_tokens=completion if isinstance(completion, int) else 0,
    )


class Provider(abc.ABC):
    """One backend deployment. ``body`` is an OpenAI request whose ``model`` is already the backend's name.

    ``stream`` yields the JSON payload of each server-sent event (without ``data:`` and without the
    final ``[DONE]``). Closing the iterator early must stop the backend's work.
    """

    name: str
    operations: frozenset[Operation]

    @property
    def ready(self) -> bool:
        return True

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load models or open pools; called once before serving."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    @abc.abstractmethod
    async def call(self, op: Operation, body: dict[str, Any]) -> Response: ...

    def stream(self, op: Operation, body: dict[str, Any]) -> AsyncIterator[bytes]:
        raise InvalidRequestForProvider(f"{self.name} does not stream {op}", param="stream")
