"""Configuration: one YAML file plus environment overrides, validated at start."""

from goldenpath.config._load import ConfigError, load_settings, read_yaml
from goldenpath.config._models import (
    CacheConfig,
    Deployment,
    GuardConfig,
    LlamaCppDeployment,
    ModelAlias,
    OnnxEmbeddingDeployment,
    OpenAIDeployment,
    PolicyConfig,
    RetrievalConfig,
    RoutingConfig,
    ServerConfig,
    Settings,
    StoreConfig,
)

__all__ = [
    "CacheConfig",
    "ConfigError",
    "Deployment",
    "GuardConfig",
    "LlamaCppDeployment",
    "ModelAlias",
    "OnnxEmbeddingDeployment",
    "OpenAIDeployment",
    "PolicyConfig",
    "RetrievalConfig",
    "RoutingConfig",
    "ServerConfig",
    "Settings",
    "StoreConfig",
    "load_settings",
    "read_yaml",
]
