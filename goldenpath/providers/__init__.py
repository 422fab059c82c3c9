"""Backends behind one interface: OpenAI-compatible upstreams, llama.cpp in process, ONNX embeddings."""

from pathlib import Path

from goldenpath.config import Deployment, LlamaCppDeployment, OnnxEmbeddingDeployment, OpenAIDeployment
from goldenpath.providers._base import (
    InvalidRequestForProvider,
    Operation,
    Provider,
    ProviderError,
    ProviderNotReady,
    Response,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    Usage,
    usage_from,
)


def create_provider(name: str, config: Deployment, data_dir: Path) -> Provider:
    """Build the provider for one deployment; heavy imports happen only for the kinds in use."""
    if isinstance(config, OpenAIDeployment):
        from goldenpath.providers.openai import OpenAIProvider

        return OpenAIProvider(name, config)
    if isinstance(config, LlamaCppDeployment):
        from goldenpath.providers.llamacpp import LlamaCppProvider

        return LlamaCppProvider(name, config, data_dir)
    if isinstance(config, OnnxEmbeddingDeployment):
        from goldenpath.providers.onnx_embeddings import OnnxEmbeddingProvider

        return OnnxEmbeddingProvider(name, config)
    raise TypeError(f"unknown deployment type {type(config).__name__}")


__all__ = [
    "InvalidRequestForProvider",
    "Operation",
    "Provider",
    "ProviderError",
    "ProviderNotReady",
    "Response",
    "UpstreamConnectError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "Usage",
    "create_provider",
    "usage_from",
]
