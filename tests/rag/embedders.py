"""A cheap deterministic embedding for tests of the index around it: hashed word counts, L2-normalized.

It is a real (if weak) embedding model, not a stand-in for the index: every search in these tests runs on the
embedded engine."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import numpy.typing as npt

from goldenpath.rag import Embedding

DIMENSIONS = 32
_WORD = re.compile(r"\w+")


def _bucket(word: str) -> tuple[int, float]:
    digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
    return digest[0] % (DIMENSIONS - 1), 1.0 if digest[1] & 1 else -1.0


def hashing_vectors(texts: list[str]) -> npt.NDArray[np.float32]:
    out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
    out[:, -1] = 0.1  # never the zero vector
    for row, text in enumerate(texts):
        for word in _WORD.findall(text.lower()):
            column, sign = _bucket(word)
            out[row, column] += sign
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def hashing_embedding() -> Embedding:
    return Embedding(name="test-hashing-32", dimensions=DIMENSIONS, embed=hashing_vectors)
