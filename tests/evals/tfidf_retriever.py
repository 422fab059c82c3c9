"""A small real retrieval system for the evaluation tests: TF-IDF (scikit-learn) over the SciFact corpus.

It implements ``RetrievalTarget`` (``search(query, k) -> [(doc_id, score)]``), so the SciFact suite
can run end to end before goldenpath's own retrieval engine is connected.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]

from goldenpath.evals import CollectionTarget, load_scifact_corpus


class TfidfRetriever:
    def __init__(self) -> None:
        corpus = load_scifact_corpus()
        self.ids = [doc.id for doc in corpus]
        self.vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english")
        self.matrix = self.vectorizer.fit_transform([f"{doc.title} {doc.text}" for doc in corpus])

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        scores = (self.matrix @ self.vectorizer.transform([query]).T).toarray().ravel()
        top = np.argsort(-scores, kind="stable")[:k]
        return [(self.ids[i], float(scores[i])) for i in top]


@cache
def open_scifact(target: CollectionTarget) -> TfidfRetriever:
    """The ``--retriever`` factory: only the SciFact collection exists here."""
    if target.collection != "scifact":
        raise ValueError(f"no collection {target.collection!r}")
    return TfidfRetriever()
