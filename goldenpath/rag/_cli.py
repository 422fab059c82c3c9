"""``goldenpath rag ingest`` and ``goldenpath rag query``.

With ``GOLDENPATH_URL`` and a key (``GOLDENPATH_API_KEY``, else ``GOLDENPATH_ADMIN_KEY``) set, both work through
that running gateway, as that key; otherwise they act on the configured data directory directly (as an admin).
Files are parsed here either way, so a folder, a JSONL or CSV file of many records, or a PDF travel the same way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click
import orjson

from goldenpath.rag._exceptions import IngestError, RetrievalError
from goldenpath.rag._types import AccessList, Document, Identity

BATCH = 64  # documents per request or per embedding pass


def parse_acl(entries: Sequence[str]) -> AccessList | None:
    """``group:eng``, ``principal:alice`` (or ``user:alice``), ``tenant:acme``; None when none are given."""
    principals: set[str] = set()
    groups: set[str] = set()
    tenants: set[str] = set()
    kinds = {"group": groups, "principal": principals, "user": principals, "tenant": tenants}
    for entry in entries:
        kind, _, name = entry.partition(":")
        if kind not in kinds or not name:
            raise click.BadParameter(f"{entry!r}: use group:NAME, principal:NAME or tenant:NAME", param_hint="--acl")
        kinds[kind].add(name)
    if not entries:
        return None
    return AccessList(frozenset(principals), frozenset(groups), frozenset(tenants))


def _remote() -> tuple[str, str] | None:
    url = os.environ.get("GOLDENPATH_URL")
    if not url:
        return None
    key = os.environ.get("GOLDENPATH_API_KEY") or os.environ.get("GOLDENPATH_ADMIN_KEY")
    if not key:
        raise click.ClickException("GOLDENPATH_URL is set: set GOLDENPATH_API_KEY (or GOLDENPATH_ADMIN_KEY) too")
    return url.rstrip("/"), key


def _batches(documents: Iterator[Document]) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for doc in documents:
        batch.append(doc)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


class _Gateway:
    """The few retrieval calls the CLI makes on a running gateway."""

    def __init__(self, url: str, key: str) -> None:
        import httpx

        self._http = httpx.Client(base_url=url + "/v1", headers={"Authorization": f"Bearer {key}"}, timeout=600)

    def call(self, method: str, path: str, body: Any = None, ok: Sequence[int] = (200, 201)) -> Any:
        r = self._http.request(method, path, json=body)
        if r.status_code not in ok:
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.text
            raise click.ClickException(f"{method} {path}: {r.status_code}: {message}")
        return r.json()


def _document_json(doc: Document, acl: AccessList | None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": doc.id, "text": doc.text, "title": doc.title, "metadata": dict(doc.metadata)}
    if acl is not None:
        out["acl"] = acl.as_dict()
    return out


@click.command("ingest")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--collection", "-c", required=True, help="Created (in your tenant) if it does not exist.")
@click.option("--acl", "acl_entries", multiple=True, help="group:NAME, principal:NAME or tenant:NAME (repeat).")
@click.option("--tenant", help="Owner of a new collection when working on the data directory (default: default).")
@click.option("--keep-going", is_flag=True, help="Report files that cannot be read and ingest the others.")
@click.option("--config", "config", type=click.Path(path_type=Path), help="YAML config file.")
def ingest_command(
    path: Path, collection: str, acl_entries: tuple[str, ...], tenant: str | None, keep_going: bool, config: Path | None
) -> None:
    """Ingest a file or folder (txt, md, html, pdf, jsonl, csv). Without --acl, documents are readable by the
    whole tenant of the collection. Re-ingesting a document replaces it; unchanged ones are skipped."""
    from goldenpath.rag._parse import parse_path

    acl = parse_acl(acl_entries)
    errors: list[IngestError] | None = [] if keep_going else None
    try:
        documents = list(parse_path(path, errors=errors))
    except IngestError as exc:
        raise click.ClickException(str(exc)) from None
    for err in errors or ():
        click.echo(f"skipped {err}", err=True)
    if not documents:
        raise click.ClickException(f"{path}: no documents to ingest")
    statuses: dict[str, int] = {}
    remote = _remote()
    progress = click.progressbar(length=len(documents), label=f"ingesting into {collection}", file=sys.stderr)
    with progress as bar:
        if remote is not None:
            gateway = _Gateway(*remote)
            if gateway.call("GET", f"/collections/{collection}", ok=(200, 404)).get("error"):
                gateway.call("POST", "/collections", {"name": collection})
            for batch in _batches(iter(documents)):
                body = {"documents": [_document_json(d, acl) for d in batch]}
                result = gateway.call("POST", f"/collections/{collection}/documents", body)
                for d in result["documents"]:
                    statuses[d["status"]] = statuses.get(d["status"], 0) + 1
                bar.update(len(batch))
        else:
            retriever = _local_retriever(config)
            try:
                names = {c.name for c in retriever.list_collections()}
                if collection not in names:
                    retriever.create_collection(collection, tenant=tenant or "default")
                owner = retriever.get_collection(collection).tenant
                access = acl or AccessList(tenants=frozenset({owner}))
                for batch in _batches(iter(documents)):
                    report = retriever.ingest(collection, batch, acl=access)
                    for r in report.results:
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                    bar.update(len(batch))
            except RetrievalError as exc:
                raise click.ClickException(str(exc)) from None
            finally:
                retriever.close()
    summary = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    click.echo(f"{collection}: {len(documents)} documents ({summary}); {len(errors or ())} files skipped")


@click.command("query")
@click.argument("query")
@click.option("--collection", "-c", required=True)
@click.option("-k", default=5, show_default=True, help="How many chunks.")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "bm25"]), default="hybrid", show_default=True)
@click.option("--as-principal", help="On the data directory: search as this principal (default: as an admin).")
@click.option("--group", "groups", multiple=True, help="With --as-principal: a group of theirs (repeat).")
@click.option("--tenant", default="default", show_default=True, help="With --as-principal: their tenant.")
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON lines.")
@click.option("--config", "config", type=click.Path(path_type=Path), help="YAML config file.")
def query_command(
    query: str,
    collection: str,
    k: int,
    mode: str,
    as_principal: str | None,
    groups: tuple[str, ...],
    tenant: str,
    as_json: bool,
    config: Path | None,
) -> None:
    """Search a collection (through the gateway: as its key; on the data directory: as --as-principal)."""
    remote = _remote()
    if remote is not None:
        body = {"collection": collection, "query": query, "k": k, "mode": mode}
        hits = _Gateway(*remote).call("POST", "/retrieve", body)["data"]
    else:
        retriever = _local_retriever(config)
        who = (
            Identity(as_principal, tenant, frozenset(groups))
            if as_principal
            else Identity("admin", tenant, is_admin=True)
        )
        try:
            found = retriever.retrieve(collection, query, who, k=k, mode=mode)
        except RetrievalError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            retriever.close()
        hits = [h.as_dict() for h in found]
    for n, hit in enumerate(hits, start=1):
        if as_json:
            click.echo(orjson.dumps(hit).decode())
            continue
        title = hit["metadata"].get("title") or hit["document_id"]
        text = " ".join(hit["text"].split())
        click.echo(f"[{n}] {hit['score']:.4f}  {hit['chunk_id']}  {title}\n    {text[:300]}")
    if not hits:
        click.echo("no results you may read", err=True)


def _local_retriever(config: Path | None) -> Any:
    from goldenpath.config import ConfigError, load_settings
    from goldenpath.rag._embedding import minilm_embedding
    from goldenpath.rag._retriever import Retriever
    from goldenpath.rag._settings import SearchSettings

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    from goldenpath.rag._settings import qdrant_server

    if settings.retrieval.embedding_model is not None:
        raise click.ClickException(
            f"collections here embed with the alias {settings.retrieval.embedding_model!r}: "
            "run this through the gateway (set GOLDENPATH_URL and a key)"
        )
    # no server shares the machine here: embed with every core
    embedding = minilm_embedding(n_threads=os.cpu_count() or 1)
    try:
        qdrant = qdrant_server(settings.retrieval, os.environ)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    return Retriever(settings.data_dir, embedding, search=SearchSettings(**settings.retrieval.search), qdrant=qdrant)
