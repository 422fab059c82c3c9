"""Decisions: the cache, reloads (good and bad), context, and concurrent use."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from goldenpath.policy import PolicyConfig, PolicyEngine, PolicyError
from tests.policy.conftest import CONTEXT, key

ALICE = key("alice", "acme", ("eng",))
SMALL = (
    '@id("acme-small")\n'
    'permit (principal in Goldenpath::Tenant::"acme", action, resource == Goldenpath::Model::"small");\n'
)
NO_ACME = '@id("no-acme")\nforbid (principal in Goldenpath::Tenant::"acme", action, resource);\n'


def write(path: Path, text: str) -> None:
    """Write and move the mtime on, so a change is seen whatever the file system's timer resolution."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 10**9, before + 10**9))


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "p.cedar"
    write(path, SMALL)
    return path


def test_second_decision_is_cached(policy_file: Path) -> None:
    engine = PolicyEngine(PolicyConfig(files=[policy_file]))
    first = engine.authorize(ALICE, "invoke_model", "small", CONTEXT["invoke_model"])
    second = engine.authorize(ALICE, "invoke_model", "small", CONTEXT["invoke_model"])
    assert (first.allowed, first.cached) == (True, False)
    assert (second.allowed, second.cached) == (True, True)
    assert second.reasons == first.reasons == ("acme-small",)
    # Another key, group set or resource is a different entry.
    assert not engine.authorize(
        key("alice", "acme", ("eng", "x")), "invoke_model", "small", CONTEXT["invoke_model"]
    ).cached
    assert not engine.authorize(ALICE, "invoke_model", "other", CONTEXT["invoke_model"]).cached


def test_no_cache_when_size_is_zero(policy_file: Path) -> None:
    engine = PolicyEngine(PolicyConfig(files=[policy_file], cache_size=0))
    for _ in range(2):
        assert not engine.authorize(ALICE, "invoke_model", "small", CONTEXT["invoke_model"]).cached


def test_cache_is_bounded(policy_file: Path) -> None:
    engine = PolicyEngine(PolicyConfig(files=[policy_file], cache_size=2))
    for alias in ("a", "b", "c"):
        engine.authorize(ALICE, "invoke_model", alias, CONTEXT["invoke_model"])
    assert engine.authorize(ALICE, "invoke_model", "c", CONTEXT["invoke_model"]).cached
    assert not engine.authorize(ALICE, "invoke_model", "a", CONTEXT["invoke_model"]).cached  # the oldest went


def test_reload_invalidates_cached_decisions(policy_file: Path) -> None:
    engine = PolicyEngine(PolicyConfig(files=[policy_file]))
    engine.authorize(ALICE, "invoke_model", "small", CONTEXT["invoke_model"])
    assert engine.authorize(ALICE, "invoke_model", "small", CONTEXT["invoke_model"]).cached
    write(policy_file, SMALL + NO_ACME)
    engine.reload()
    assert engine.generation == 2
    decision = engine.authorize(ALICE, "invoke_model", "small", CONTEXT["invoke_model"])
    assert (decision.allowed, decision.cached, decision.reasons) == (False, False, ("no-acme",))


def test_bad_reload_keeps_the_policies_in_force(policy_file: Path) -> None:
    engine = PolicyEngine(PolicyConfig(files=[policy_file]))
    write(policy_file, SMALL + "forbid (principal, action, resource) when { principal.nope };\n")
    with pytest.raises(PolicyError, match=r"p\.cedar:3: .*attribute `nope`"):
        engine.reload()
    assert engine.generation == 1
    assert engine.authorize(ALICE, "invoke_model", "small", CONTEXT["invoke_model"]).allowed


def test_reload_if_changed(policy_file: Path) -> None:
    engine = PolicyEngine(PolicyConfig(files=[policy_file.parent]))
    assert engine.reload_if_changed() is False
    added = policy_file.parent / "more.cedar"
    write(added, NO_ACME)
    assert engine.reload_if_changed() is True
    assert engine.policy_ids == ("no-acme", "acme-small")  # files in name order
    # A bad edit is reported once, kept in last_error, and the policies in force stay.
    write(added, "forbid (principal, action, resource)")
    with pytest.raises(PolicyError, match="syntax error"):
        engine.reload_if_changed()
    assert engine.last_error is not None and "more.cedar:1" in str(engine.last_error)
    assert engine.reload_if_changed() is False
    assert engine.generation == 2
    assert not engine.authorize(ALICE, "invoke_model", "small", CONTEXT["invoke_model"]).allowed
    # Fixing the file, or removing it, reloads.
    added.unlink()
    assert engine.reload_if_changed() is True
    assert engine.last_error is None
    assert engine.authorize(ALICE, "invoke_model", "small", CONTEXT["invoke_model"]).allowed


def test_schema_and_entities_files_are_watched(tmp_path: Path, policy_file: Path) -> None:
    entities = tmp_path / "entities.json"
    write(entities, "[]")
    engine = PolicyEngine(PolicyConfig(files=[policy_file], entities_file=entities))
    write(entities, '[{"uid": {"type": "Goldenpath::Group", "id": "sre"}, "attrs": {}, "parents": []}]')
    assert engine.reload_if_changed() is True


def test_context_values_key_the_cache_only_when_a_policy_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "p.cedar"
    write(
        path,
        SMALL + '@id("big-requests")\nforbid (principal, action == Goldenpath::Action::"invoke_model", resource)\n'
        "when { context.estimated_tokens > 10000 };\n",
    )
    engine = PolicyEngine(PolicyConfig(files=[path]))
    small_request = dict(CONTEXT["invoke_model"], estimated_tokens=100)
    big_request = dict(CONTEXT["invoke_model"], estimated_tokens=20000)
    assert engine.authorize(ALICE, "invoke_model", "small", small_request).allowed
    big = engine.authorize(ALICE, "invoke_model", "small", big_request)
    assert (big.allowed, big.cached, big.reasons) == (False, False, ("big-requests",))
    assert engine.authorize(ALICE, "invoke_model", "small", dict(big_request)).cached


def test_context_off_the_schema_is_denied_and_not_cached(policy_file: Path) -> None:
    engine = PolicyEngine(PolicyConfig(files=[policy_file]))
    for _ in range(2):
        decision = engine.authorize(ALICE, "invoke_model", "small", {"stream": True})
        assert (decision.allowed, decision.cached, decision.reasons) == (False, False, ())
        assert decision.errors and "the request could not be evaluated" in decision.message
    assert engine.authorize(ALICE, "invoke_model", "small", CONTEXT["invoke_model"]).allowed


def test_runtime_policy_errors_are_reported(tmp_path: Path) -> None:
    """A policy that errs while evaluating is skipped (Cedar's rule) and named in ``errors``."""
    path = tmp_path / "p.cedar"
    write(
        path,
        SMALL + '@id("overflow")\nforbid (principal, action == Goldenpath::Action::"invoke_model", resource)\n'
        "when { context.estimated_tokens * 9223372036854775807 > 0 };\n",
    )
    engine = PolicyEngine(PolicyConfig(files=[path]))
    decision = engine.authorize(ALICE, "invoke_model", "small", CONTEXT["invoke_model"])
    assert decision.allowed
    assert any("overflow" in e for e in decision.errors), decision.errors


def test_unknown_action(policy_file: Path) -> None:
    engine = PolicyEngine(PolicyConfig(files=[policy_file]))
    with pytest.raises(ValueError, match="unknown action 'delete'"):
        engine.authorize(ALICE, "delete", "small")  # type: ignore[arg-type]


def test_concurrent_decisions_during_reloads(policy_file: Path) -> None:
    """Threads asking while another reloads always get the decision of one whole policy set."""
    engine = PolicyEngine(PolicyConfig(files=[policy_file], cache_size=50))
    keys = [key(f"k{i}", "acme") for i in range(20)]
    seen: list[tuple[bool, tuple[str, ...]]] = []
    failures: list[BaseException] = []

    def ask() -> None:
        try:
            for i in range(300):
                d = engine.authorize(keys[i % 20], "invoke_model", "small", CONTEXT["invoke_model"])
                seen.append((d.allowed, d.reasons))
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for text in (SMALL + NO_ACME, SMALL) * 3:
        write(policy_file, text)
        engine.reload()
    for t in threads:
        t.join()
    assert failures == []
    assert set(seen) <= {(True, ("acme-small",)), (False, ("no-acme",))}
    assert engine.generation == 7
