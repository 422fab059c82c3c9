"""Sentence embeddings on onnxruntime (no torch): tokenize, run, mean-pool, L2-normalize."""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from goldenpath.config import OnnxEmbeddingDeployment
from goldenpath.providers._base import (
    InvalidRequestForProvider,
    Operation,
    Provider,
    ProviderNotReady,
    Response,
    Usage,
)
from goldenpath.providers._packaged import minilm_onnx, minilm_tokenizer

MAX_INPUTS = 2048


def _resolve(config: OnnxEmbeddingDeployment) -> tuple[Path, Path]:
    if config.model_path is not None and config.tokenizer_path is not None:
        return config.model_path, config.tokenizer_path
    if config.model == "all-minilm-l6-v2":
        return config.model_path or minilm_onnx(), config.tokenizer_path or minilm_tokenizer()
    raise ValueError(
        f"onnx model {config.model!r} is not built in (all-minilm-l6-v2); set model_path and tokenizer_path"
    )


class OnnxEmbedder:
    """The model itself, usable without the gateway (retrieval and caches embed through this)."""

    def __init__(self, model_path: Path, tokenizer_path: Path, *, max_length: int, n_threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = n_threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(max_length=max_length)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest in the batch
        self.dimensions = int(self._session.get_outputs()[0].shape[-1])

    def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Return unit vectors (one row per text) and the number of tokens read."""
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32), int(mask.sum())


class OnnxEmbeddingProvider(Provider):
    operations = frozenset({"embeddings"})

    def __init__(self, name: str, config: OnnxEmbeddingDeployment) -> None:
        self.name = name
        self.config = config
        self.embedder: OnnxEmbedder | None = None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"onnx-{name}")

    @property
    def ready(self) -> bool:
        return self.embedder is not None

    def _load(self) -> OnnxEmbedder:
        model_path, tokenizer_path = _resolve(self.config)
        return OnnxEmbedder(
            model_path, tokenizer_path, max_length=self.config.max_length, n_threads=self.config.n_threads
        )

    async def start(self) -> None:
        self.embedder = await asyncio.get_running_loop().run_in_executor(self._pool, self._load)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _texts(self, body: dict[str, Any]) -> list[str]:
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts:
            raise InvalidRequestForProvider("'input' must be a non-empty string or array of strings", param="input")
        if len(texts) > MAX_INPUTS:
            raise InvalidRequestForProvider(f"at most {MAX_INPUTS} inputs per request", param="input")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidRequestForProvider(
                    f"input[{i}]: this model takes text; token arrays are not supported", param="input"
                )
            if not t:
                raise InvalidRequestForProvider(f"input[{i}] is an empty string", param="input")
        return texts

    def _run(self, texts: list[str]) -> tuple[np.ndarray, int]:
        assert self.embedder is not None
        size = self.config.batch_size
        parts = [self.embedder.embed(texts[i : i + size]) for i in range(0, len(texts), size)]
        return np.concatenate([p[0] for p in parts]), sum(p[1] for p in parts)

    async def call(self, op: Operation, body: dict[str, Any]) -> Response:
        if op != "embeddings":
            raise InvalidRequestForProvider(f"{self.config.model} is an embedding model", param="model")
        if self.embedder is None:
            raise ProviderNotReady(f"{self.name}: model is still loading", deployment=self.name)
        texts = self._texts(body)
        dims = body.get("dimensions")
        if dims is not None and dims != self.embedder.dimensions:
            raise InvalidRequestForProvider(
                f"this model has {self.embedder.dimensions} dimensions and cannot shorten them",
                param="dimensions",
            )
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise InvalidRequestForProvider("encoding_format must be 'float' or 'base64'", param="encoding_format")
        vectors, tokens = await asyncio.get_running_loop().run_in_executor(self._pool, self._run, texts)
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(v.tobytes()).decode() if fmt == "base64" else v,
            }
            for i, v in enumerate(vectors)
        ]
        out = {
            "object": "list",
            "data": data,
            "model": self.config.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return Response(
            body=orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY),
            usage=Usage(prompt_tokens=tokens, completion_tokens=0),
        )
