"""Authorization decisions with Cedar: pre-parsed handles, a decision cache, reloads that keep the
old policies when the new ones are bad."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import cedarpy
import orjson

from goldenpath.policy._config import PolicyConfig
from goldenpath.policy._load import Compiled, Fingerprint, PolicyError, compile_policies, fingerprint
from goldenpath.policy._model import ACTION_TYPE, ACTIONS, KEY_TYPE, RESOURCE_TYPES, Action, Caller, key_entity

_NOUNS = {"invoke_model": "model", "retrieve": "collection", "call_tool": "tool", "admin": "admin API"}


@dataclass(slots=True, frozen=True)
class Decision:
    """The answer to one request. ``reasons`` are the ids of the policies that decided: the permits
    that allowed it, or the forbids that denied it (empty when no permit matched). ``errors`` are
    policies that failed to evaluate, or why the request itself could not be evaluated (then denied)."""

    allowed: bool
    reasons: tuple[str, ...]
    errors: tuple[str, ...]
    cached: bool
    message: str  # one sentence for logs and for the 403 body


@dataclass(slots=True)
class _State:
    compiled: Compiled
    generation: int
    decisions: dict[Hashable, Decision] = dataclasses.field(default_factory=dict)
    entities: dict[Hashable, cedarpy.Entities] = dataclasses.field(default_factory=dict)


def _describe(caller: Caller, action: str, resource: str, result: cedarpy.AuthzResult) -> Decision:
    reasons = tuple(result.diagnostics.reasons)
    errors = tuple(result.diagnostics.errors)
    policies = ", ".join(repr(r) for r in reasons)
    target = f"{_NOUNS[action]} {resource!r}" if action != "admin" else _NOUNS[action]
    if result.decision is cedarpy.Decision.Allow:
        return Decision(True, reasons, errors, False, f"{action} on {target} permitted by policy {policies}")
    if reasons:
        message = f"{action} on {target} denied by policy {policies}"
    elif result.decision is cedarpy.Decision.NoDecision:
        message = f"{action} on {target} denied: the request could not be evaluated: {'; '.join(errors)}"
    else:
        message = f"{action} on {target} denied: no policy permits key {caller.name!r} (tenant {caller.tenant!r})"
    return Decision(False, reasons, errors, False, message)


class PolicyEngine:
    """Cedar decisions for the gateway. Thread-safe: a (re)load swaps one immutable snapshot, and the
    caches belong to that snapshot, so a reload invalidates them all at once."""

    def __init__(self, config: PolicyConfig) -> None:
        if not config.enabled:
            raise ValueError("policy.files is empty: authorization is off (load_policy_engine returns None)")
        self.config = config
        self._lock = threading.Lock()  # cache writes
        self._reload_lock = threading.Lock()
        self._state = _State(compile_policies(config), generation=1)
        self._failed: Fingerprint | None = None
        self.last_error: PolicyError | None = None

    @property
    def generation(self) -> int:
        """Goes up by one on every successful reload."""
        return self._state.generation

    @property
    def policy_ids(self) -> tuple[str, ...]:
        return self._state.compiled.ids

    def authorize(
        self, principal: Caller, action: Action, resource: str, context: Mapping[str, Any] | None = None
    ) -> Decision:
        """May ``principal`` do ``action`` on ``resource`` (an alias, collection, tool, or "api" for
        admin)? ``context`` must match the action's context in the schema; one that does not is denied
        with the reason in ``errors``."""
        if action not in RESOURCE_TYPES:
            raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        state = self._state
        ctx = context or {}
        who = (principal.key_id, principal.tenant, principal.name, principal.is_admin, principal.groups)
        # When no policy reads the context, decisions depend only on its shape (checked against the
        # schema when Cedar evaluates), so its attribute names key the cache instead of its values.
        ctx_key = orjson.dumps(ctx, option=orjson.OPT_SORT_KEYS) if state.compiled.uses_context else frozenset(ctx)
        key = (who, action, resource, ctx_key)
        hit = state.decisions.get(key)
        if hit is not None:
            return hit
        result = cedarpy.is_authorized(
            {
                "principal": {"type": KEY_TYPE, "id": principal.key_id},
                "action": {"type": ACTION_TYPE, "id": action},
                "resource": {"type": RESOURCE_TYPES[action], "id": resource},
                "context": dict(ctx),
            },
            state.compiled.policies,
            self._entities(state, who, principal),
            state.compiled.schema,
        )
        decision = _describe(principal, action, resource, result)
        # A request Cedar could not evaluate (a context off the schema) is not cached: each such call
        # reports its error.
        if result.decision is not cedarpy.Decision.NoDecision:
            self._remember(state.decisions, key, dataclasses.replace(decision, cached=True))
        return decision

    def _entities(self, state: _State, who: Hashable, principal: Caller) -> cedarpy.Entities:
        handle = state.entities.get(who)
        if handle is None:
            delta = orjson.dumps([key_entity(principal)]).decode()
            base = state.compiled.entities
            handle = cedarpy.Entities.from_json_str(delta) if base is None else base.with_added_json_str(delta)
            self._remember(state.entities, who, handle)
        return handle

    def _remember(self, cache: dict[Hashable, Any], key: Hashable, value: Any) -> None:
        limit = self.config.cache_size
        if limit == 0:
            return
        with self._lock:
            if len(cache) >= limit:
                cache.pop(next(iter(cache)), None)  # the oldest entry
            cache[key] = value

    def reload(self) -> None:
        """Read every file again. On any problem raise :class:`PolicyError` and keep the policies in force."""
        with self._reload_lock:
            compiled = compile_policies(self.config)
            self._state = _State(compiled, generation=self._state.generation + 1)
            self._failed = None
            self.last_error = None

    def reload_if_changed(self) -> bool:
        """Reload when a file was edited, added or removed since the last load; True when it did.
        A bad change raises :class:`PolicyError` once (also kept in ``last_error``) and the policies in
        force stay until the files change again."""
        current = fingerprint(self.config)
        if current == self._state.compiled.fingerprint or current == self._failed:
            return False
        try:
            self.reload()
        except PolicyError as exc:
            self._failed = current
            self.last_error = exc
            raise
        return True


def load_policy_engine(config: PolicyConfig) -> PolicyEngine | None:
    """The engine for ``config``, or None when no policy files are configured (authorization off)."""
    return PolicyEngine(config) if config.enabled else None
