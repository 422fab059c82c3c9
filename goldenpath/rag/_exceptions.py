"""Retrieval errors: what the caller did wrong, said so that it can be fixed."""

from __future__ import annotations


class RetrievalError(Exception):
    """Base of every retrieval error."""


class IngestError(RetrievalError):
    """A file or document could not be ingested: ``source`` names it, the message says why.

    Raised before anything of that document is written, so the collection is left as it was."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class CollectionNotFound(RetrievalError):
    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} does not exist")
        self.name = name


class CollectionExists(RetrievalError):
    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} already exists")
        self.name = name


class DocumentNotFound(RetrievalError):
    def __init__(self, collection: str, document_id: str) -> None:
        super().__init__(f"document {document_id!r} is not in collection {collection!r}")
        self.collection = collection
        self.document_id = document_id


class InvalidFilter(RetrievalError):
    """A metadata filter that cannot be applied; the message says which key and why."""


class InvalidQuery(RetrievalError):
    """A search request that cannot run (empty query, k out of range, unknown mode)."""
