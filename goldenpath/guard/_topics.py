"""Topic allow and deny lists by embedding similarity with the local MiniLM.

Topics are short descriptions ("questions about medical diagnosis or symptoms"). They are embedded
once, on first use; each checked text is cut into windows of at most ``WINDOW_CHARS`` characters at
sentence ends (MiniLM reads 128 tokens, about 500 characters of English), the windows are embedded in
one batch, and the cosine similarity of every window with every topic is compared to the threshold.
On this machine MiniLM costs ~0.27 ms per token on one core: a short prompt ~10 ms, a full window
~35 ms. That is why the detector exists only when a policy lists topics, and loads the model only then.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence

import numpy as np

from goldenpath.guard._features import embed
from goldenpath.guard._types import Detection
from goldenpath.providers.onnx_embeddings import OnnxEmbedder

WINDOW_CHARS = 500
MAX_WINDOWS = 8  # a longer text is judged on this many windows spread evenly over it
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def windows(text: str, size: int = WINDOW_CHARS, limit: int = MAX_WINDOWS) -> list[tuple[int, int]]:
    """Spans of at most ``size`` characters, cut at sentence ends where possible; at most ``limit``."""
    spans: list[tuple[int, int]] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cuts = [m.end() for m in _SENTENCE_END.finditer(text, start, end) if m.end() > start + size // 2]
            if cuts:
                end = cuts[-1]
        spans.append((start, end))
        start = end
    if len(spans) > limit:
        step = len(spans) / limit
        spans = [spans[int(i * step)] for i in range(limit)]
    return spans


class TopicDetector:
    """Denied topics that a text is about, or (with an allow list) a text about none of the allowed ones.

    ``detail`` is the topic's description for a denied topic, ``off_topic`` otherwise; the score is the
    cosine similarity (denied) or one minus the best similarity to an allowed topic (off topic).
    """

    def __init__(
        self,
        deny: Sequence[str] = (),
        allow: Sequence[str] = (),
        *,
        embedder: Callable[[], OnnxEmbedder],
    ) -> None:
        for name, topics in (("deny", deny), ("allow", allow)):
            for i, topic in enumerate(topics):
                if not topic.strip():
                    raise ValueError(f"topics.{name}[{i}] is empty")
        self.deny = tuple(deny)
        self.allow = tuple(allow)
        self._embedder_factory = embedder
        self._embedder: OnnxEmbedder | None = None
        self._deny_vectors: np.ndarray | None = None
        self._allow_vectors: np.ndarray | None = None
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Load MiniLM and embed the topics now rather than on the first checked text."""
        with self._lock:
            if self._embedder is not None:
                return
            embedder = self._embedder_factory()
            if self.deny:
                self._deny_vectors = embed(embedder, list(self.deny))
            if self.allow:
                self._allow_vectors = embed(embedder, list(self.allow))
            self._embedder = embedder

    def detect(self, text: str, threshold: float) -> list[Detection]:
        if not text.strip() or not (self.deny or self.allow):
            return []
        self.warm()
        assert self._embedder is not None
        spans = windows(text)
        vectors = embed(self._embedder, [text[a:b] for a, b in spans])
        found: list[Detection] = []
        if self._deny_vectors is not None:
            similarity = vectors @ self._deny_vectors.T  # windows x topics
            for t, topic in enumerate(self.deny):
                w = int(np.argmax(similarity[:, t]))
                score = float(similarity[w, t])
                if score >= threshold:
                    start, end = spans[w]
                    found.append(Detection(type="topic", score=round(score, 4), start=start, end=end, detail=topic))
        if self._allow_vectors is not None:
            best = float(np.max(vectors @ self._allow_vectors.T))
            if best < threshold:
                score = round(min(1.0, 1.0 - max(best, 0.0)), 4)
                found.append(Detection(type="topic", score=score, start=0, end=len(text), detail="off_topic"))
        return found
