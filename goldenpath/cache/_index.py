"""In-process structures: the exact-entry store and the vector index of the semantic layer."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


@dataclass(slots=True, frozen=True)
class SemanticRow:
    """What the semantic layer keeps of an entry: its partition, the compared text and its vector."""

    partition: str
    text: str
    vector: Vector


class EntryStore:
    """Per-tenant answers with a TTL, at most ``max_entries`` per tenant (the oldest go first).

    Each tenant's entries are an insertion-ordered dict, so get, put and eviction are O(1); entries
    expire lazily (on read, and from the old end on every put).
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._tenants: dict[str, OrderedDict[str, tuple[float, bytes]]] = {}

    def get(self, tenant: str, key: str) -> bytes | None:
        entries = self._tenants.get(tenant)
        found = entries.get(key) if entries is not None else None
        if entries is None or found is None:
            return None
        if found[0] <= self._clock():
            del entries[key]
            if not entries:
                del self._tenants[tenant]
            return None
        return found[1]

    def put(self, tenant: str, key: str, body: bytes, ttl_s: float, max_entries: int) -> None:
        entries = self._tenants.setdefault(tenant, OrderedDict())
        entries.pop(key, None)
        now = self._clock()
        entries[key] = (now + ttl_s, body)
        while entries and (len(entries) > max_entries or next(iter(entries.values()))[0] <= now):
            entries.popitem(last=False)

    def __len__(self) -> int:
        return sum(len(e) for e in self._tenants.values())


class _Partition:
    """The rows of one (tenant, context): a matrix of vectors, removed by swapping in the last row."""

    __slots__ = ("keys", "rows", "texts", "vectors")

    def __init__(self, dimensions: int) -> None:
        self.vectors: Vector = np.empty((8, dimensions), dtype=np.float32)
        self.keys: list[str] = []
        self.texts: list[str] = []
        self.rows: dict[str, int] = {}

    def add(self, key: str, text: str, vector: Vector) -> None:
        row = self.rows.get(key)
        if row is None:
            row = len(self.keys)
            if row == len(self.vectors):
                self.vectors = np.concatenate([self.vectors, np.empty_like(self.vectors)])
            self.keys.append(key)
            self.texts.append(text)
            self.rows[key] = row
        self.texts[row] = text
        self.vectors[row] = vector

    def remove(self, key: str) -> None:
        row = self.rows.pop(key)
        last = self.keys.pop()
        last_text = self.texts.pop()
        if last != key:
            self.keys[row] = last
            self.texts[row] = last_text
            self.rows[last] = row
            self.vectors[row] = self.vectors[len(self.keys)]

    def nearest(self, vector: Vector, threshold: float, limit: int) -> list[tuple[str, str, float]]:
        sims = self.vectors[: len(self.keys)] @ vector
        above = np.flatnonzero(sims >= threshold)
        best = above[np.argsort(-sims[above], kind="stable")][:limit]
        return [(self.keys[i], self.texts[i], float(sims[i])) for i in best]


class VectorIndex:
    """Unit vectors by (tenant, partition), each pointing at an exact entry key, with TTL and a
    per-tenant bound on rows (the oldest go first). A lookup compares against one partition only.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._partitions: dict[tuple[str, str], _Partition] = {}
        self._order: dict[str, OrderedDict[tuple[str, str], float]] = {}  # tenant → (partition, key) → expiry

    def has_rows(self, tenant: str, partition: str) -> bool:
        return (tenant, partition) in self._partitions

    def add(self, tenant: str, key: str, row: SemanticRow, expires: float, max_rows: int) -> None:
        """Add or refresh the row of entry ``key``."""
        now = self._clock()
        if expires <= now:
            return
        partition = row.partition
        part = self._partitions.get((tenant, partition))
        if part is None:
            part = self._partitions[(tenant, partition)] = _Partition(len(row.vector))
        order = self._order.setdefault(tenant, OrderedDict())
        order.pop((partition, key), None)
        order[(partition, key)] = expires
        part.add(key, row.text, row.vector)
        while order and (len(order) > max_rows or next(iter(order.values())) <= now):
            (old_partition, old_key), _ = order.popitem(last=False)
            self._drop(tenant, old_partition, old_key)

    def nearest(
        self, tenant: str, partition: str, vector: Vector, threshold: float, limit: int = 3
    ) -> list[tuple[str, str, float]]:
        """Up to ``limit`` live (key, text, similarity) with similarity ≥ threshold, best first."""
        part = self._partitions.get((tenant, partition))
        if part is None or not part.keys:
            return []
        order = self._order[tenant]
        now = self._clock()
        found: list[tuple[str, str, float]] = []
        for key, text, sim in part.nearest(vector, threshold, limit):
            if order[(partition, key)] <= now:
                self.discard(tenant, partition, key)
            else:
                found.append((key, text, sim))
        return found

    def discard(self, tenant: str, partition: str, key: str) -> None:
        order = self._order.get(tenant)
        if order is not None and order.pop((partition, key), None) is not None:
            self._drop(tenant, partition, key)

    def _drop(self, tenant: str, partition: str, key: str) -> None:
        part = self._partitions[(tenant, partition)]
        part.remove(key)
        if not part.keys:
            del self._partitions[(tenant, partition)]
        if not self._order[tenant]:
            del self._order[tenant]

    def __len__(self) -> int:
        return sum(len(o) for o in self._order.values())
