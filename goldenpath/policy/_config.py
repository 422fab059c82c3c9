"""Where the shipped Cedar schema lives. The ``policy`` section itself is ``goldenpath.config.PolicyConfig``, so
that reading the configuration does not load Cedar."""

from __future__ import annotations

from pathlib import Path

from goldenpath.config import PolicyConfig

DEFAULT_SCHEMA = Path(__file__).with_name("schema.cedarschema")

__all__ = ["DEFAULT_SCHEMA", "PolicyConfig"]
