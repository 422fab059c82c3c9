"""Parameters of a collection (fixed when it is created) and of its searches (tunable at any time)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from goldenpath.config import RetrievalConfig
    from goldenpath.rag._server_index import QdrantServer


class CollectionSpec(BaseModel):
    """How a collection cuts and indexes text. Stored with the collection: changing any of these means
    re-ingesting, so they are fixed at creation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chunk_max_tokens: int = Field(256, ge=16, le=8192)
    chunk_overlap: int = Field(32, ge=0)
    bm25_k1: float = Field(1.2, ge=0.0, le=10.0)
    bm25_b: float = Field(0.75, ge=0.0, le=1.0)
    # the mean chunk length in BM25 tokens (words less stopwords); 150 is what a 256-token chunk of prose holds
    bm25_avg_len: float = Field(150.0, gt=0.0)

    @model_validator(mode="after")
    def _overlap_fits(self) -> CollectionSpec:
        if self.chunk_overlap >= self.chunk_max_tokens // 2:
            raise ValueError(
                f"chunk_overlap must be below chunk_max_tokens // 2 ({self.chunk_max_tokens // 2}), "
                f"got {self.chunk_overlap}"
            )
        return self


class SearchSettings(BaseModel):
    """Hybrid fusion: each branch (dense, BM25) returns its best ``prefetch`` allowed chunks; a chunk scores
    ``sum(weight / (rrf_k + rank))`` over the branches that found it (rank from 1).

    The defaults were chosen on SciFact (see docs/benchmarks.md): RRF k between 10 and 30 beat the usual 60
    on both halves of the queries; equal weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rrf_k: float = Field(20.0, ge=0.0)
    dense_weight: float = Field(1.0, ge=0.0)
    bm25_weight: float = Field(1.0, ge=0.0)
    prefetch: int = Field(100, ge=1, le=10_000)
    hnsw_ef: int | None = Field(None, ge=1)  # None: the engine's default (exact below its full-scan threshold)
    rerank_depth: int = Field(50, ge=1, le=1000)  # fused candidates handed to the reranker, when there is one


def qdrant_server(config: RetrievalConfig, env: Mapping[str, str]) -> QdrantServer | None:
    """Where collections live when ``retrieval.qdrant_url`` is set (qdrant-client is imported only then)."""
    if config.qdrant_url is None:
        return None
    try:
        from goldenpath.rag._server_index import QdrantServer
    except ImportError as exc:
        raise ValueError(
            f"retrieval.qdrant_url needs qdrant-client: pip install 'goldenpath[qdrant]' ({exc})"
        ) from None
    key_env = config.qdrant_api_key_env
    if key_env is not None and not env.get(key_env):
        raise ValueError(f"retrieval.qdrant_api_key_env names {key_env}, which is not set")
    api_key = env.get(key_env) if key_env else None
    return QdrantServer(url=config.qdrant_url, api_key=api_key, prefix=config.qdrant_prefix)
