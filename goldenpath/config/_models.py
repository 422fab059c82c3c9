"""The configuration schema: one YAML file, validated by pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RoutingStrategy = Literal["priority", "weighted", "least-latency", "lowest-cost"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _DeploymentBase(_Strict):
    name: str | None = Field(default=None, description="Unique id; derived from provider and model if unset.")
    weight: float = Field(default=1.0, gt=0, description="Share of traffic under the weighted strategy.")
    priority: int = Field(default=0, description="Lower is tried first under the priority strategy.")
    input_cost_per_mtok: float = Field(default=0.0, ge=0, description="USD per million input tokens.")
    output_cost_per_mtok: float = Field(default=0.0, ge=0, description="USD per million output tokens.")

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict) and "api_key" in data:
            raise ValueError(
                "secrets may not be written in the config file; set api_key_env to the name of an "
                "environment variable that holds the key"
            )
        return data


class OpenAIDeployment(_DeploymentBase):
    """Any OpenAI-compatible HTTP upstream (vLLM, TGI, llama.cpp server, Ollama, hosted APIs)."""

    provider: Literal["openai"]
    base_url: str = Field(pattern=r"^https?://", description="Up to and including /v1.")
    model: str = Field(min_length=1, description="The model name the upstream expects.")
    api_key_env: str | None = Field(default=None, description="Environment variable holding the API key.")
    headers: dict[str, str] = Field(default_factory=dict)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    timeout_s: float = Field(default=60.0, gt=0, description="Read timeout: first byte and gaps between chunks.")
    max_connections: int = Field(default=256, ge=1)


class LlamaCppDeployment(_DeploymentBase):
    """A GGUF model run in process by llama.cpp (xllamacpp)."""

    provider: Literal["llamacpp"]
    model: str = Field(min_length=1, description="A built-in model name, or any name when model_path is set.")
    model_path: Path | None = None
    chat: bool = Field(default=True, description="False for base models without a chat template.")
    n_ctx: int = Field(default=4096, ge=256)
    n_parallel: int = Field(default=2, ge=1, le=64, description="Sequences decoded together.")
    n_threads: int | None = Field(default=None, ge=1)
    default_max_tokens: int = Field(default=1024, ge=1, description="Cap when the request sets none.")


class OnnxEmbeddingDeployment(_DeploymentBase):
    """A sentence-transformers embedding model on onnxruntime."""

    provider: Literal["onnx-embeddings"]
    model: str = Field(min_length=1)
    model_path: Path | None = None
    tokenizer_path: Path | None = None
    max_length: int = Field(default=256, ge=8, le=512)
    n_threads: int = Field(default=1, ge=1)
    batch_size: int = Field(default=32, ge=1)


Deployment = Annotated[OpenAIDeployment | LlamaCppDeployment | OnnxEmbeddingDeployment, Field(discriminator="provider")]


class CacheConfig(_Strict):
    """Response caching. Always partitioned by tenant; off unless enabled."""

    enabled: bool = False
    semantic: bool = Field(default=False, description="Also answer close paraphrases (embedding similarity).")
    semantic_threshold: float = Field(
        default=0.90, gt=0, le=1, description="Cosine similarity for a hit (see docs/benchmarks.md for the trade-off)."
    )
    semantic_model: Literal["all-minilm-l6-v2"] = Field(
        default="all-minilm-l6-v2", description="Built-in embedding model to compare with."
    )
    ttl_s: float = Field(default=3600.0, gt=0)
    max_entries: int = Field(default=2_000, ge=1, description="Per tenant; the oldest go first.")
    max_entry_bytes: int = Field(default=262_144, ge=1024, description="Larger answers are not cached.")
    deterministic_only: bool = Field(
        default=True, description="Cache only requests with temperature 0 (sampled answers are not reused)."
    )


class GuardConfig(_Strict):
    """Guards on the request path: user messages (input stage), tool results (context stage) and
    answers, streamed ones included (output stage). ``policy`` is a ``goldenpath.guard.GuardPolicy``
    (detectors, thresholds, actions and stages per detector, stream checking), validated at start;
    ``{}`` means the default policy (see docs/guard.md, "Default guards")."""

    enabled: bool = False
    policy: dict[str, Any] = Field(default_factory=dict)


class ModelAlias(_Strict):
    """A model name clients call, served by one or more deployments."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    strategy: RoutingStrategy = "priority"
    deployments: list[Deployment] = Field(min_length=1)
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute for this alias, all callers.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute for this alias, all callers.")
    cache: CacheConfig | None = Field(default=None, description="Overrides the top-level cache section.")
    guard: GuardConfig | None = Field(default=None, description="Overrides the top-level guard section.")


class ServerConfig(_Strict):
    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)


class RoutingConfig(_Strict):
    max_attempts: int = Field(default=3, ge=1, le=10, description="Attempts per request across deployments.")
    backoff_base_s: float = Field(default=0.05, ge=0)
    backoff_max_s: float = Field(default=2.0, ge=0)
    request_timeout_s: float = Field(default=300.0, gt=0, description="Whole-request deadline.")
    breaker_failure_threshold: int = Field(default=5, ge=1, description="Consecutive failures that open it.")
    breaker_cooldown_s: float = Field(default=30.0, gt=0, description="Open time before a half-open probe.")
    latency_ewma_alpha: float = Field(default=0.2, gt=0, le=1)


class StoreConfig(_Strict):
    url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite in the data directory if unset.")
    record_flush_interval_s: float = Field(default=0.5, gt=0)
    record_batch_size: int = Field(default=1000, ge=1)
    record_buffer_max: int = Field(default=200_000, ge=1000, description="Records held while the store is down.")


def _default_models() -> list[ModelAlias]:
    return [
        ModelAlias(
            name="smollm2-135m-instruct",
            deployments=[LlamaCppDeployment(provider="llamacpp", model="smollm2-135m-instruct")],
        ),
        ModelAlias(
            name="gemma-3-270m",
            deployments=[LlamaCppDeployment(provider="llamacpp", model="gemma-3-270m", chat=False)],
        ),
        ModelAlias(
            name="all-minilm-l6-v2",
            deployments=[OnnxEmbeddingDeployment(provider="onnx-embeddings", model="all-minilm-l6-v2")],
        ),
    ]


class PolicyConfig(_Strict):
    """Cedar authorization. With no ``files`` it is off and every authenticated key may do what its
    scopes allow (today's behaviour); with files, Cedar decides every request and denies by default."""

    files: list[Path] = Field(
        default_factory=list,
        description="Cedar policy files, or directories whose *.cedar files (recursively, sorted) are read.",
    )
    schema_file: Path | None = Field(
        default=None, description="Cedar schema (.cedarschema text or .json); the shipped schema if unset."
    )
    entities_file: Path | None = Field(
        default=None,
        description="Cedar JSON entities that do not come from the key: group nesting, resource attributes.",
    )
    reload_interval_s: float = Field(
        default=0.0, ge=0, description="How often the gateway checks the files for changes; 0: read only at start."
    )
    cache_size: int = Field(default=100_000, ge=0, description="Decisions kept until policies change; 0: no cache.")

    @property
    def enabled(self) -> bool:
        return bool(self.files)

    def relative_to(self, base: Path) -> PolicyConfig:
        """The same configuration with relative paths taken from ``base`` (the config file's folder)."""

        def anchored(path: Path | None) -> Path | None:
            return None if path is None or path.is_absolute() else base / path

        return self.model_copy(
            update={
                "files": [anchored(f) or f for f in self.files],
                "schema_file": anchored(self.schema_file) or self.schema_file,
                "entities_file": anchored(self.entities_file) or self.entities_file,
            }
        )


class RetrievalConfig(_Strict):
    """Collections, ingestion and search (``/v1/collections``, ``/v1/retrieve``, chat ``retrieval``)."""

    enabled: bool = True
    embedding_model: str | None = Field(
        default=None,
        description="An alias with an embeddings deployment that embeds chunks and queries; the built-in MiniLM "
        "in process if unset. A collection is searched with the model it was built with.",
    )
    search: dict[str, Any] = Field(
        default_factory=dict, description="goldenpath.rag.SearchSettings: rrf_k, weights, prefetch; checked at start."
    )
    default_k: int = Field(default=5, ge=1, le=100, description="Chunks a chat request's retrieval gets by default.")
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, description="Largest document upload.")
    qdrant_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Keep collections on this Qdrant server or cluster (>= 1.16; install goldenpath[qdrant]) "
        "instead of the embedded engine in the data directory.",
    )
    qdrant_api_key_env: str | None = Field(default=None, description="Environment variable holding Qdrant's key.")
    qdrant_prefix: str = Field(default="gp_", pattern=r"^[A-Za-z0-9_-]{0,32}$", description="Collection name prefix.")


class Settings(_Strict):
    """The whole configuration. Every section has working defaults."""

    data_dir: Path = Path(".goldenpath")
    server: ServerConfig = Field(default_factory=ServerConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    redis_url: str | None = Field(
        default=None, description="Redis for limits, budgets and cache shared by replicas; in-process if unset."
    )
    redis_prefix: str = Field(default="gp", pattern=r"^[A-Za-z0-9_.-]+$", description="Namespace of our Redis keys.")
    cache: CacheConfig = Field(default_factory=CacheConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    models: list[ModelAlias] = Field(default_factory=_default_models)

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for alias in self.models:
            if alias.name in seen:
                raise ValueError(f"model name {alias.name!r} is defined twice")
            seen.add(alias.name)
        names = [d.name for a in self.models for d in a.deployments if d.name]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"deployment names must be unique; repeated: {', '.join(dupes)}")
        embedding = self.retrieval.embedding_model
        if embedding is not None and embedding not in seen:
            raise ValueError(f"retrieval.embedding_model {embedding!r} is not a model alias defined under models")
        return self

    @property
    def database_url(self) -> str:
        return self.store.url or f"sqlite:///{(self.data_dir / 'goldenpath.db').resolve()}"
