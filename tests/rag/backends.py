"""The two engines a Retriever runs on, for tests that must hold on both: the embedded engine, and a Qdrant
server as qdrant-client's local mode stands in for it (the same client API and filter semantics on an exact
in-process search; what that does not prove is listed in test_server_index)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from goldenpath.rag import Retriever
from goldenpath.rag._server_index import QdrantServer
from tests.rag.embedders import hashing_embedding

BACKENDS = ["edge", "qdrant-local"]


def open_retriever(backend: str, data_dir: str | Path, **kwargs: Any) -> Retriever:
    """A Retriever with the hashing embedder; ``qdrant-local`` keeps the collections in memory."""
    if backend == "edge":
        return Retriever(data_dir, hashing_embedding(), **kwargs)
    return Retriever(data_dir, hashing_embedding(), qdrant=QdrantServer(path=":memory:"), **kwargs)
