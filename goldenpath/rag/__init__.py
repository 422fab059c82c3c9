"""Retrieval: collections of documents with access lists, hybrid (dense + BM25) search that applies the caller's
access inside the search, and the pieces of grounded answers."""

from goldenpath.rag._chunk import chunk_document
from goldenpath.rag._embedding import Embedding, minilm_embedding
from goldenpath.rag._exceptions import (
    CollectionExists,
    CollectionNotFound,
    DocumentNotFound,
    IngestError,
    InvalidFilter,
    InvalidQuery,
    RetrievalError,
)
from goldenpath.rag._parse import parse_path, parse_payload, parse_upload, supported_extensions
from goldenpath.rag._registry import DocumentInfo
from goldenpath.rag._retriever import (
    CollectionInfo,
    DocumentResult,
    Hit,
    IngestReport,
    Reranker,
    Retriever,
)
from goldenpath.rag._settings import CollectionSpec, SearchSettings
from goldenpath.rag._types import AccessList, Chunk, Document, Identity

__all__ = [
    "AccessList",
    "Chunk",
    "CollectionExists",
    "CollectionInfo",
    "CollectionNotFound",
    "CollectionSpec",
    "Document",
    "DocumentInfo",
    "DocumentNotFound",
    "DocumentResult",
    "Embedding",
    "Hit",
    "Identity",
    "IngestError",
    "IngestReport",
    "InvalidFilter",
    "InvalidQuery",
    "Reranker",
    "RetrievalError",
    "Retriever",
    "SearchSettings",
    "chunk_document",
    "minilm_embedding",
    "parse_path",
    "parse_payload",
    "parse_upload",
    "supported_extensions",
]
