"""A collection's registry in SQLite: what the collection is, which documents it holds (content hash, access
list, metadata, the index points of their chunks), and the journal that makes a write to the index atomic.

A write goes: journal the points to add and remove (``pending``) → add the new points to the index → in one
transaction, update the documents and mark the journal ``committed`` → remove the old points → drop the journal.
Opening a collection finishes what a crash interrupted: a pending entry's added points are removed (the
documents stay as they were), a committed entry's old points are removed (the write stands).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from goldenpath.rag._types import AccessList

_SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    meta_hash TEXT NOT NULL,
    generation INTEGER NOT NULL,
    title TEXT NOT NULL,
    source TEXT NOT NULL,
    acl TEXT NOT NULL,
    metadata TEXT NOT NULL,
    chunks TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    added TEXT NOT NULL,
    removed TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """A document as registered: ``chunks`` are ``(chunk id, point id)`` pairs, one per indexed chunk."""

    id: str
    content_hash: str
    meta_hash: str
    generation: int
    title: str
    source: str
    acl: AccessList
    metadata: dict[str, Any]
    chunks: tuple[tuple[str, str], ...]
    updated_at: float

    @property
    def point_ids(self) -> list[str]:
        return [point for _chunk, point in self.chunks]


def _acl_json(acl: AccessList) -> bytes:
    return orjson.dumps(
        {"principals": sorted(acl.principals), "groups": sorted(acl.groups), "tenants": sorted(acl.tenants)}
    )


def _acl(raw: str) -> AccessList:
    data = orjson.loads(raw)
    return AccessList(
        principals=frozenset(data["principals"]), groups=frozenset(data["groups"]), tenants=frozenset(data["tenants"])
    )


class Registry:
    """Not thread-safe by itself: the collection holds its lock around every call."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def set_info(self, info: dict[str, Any]) -> None:
        with self._transaction():
            for key, value in info.items():
                self._db.execute(
                    "INSERT OR REPLACE INTO info (key, value) VALUES (?, ?)", (key, orjson.dumps(value).decode())
                )

    def info(self) -> dict[str, Any]:
        return {k: orjson.loads(v) for k, v in self._db.execute("SELECT key, value FROM info")}

    def counts(self) -> tuple[int, int]:
        """Documents and chunks."""
        documents = 0
        chunks = 0
        for (raw,) in self._db.execute("SELECT chunks FROM documents"):
            documents += 1
            chunks += len(orjson.loads(raw))
        return documents, chunks

    def get(self, document_ids: Sequence[str]) -> dict[str, DocumentInfo]:
        out: dict[str, DocumentInfo] = {}
        for start in range(0, len(document_ids), 500):
            part = list(document_ids[start : start + 500])
            marks = ",".join("?" * len(part))
            rows = self._db.execute(f"SELECT * FROM documents WHERE id IN ({marks})", part)
            for row in rows:
                record = _record(row)
                out[record.id] = record
        return out

    def document_ids(self) -> Iterator[str]:
        with closing(self._db.execute("SELECT id FROM documents ORDER BY id")) as cursor:
            for (doc_id,) in cursor:
                yield doc_id

    def begin(self, added: Sequence[str], removed: Sequence[str]) -> int:
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO journal (state, added, removed) VALUES ('pending', ?, ?)",
                (orjson.dumps(list(added)).decode(), orjson.dumps(list(removed)).decode()),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def commit(self, entry: int, upserts: Sequence[DocumentInfo], deletes: Sequence[str]) -> None:
        """The documents' new state and the journal's ``committed`` mark, in one transaction."""
        with self._transaction():
            for r in upserts:
                self._db.execute(
                    "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.id,
                        r.content_hash,
                        r.meta_hash,
                        r.generation,
                        r.title,
                        r.source,
                        _acl_json(r.acl).decode(),
                        orjson.dumps(r.metadata).decode(),
                        orjson.dumps([list(c) for c in r.chunks]).decode(),
                        r.updated_at,
                    ),
                )
            for doc_id in deletes:
                self._db.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
            self._db.execute("UPDATE journal SET state = 'committed' WHERE id = ?", (entry,))

    def finish(self, entry: int) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM journal WHERE id = ?", (entry,))

    def unfinished(self) -> list[tuple[int, str, list[str], list[str]]]:
        rows = self._db.execute("SELECT id, state, added, removed FROM journal ORDER BY id").fetchall()
        return [(i, state, orjson.loads(added), orjson.loads(removed)) for i, state, added, removed in rows]

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _record(row: tuple[Any, ...]) -> DocumentInfo:
    doc_id, content_hash, meta_hash, generation, title, source, acl, metadata, chunks, updated_at = row
    return DocumentInfo(
        id=doc_id,
        content_hash=content_hash,
        meta_hash=meta_hash,
        generation=generation,
        title=title,
        source=source,
        acl=_acl(acl),
        metadata=orjson.loads(metadata),
        chunks=tuple((c, p) for c, p in orjson.loads(chunks)),
        updated_at=updated_at,
    )
