"""Retrieval on SciFact: quality (BM25, dense, hybrid), ingestion time, latency under access filtering, leaks.

1. Ingest the 5,183 abstracts (``../shared/data/scifact/corpus.jsonl``; title + text, the default chunking) into
   a collection through ``Retriever.ingest`` with the built-in MiniLM, timed end to end (chunking, embedding,
   BM25, index writes), then the index build (``optimize``) separately.
2. nDCG@10 and Recall@100 with ir-measures on the test qrels, per mode: chunks are retrieved as a reader of the
   whole collection (the access filter is in the search) and a document ranks where its best chunk does.
   ``--sweep`` prints nDCG@10 over RRF k and BM25 weight on the two halves of the queries (by a hash of the id).
3. A 100k-chunk collection: the SciFact chunks copied with their MiniLM vectors jittered (N(0, 0.02) per
   dimension, renormalized; texts as they are), each copy with a random access list. 5% of the chunks are
   readable by group ``sel-5``, 1% by group ``sel-1`` (and nobody else in the latency runs).
4. Latency: ``Retriever.retrieve`` in hybrid mode, k=10, for the test queries, as a member of ``sel-5`` and of
   ``sel-1``, in a child process pinned to one core (``taskset -c 0``; onnxruntime with 1 thread; every thread of
   the process, the engine's search pool included, inherits the pinning). p50/p95 of the whole call (query
   embedding included) and of the embedding alone.
5. Leak check: 10,000 random (identity, query, k, mode, filter) cases on the 100k collection; every hit's access
   list is checked against the identity outside the engine. Query vectors come from a cache of the MiniLM
   vectors of the test queries here, so the check spends its time in the searches.

Run: ``.venv/bin/python bench/rag_scifact.py [--data-dir DIR] [--reuse] [--sweep]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import ir_measures
import numpy as np
import numpy.typing as npt
from ir_measures import R, nDCG

from goldenpath.evals import load_scifact, load_scifact_corpus
from goldenpath.evals._datasets import load_scifact_qrels
from goldenpath.rag import (
    AccessList,
    CollectionSpec,
    Document,
    Embedding,
    Identity,
    Retriever,
    SearchSettings,
    minilm_embedding,
)
from goldenpath.rag._embedding import MINILM

SCIFACT = "scifact"
SCALE = "scifact-100k"
READER = Identity(principal="bench-reader", tenant="bench")
TARGET_CHUNKS = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="keep collections already in --data-dir")
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads for ingestion")
    parser.add_argument("--latency", choices=["5", "1"], help=argparse.SUPPRESS)  # the pinned child
    parser.add_argument("--leak-cases", type=int, default=10_000)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="gp-rag-bench-"))
    if args.latency:
        latency(data_dir, args.latency)
        return
    print(f"data dir: {data_dir}  load average: {os.getloadavg()}")
    vectors = ingest(data_dir, args.threads, args.reuse)
    quality(data_dir, args.sweep)
    acls = build_scale(data_dir, vectors, args.reuse)
    for selectivity in ("5", "1"):
        subprocess.run(
            ["taskset", "-c", "0", sys.executable, __file__, "--data-dir", str(data_dir), "--latency", selectivity],
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    leak_check(data_dir, acls, args.leak_cases)


def scifact_documents() -> list[Document]:
    return [Document(id=d.id, title=d.title, text=d.text, source=SCIFACT) for d in load_scifact_corpus()]


def ingest(data_dir: Path, threads: int, reuse: bool) -> dict[str, npt.NDArray[np.float32]]:
    """Ingest SciFact; returns the MiniLM vector of every chunk text (saved for --reuse)."""
    saved = data_dir / "chunk-vectors.npz"
    retriever = Retriever(data_dir, minilm_embedding(n_threads=threads))
    if reuse and saved.is_file() and any(c.name == SCIFACT for c in retriever.list_collections()):
        with np.load(saved) as npz:
            return dict(zip(npz["texts"].tolist(), npz["vectors"], strict=True))
    base = retriever.embedding()
    seen: dict[str, npt.NDArray[np.float32]] = {}

    def recording(texts: list[str]) -> npt.NDArray[np.float32]:
        out = base.vectors(texts)
        seen.update(zip(texts, out, strict=True))
        return out

    retriever = Retriever(data_dir, Embedding(base.name, base.dimensions, recording))
    retriever.create_collection(SCIFACT, tenant="bench")
    documents = scifact_documents()
    load = os.getloadavg()[0]
    started = time.perf_counter()
    report = retriever.ingest(SCIFACT, documents, acl=AccessList(tenants=frozenset({"bench"})))
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    retriever.optimize(SCIFACT)
    built = time.perf_counter() - started
    info = retriever.get_collection(SCIFACT)
    print(
        f"ingest: {info.documents} documents, {info.chunks} chunks in {elapsed:.1f} s "
        f"(embedding threads {threads}, load average before {load:.1f}); index build {built:.1f} s; "
        f"{report.count('added')} added"
    )
    retriever.close()
    np.savez(saved, texts=np.array(list(seen)), vectors=np.stack(list(seen.values())))
    return seen


def evaluate(
    retriever: Retriever, collection: str, mode: str, split_of: dict[str, int] | None = None
) -> dict[str, float]:
    qrels = load_scifact_qrels()
    rows: list[ir_measures.ScoredDoc] = []
    for sample in load_scifact().samples:
        if split_of is not None and split_of[sample.id] < 0:
            continue
        hits = retriever.retrieve(collection, str(sample.input), READER, k=300, mode=mode)  # type: ignore[arg-type]
        ranked: list[str] = []
        for hit in hits:
            if hit.document_id not in ranked:
                ranked.append(hit.document_id)
        rows.extend(ir_measures.ScoredDoc(sample.id, doc, -rank) for rank, doc in enumerate(ranked[:100]))
    judged = [ir_measures.Qrel(q, d, rel) for q, docs in qrels.items() for d, rel in docs.items()]
    if split_of is not None:
        judged = [j for j in judged if split_of.get(j.query_id, -1) >= 0]
    result = ir_measures.calc_aggregate([nDCG @ 10, R @ 100], judged, rows)
    return {str(k): float(v) for k, v in result.items()}


def quality(data_dir: Path, sweep: bool) -> None:
    retriever = Retriever(data_dir, minilm_embedding(n_threads=2))
    print(f"search settings: {retriever.search.model_dump()}")
    for mode in ("bm25", "dense", "hybrid"):
        scores = evaluate(retriever, SCIFACT, mode)
        print(f"{mode:7s} nDCG@10 {scores['nDCG@10']:.4f}  Recall@100 {scores['R@100']:.4f}")
    if sweep:
        ids = [s.id for s in load_scifact().samples]
        half = {i: int(hashlib.sha256(i.encode()).hexdigest(), 16) % 2 for i in ids}
        for rrf_k in (10.0, 20.0, 30.0, 60.0):
            for weight in (0.75, 1.0, 1.25):
                retriever.search = SearchSettings(rrf_k=rrf_k, bm25_weight=weight)
                parts = [
                    evaluate(retriever, SCIFACT, "hybrid", {i: (0 if h == part else -1) for i, h in half.items()})
                    for part in (0, 1)
                ]
                print(
                    f"sweep rrf_k={rrf_k:g} bm25_weight={weight:g}: nDCG@10 half A {parts[0]['nDCG@10']:.4f} "
                    f"half B {parts[1]['nDCG@10']:.4f}"
                )
    retriever.close()


def random_acl(rng: random.Random) -> AccessList:
    return AccessList(
        principals=frozenset(f"p{rng.randrange(300)}" for _ in range(rng.randrange(3))),
        groups=frozenset(f"g{rng.randrange(60)}" for _ in range(rng.randrange(3))),
        tenants=frozenset(f"t{rng.randrange(12)}" for _ in range(rng.randrange(2))),
    )


def build_scale(data_dir: Path, vectors: dict[str, npt.NDArray[np.float32]], reuse: bool) -> dict[str, AccessList]:
    """The 100k-chunk collection; returns each document's access list (the ground truth of the leak check)."""
    rng = random.Random(7)
    noise = np.random.default_rng(7)
    texts = sorted(vectors)
    copies = -(-TARGET_CHUNKS // len(texts))
    documents: list[tuple[Document, AccessList]] = []
    jittered: dict[str, npt.NDArray[np.float32]] = {}
    for copy in range(copies):
        for n, text in enumerate(texts):
            if len(documents) == TARGET_CHUNKS:
                break
            acl = random_acl(rng)
            draw = rng.random()
            if draw < 0.05:
                acl = AccessList(acl.principals, acl.groups | {"sel-5"}, acl.tenants)
            if draw < 0.01:
                acl = AccessList(acl.principals, acl.groups | {"sel-1"}, acl.tenants)
            doc_text = (f"{text} [{copy}]" if copy else text).strip()  # a distinct document per copy
            vector = vectors[text] + noise.normal(0, 0.02, vectors[text].shape).astype(np.float32)
            jittered[doc_text] = vector / np.linalg.norm(vector)
            documents.append((Document(id=f"c{copy}-{n}", text=doc_text, source="synthetic"), acl))
    acls = {d.id: acl for d, acl in documents}

    def lookup(batch: list[str]) -> npt.NDArray[np.float32]:
        return np.stack([jittered[t.strip()] for t in batch])

    retriever = Retriever(data_dir, Embedding(MINILM, 384, lookup))
    if reuse and any(c.name == SCALE for c in retriever.list_collections()):
        retriever.close()
        return acls
    retriever.create_collection(SCALE, tenant="bench", spec=CollectionSpec(chunk_max_tokens=512))  # one chunk each
    started = time.perf_counter()
    for start in range(0, len(documents), 10_000):
        retriever.upsert_documents(SCALE, documents[start : start + 10_000])
    written = time.perf_counter() - started
    started = time.perf_counter()
    retriever.optimize(SCALE)
    print(
        f"100k collection: {retriever.count_points(SCALE)} chunks written in {written:.1f} s "
        f"(vectors given), index build {time.perf_counter() - started:.1f} s"
    )
    retriever.close()
    return acls


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def latency(data_dir: Path, selectivity: str) -> None:
    embedding = minilm_embedding(n_threads=1)
    retriever = Retriever(data_dir, embedding)
    caller = Identity(principal="latency-user", tenant="latency-tenant", groups=frozenset({f"sel-{selectivity}"}))
    queries = [str(s.input) for s in load_scifact().samples]
    for q in queries[:20]:  # warm up
        retriever.retrieve(SCALE, q, caller, k=10)
    totals, embeds, short = [], [], 0
    for q in queries * 2:
        started = time.perf_counter()
        embedding.vectors([q])
        embeds.append(time.perf_counter() - started)
        started = time.perf_counter()
        hits = retriever.retrieve(SCALE, q, caller, k=10)
        totals.append(time.perf_counter() - started)
        short += len(hits) < 10
    print(
        f"latency {selectivity}% selectivity, 1 core, hybrid k=10, {len(totals)} queries: "
        f"p50 {percentile(totals, 50) * 1000:.1f} ms  p95 {percentile(totals, 95) * 1000:.1f} ms "
        f"(query embedding alone p50 {percentile(embeds, 50) * 1000:.1f} ms "
        f"p95 {percentile(embeds, 95) * 1000:.1f} ms); "
        f"{short} results short of 10; affinity {sorted(os.sched_getaffinity(0))}"
    )
    retriever.close()


def leak_check(data_dir: Path, acls: dict[str, AccessList], cases: int) -> None:
    queries = [str(s.input) for s in load_scifact().samples]
    model = minilm_embedding(n_threads=2)
    cached = dict(zip(queries, model.vectors(queries), strict=True))
    retriever = Retriever(data_dir, Embedding(MINILM, 384, lambda texts: np.stack([cached[t] for t in texts])))
    rng = random.Random(11)
    leaks = 0
    hits_seen = 0
    started = time.perf_counter()
    for _ in range(cases):
        identity = Identity(
            principal=f"p{rng.randrange(300)}",
            tenant=f"t{rng.randrange(12)}",
            groups=frozenset(f"g{rng.randrange(60)}" for _ in range(rng.randrange(4))),
        )
        mode = rng.choice(["hybrid", "dense", "bm25"])
        filter_ = {"document_id": [f"c0-{rng.randrange(9000)}" for _ in range(50)]} if rng.random() < 0.1 else None
        hits = retriever.retrieve(SCALE, rng.choice(queries), identity, k=rng.randint(1, 50), mode=mode, filter=filter_)  # type: ignore[arg-type]
        hits_seen += len(hits)
        leaks += sum(not acls[h.document_id].allows(identity) for h in hits)
    print(
        f"leak check: {cases} random cases, {hits_seen} hits checked, {leaks} leaks "
        f"({time.perf_counter() - started:.0f} s)"
    )
    retriever.close()


if __name__ == "__main__":
    main()
