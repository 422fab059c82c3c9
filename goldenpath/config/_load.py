"""Reading the YAML file and the environment into :class:`Settings`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from goldenpath.config._models import Settings


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, the field and the reason."""


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        # Discriminated unions add the tag to the location (e.g. "openai"); it is noise for the reader.
        loc = tuple(p for p in e["loc"] if p not in ("openai", "llamacpp", "onnx-embeddings"))
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {_field_path(loc)}: {msg}")
    return "\n".join(lines)


def read_yaml(path: str | Path, what: str) -> Any:
    """The YAML document in a file. ``ValueError`` names the file (and line) and the reason."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ValueError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Load settings from ``path`` (or defaults) and apply environment overrides.

    ``GOLDENPATH_HOME`` sets the data directory, ``GOLDENPATH_DATABASE_URL`` the store URL and
    ``GOLDENPATH_REDIS_URL`` the Redis URL.
    """
    env = dict(os.environ) if env is None else env
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            loaded = read_yaml(path, "config file")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: (top level): expected a mapping, got {type(loaded).__name__}")
        raw = loaded
    if env.get("GOLDENPATH_HOME"):
        raw["data_dir"] = env["GOLDENPATH_HOME"]
    if env.get("GOLDENPATH_DATABASE_URL"):
        raw.setdefault("store", {})
        if not isinstance(raw["store"], dict):
            raise ConfigError(f"{source}: store: expected a mapping")
        raw["store"] = {**raw["store"], "url": env["GOLDENPATH_DATABASE_URL"]}
    if env.get("GOLDENPATH_REDIS_URL"):
        raw["redis_url"] = env["GOLDENPATH_REDIS_URL"]
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from exc
    if path is not None:  # files named in the config are relative to it
        settings = settings.model_copy(update={"policy": settings.policy.relative_to(Path(path).parent)})
    return settings
