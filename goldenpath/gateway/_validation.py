"""Request schemas of the OpenAI API, checked before any routing. Unknown fields pass through."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from goldenpath.gateway._errors import APIError, invalid_request


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _FunctionDef(_Open):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


class _Tool(_Open):
    type: Literal["function"]
    function: _FunctionDef


class _Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _role_rules(self) -> _Message:
        if self.role in ("system", "developer", "user") and self.content is None:
            raise ValueError(f"a {self.role} message needs 'content'")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs 'tool_call_id'")
        if self.role == "assistant" and self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs 'content' or 'tool_calls'")
        return self


class _StreamOptions(_Open):
    include_usage: bool = False


class _ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class _Sampling(_Open):
    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @model_validator(mode="after")
    def _common_rules(self) -> _Sampling:
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError("'stop' takes at most 4 sequences")
        if self.stream_options is not None and not self.stream:
            raise ValueError("'stream_options' is only allowed when 'stream' is true")
        return self


class ChatRetrieval(BaseModel):
    """The ``retrieval`` extension of a chat request: ground the answer in a collection, searched as the caller."""

    model_config = ConfigDict(extra="forbid", strict=True)

    collection: str = Field(min_length=1)
    k: int | None = Field(default=None, ge=1, le=100)
    filter: dict[str, Any] | None = None
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"


class ChatCompletionRequest(_Sampling):
    messages: list[_Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[_Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    retrieval: ChatRetrieval | None = None
    response_format: _ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    suffix: str | None = None


class EmbeddingRequest(_Open):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class GuardCheckRequest(_Open):
    model_config = ConfigDict(extra="forbid", strict=True)

    input: str = Field(min_length=1)
    stage: Literal["input", "context", "output"] = "input"


def parse_json(raw: bytes) -> Any:
    """The JSON body, or a 400 saying why it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid_request(
            f"We could not parse the JSON body of your request: {exc}.", code="invalid_json"
        ) from None


def _param(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        # pydantic names union members in the location ("str", "list[str]"); drop them.
        if isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool", "dict")):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def validate(schema: type[BaseModel], body: Any) -> None:
    """Raise a 400 naming the first offending parameter."""
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.", code="invalid_json")
    try:
        schema.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = _param(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            raise APIError(
                400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
            ) from None
        where = f"'{param}'" if param else "the request"
        raise invalid_request(f"Invalid value for {where}: {msg}.", param=param or None) from None
