"""The ``policy`` section of the configuration."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_SCHEMA = Path(__file__).with_name("schema.cedarschema")


class PolicyConfig(BaseModel):
    """Cedar authorization. With no ``files`` it is off and every authenticated key may do what its
    scopes allow (today's behaviour); with files, Cedar decides every request and denies by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    files: list[Path] = Field(
        default_factory=list,
        description="Cedar policy files, or directories whose *.cedar files (recursively, sorted) are read.",
    )
    schema_file: Path | None = Field(
        default=None, description="Cedar schema (.cedarschema text or .json); the shipped schema if unset."
    )
    entities_file: Path | None = Field(
        default=None,
        description="Cedar JSON entities that do not come from the key: group nesting, resource attributes.",
    )
    reload_interval_s: float = Field(
        default=0.0, ge=0, description="How often the gateway checks the files for changes; 0: read only at start."
    )
    cache_size: int = Field(default=100_000, ge=0, description="Decisions kept until policies change; 0: no cache.")

    @property
    def enabled(self) -> bool:
        return bool(self.files)
