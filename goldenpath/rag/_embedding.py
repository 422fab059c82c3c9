"""The embedding seam of retrieval: a named model of fixed dimension behind one synchronous function.

Ingestion and search run in worker threads, so the function is synchronous; wrap an async client (an
OpenAI-compatible ``/v1/embeddings`` upstream) with ``asyncio.run_coroutine_threadsafe(...).result()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from goldenpath.rag._exceptions import RetrievalError

EmbedFunction = Callable[[list[str]], "Sequence[Sequence[float]] | npt.NDArray[np.floating]"]


@dataclass(frozen=True, slots=True)
class Embedding:
    """``embed(texts)`` returns one vector of ``dimensions`` floats per text. ``name`` is recorded with
    each collection: a collection is only searched and extended with the model it was built with."""

    name: str
    dimensions: int
    embed: EmbedFunction

    def vectors(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """``embed`` checked: a float32 matrix with one row per text."""
        out = np.asarray(self.embed(texts), dtype=np.float32)
        if out.shape != (len(texts), self.dimensions):
            raise RetrievalError(
                f"embedding model {self.name!r} returned shape {out.shape} for {len(texts)} texts; "
                f"expected ({len(texts)}, {self.dimensions})"
            )
        if not np.isfinite(out).all():
            raise RetrievalError(f"embedding model {self.name!r} returned non-finite values")
        return out


MINILM = "all-minilm-l6-v2"


def minilm_embedding(*, n_threads: int = 1, max_length: int = 256) -> Embedding:
    """The built-in all-MiniLM-L6-v2 on onnxruntime (384 dimensions, unit vectors).

    ``max_length`` is the model's window in tokens; the default chunking fills it."""
    from goldenpath.providers._packaged import minilm_onnx, minilm_tokenizer
    from goldenpath.providers.onnx_embeddings import OnnxEmbedder

    model = OnnxEmbedder(minilm_onnx(), minilm_tokenizer(), max_length=max_length, n_threads=n_threads)

    def embed(texts: list[str]) -> npt.NDArray[np.float32]:
        vectors, _tokens = model.embed(texts)
        return vectors

    return Embedding(name=MINILM, dimensions=model.dimensions, embed=embed)
