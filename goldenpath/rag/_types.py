"""The values retrieval passes around: who is asking, who may read a document, documents and chunks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller a search runs as: a principal id, its tenant and its groups."""

    principal: str
    tenant: str
    groups: frozenset[str] = frozenset()
    is_admin: bool = False  # an admin reads every document of the collection


@dataclass(frozen=True, slots=True)
class AccessList:
    """Who may read a document: any listed principal, any member of a listed group, or anyone in a listed
    tenant. An empty list means only admins."""

    principals: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()

    def allows(self, who: Identity) -> bool:
        return (
            who.is_admin
            or who.principal in self.principals
            or who.tenant in self.tenants
            or not self.groups.isdisjoint(who.groups)
        )

    def as_dict(self) -> dict[str, list[str]]:
        """The JSON form the API takes and shows: ``{"principals": [...], "groups": [...], "tenants": [...]}``."""
        return {"principals": sorted(self.principals), "groups": sorted(self.groups), "tenants": sorted(self.tenants)}


@dataclass(frozen=True, slots=True)
class Document:
    """One source document, as parsed, before chunking. ``id`` is stable: re-ingesting the same id replaces it."""

    id: str
    text: str
    title: str = ""
    source: str = ""  # file path or "api"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    sections: tuple[tuple[int, str], ...] = ()  # (char offset, heading) where structure is known


@dataclass(frozen=True, slots=True)
class Chunk:
    """A searchable piece of a document: ``text`` is what is embedded and indexed."""

    id: str  # "<document id>#<ordinal>"
    document_id: str
    ordinal: int
    text: str
    start: int  # char offsets into the document text
    end: int
    heading: str = ""
