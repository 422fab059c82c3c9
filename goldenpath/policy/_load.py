"""Reading, parsing and validating policy files, the schema and static entities, once per (re)load."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cedarpy

from goldenpath.policy._config import DEFAULT_SCHEMA, PolicyConfig
from goldenpath.policy._model import ACTION_TYPE, GROUP_TYPE, KEY_TYPE, RESOURCE_TYPES, TENANT_TYPE, key_entity
from goldenpath.policy._source import split_statements

# A file's stat at load time: (path, mtime_ns, size), size -1 when it is missing.
Fingerprint = tuple[tuple[str, int, int], ...]

_CEDAR_POLICY_ID = re.compile(r"^for policy `policy\d+`, ")


class PolicyError(Exception):
    """Policies, schema or entities cannot be used. Each entry of ``problems`` names the file, the
    line and policy where known, and the reason; the message lists them all."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("cannot load Cedar policies:\n  " + "\n  ".join(problems))
        self.problems = tuple(problems)


@dataclass(slots=True, frozen=True)
class _Probe:
    """The key entity the loader checks a schema against (same shape as every real one)."""

    key_id: str = "probe"
    tenant: str = "probe"
    name: str = "probe"
    is_admin: bool = False
    groups: frozenset[str] = frozenset({"probe"})


@dataclass(slots=True, frozen=True)
class Compiled:
    """Everything a decision needs, parsed once."""

    policies: cedarpy.PolicySet
    schema: cedarpy.Schema
    entities: cedarpy.Entities | None  # from entities_file; the key is added per caller
    ids: tuple[str, ...]
    uses_context: bool  # False: no policy reads `context`, so decisions do not depend on it
    fingerprint: Fingerprint


def policy_files(config: PolicyConfig) -> list[Path]:
    """The policy files named by the config, directories expanded to the *.cedar files below them
    (sorted; hidden files, such as editors' temporary ones, left out)."""
    out: list[Path] = []
    for entry in config.files:
        if entry.is_dir():
            out.extend(sorted(p for p in entry.rglob("*.cedar") if p.is_file() and not p.name.startswith(".")))
        else:
            out.append(entry)
    unique: dict[Path, Path] = {}
    for p in out:
        unique.setdefault(p.resolve(), p)  # each file once, where first named
    return list(unique.values())


def _stat(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (str(path), 0, -1)
    return (str(path), st.st_mtime_ns, st.st_size)


def fingerprint(config: PolicyConfig) -> Fingerprint:
    """What changes when a policy, schema or entities file is edited, added or removed."""
    paths = [*config.files, *policy_files(config), config.schema_file or DEFAULT_SCHEMA]
    if config.entities_file is not None:
        paths.append(config.entities_file)
    return tuple(_stat(p) for p in paths)


def _read(path: Path, what: str, problems: list[str]) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problems.append(f"{path}: cannot read {what}: {reason}")
        return None


def load_schema(path: Path | None) -> cedarpy.Schema:
    """The schema at ``path`` (Cedar schema text, or JSON when the name ends in .json), checked to fit
    the entities and requests goldenpath builds."""
    path = path or DEFAULT_SCHEMA
    problems: list[str] = []
    text = _read(path, "Cedar schema", problems)
    if text is None:
        raise PolicyError(problems)
    try:
        schema = cedarpy.Schema.from_json_str(text) if path.suffix == ".json" else cedarpy.Schema.from_str(text)
    except ValueError as exc:
        raise PolicyError([f"{path}: invalid Cedar schema: {exc}"]) from None
    try:
        cedarpy.Entities.from_json_str(json.dumps([key_entity(_Probe())]), schema)
    except ValueError as exc:
        problems.append(
            f"{path}: the schema does not fit the key entities goldenpath builds ({exc}): {KEY_TYPE} must be "
            f"in [{GROUP_TYPE}, {TENANT_TYPE}] with exactly the attributes tenant: String, name: String, is_admin: Bool"
        )
    for action, resource_type in RESOURCE_TYPES.items():
        probe = f'permit (principal is {KEY_TYPE}, action == {ACTION_TYPE}::"{action}", resource is {resource_type});'
        if not cedarpy.validate_policies(probe, schema):
            problems.append(
                f"{path}: the schema must declare action {action!r} for principal {KEY_TYPE} "
                f"and resource {resource_type}"
            )
    if problems:
        raise PolicyError(problems)
    return schema


def _load_entities(path: Path, schema: cedarpy.Schema) -> cedarpy.Entities:
    problems: list[str] = []
    text = _read(path, "Cedar entities", problems)
    if text is None:
        raise PolicyError(problems)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyError([f"{path}:{exc.lineno}: not valid JSON: {exc.msg}"]) from None
    if not isinstance(doc, list):
        raise PolicyError([f"{path}: expected a JSON list of Cedar entities"])
    for i, entity in enumerate(doc):
        uid = entity.get("uid") if isinstance(entity, dict) else None
        if isinstance(uid, dict) and uid.get("type") == KEY_TYPE:
            problems.append(f"{path}: entity [{i}]: {KEY_TYPE} entities come from the API keys, not from this file")
    if problems:
        raise PolicyError(problems)
    try:
        return cedarpy.Entities.from_json_str(text, schema)
    except ValueError as exc:
        raise PolicyError([f"{path}: invalid Cedar entities: {exc}"]) from None


def _reads_context(node: Any) -> bool:
    if isinstance(node, dict):
        return node.get("Var") == "context" or any(_reads_context(v) for v in node.values())
    if isinstance(node, list):
        return any(_reads_context(v) for v in node)
    return False


@dataclass(slots=True)
class _Policy:
    id: str
    where: str  # "file:line" (or "file" when the line is unknown), for messages
    est: dict[str, Any]


def _index(cedar_id: str) -> int:
    """The position of a policy in its file from the id Cedar gives it ("policy3" -> 3)."""
    return int(cedar_id.removeprefix("policy"))


def _syntax_error(path: Path, text: str, reason: str) -> str:
    """Name the first policy that fails to parse on its own, with its line."""
    for n, stmt in enumerate(split_statements(text), 1):
        try:
            cedarpy.policies_to_json_str(stmt.text)
        except ValueError as exc:
            return f"{path}:{stmt.line}: policy #{n}: syntax error: {exc}"
    return f"{path}: syntax error: {reason}"


def _file_policies(path: Path, schema: cedarpy.Schema, problems: list[str]) -> Iterator[_Policy]:
    text = _read(path, "Cedar policies", problems)
    if text is None:
        return
    try:
        doc = json.loads(cedarpy.policies_to_json_str(text))
    except ValueError as exc:
        problems.append(_syntax_error(path, text, str(exc)))
        return
    statements = split_statements(text)
    count = len(doc["staticPolicies"]) + len(doc["templates"])
    lines = [s.line for s in statements] if len(statements) == count else None

    def where(cedar_id: str) -> str:
        return f"{path}:{lines[_index(cedar_id)]}" if lines is not None else str(path)

    def label(cedar_id: str, est: dict[str, Any]) -> str:
        return (est.get("annotations") or {}).get("id") or f"{path}#{_index(cedar_id) + 1}"

    for cedar_id in doc["templates"]:
        problems.append(
            f"{where(cedar_id)}: policy #{_index(cedar_id) + 1}: templates (?principal, ?resource) are not supported"
        )
    result = cedarpy.validate_policies(text, schema)
    statics: dict[str, dict[str, Any]] = doc["staticPolicies"]
    for err in result.errors:
        est = statics.get(err.policy_id)
        if est is None:
            problems.append(f"{path}: {err.error}")
            continue
        reason = _CEDAR_POLICY_ID.sub("", err.error)
        problems.append(f"{where(err.policy_id)}: policy {label(err.policy_id, est)!r}: {reason}")
    for cedar_id, est in sorted(statics.items(), key=lambda kv: _index(kv[0])):
        yield _Policy(label(cedar_id, est), where(cedar_id), est)


def compile_policies(config: PolicyConfig) -> Compiled:
    """Parse and validate everything the config names; :class:`PolicyError` lists every problem."""
    fp = fingerprint(config)
    schema = load_schema(config.schema_file)
    entities = _load_entities(config.entities_file, schema) if config.entities_file is not None else None
    problems: list[str] = []
    files = policy_files(config)
    for entry in config.files:
        if entry.is_dir() and not any(f.is_relative_to(entry) for f in files):
            problems.append(f"{entry}: directory holds no .cedar files")
    policies: dict[str, _Policy] = {}
    for path in files:
        for policy in _file_policies(path, schema, problems):
            seen = policies.get(policy.id)
            if seen is not None:
                problems.append(f"{policy.where}: policy id {policy.id!r} is already used at {seen.where}")
            policies[policy.id] = policy
    if not policies and not problems:
        problems.append(
            f"{', '.join(map(str, config.files))}: no policies; Cedar would deny every request "
            "(leave policy.files empty to turn authorization off)"
        )
    if problems:
        raise PolicyError(problems)
    doc = {"staticPolicies": {p.id: p.est for p in policies.values()}, "templates": {}, "templateLinks": []}
    return Compiled(
        policies=cedarpy.PolicySet.from_json_str(json.dumps(doc)),
        schema=schema,
        entities=entities,
        ids=tuple(policies),
        uses_context=any(_reads_context(p.est) for p in policies.values()),
        fingerprint=fp,
    )
