"""Loading: every problem in policies, schema or entities names the file, the line or policy, and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldenpath.policy import DEFAULT_SCHEMA, PolicyConfig, PolicyEngine, PolicyError, load_policy_engine
from tests.policy.conftest import EXAMPLES

GOOD = '@id("any-model")\npermit (principal, action == Goldenpath::Action::"invoke_model", resource);\n'


def load(tmp_path: Path, text: str, **config: Path) -> PolicyEngine:
    path = tmp_path / "p.cedar"
    path.write_text(text, encoding="utf-8")
    return PolicyEngine(PolicyConfig(files=[path], **config))


def problems(tmp_path: Path, text: str, **config: Path) -> tuple[str, ...]:
    with pytest.raises(PolicyError) as info:
        load(tmp_path, text, **config)
    assert all(p in str(info.value) for p in info.value.problems)
    return info.value.problems


def test_no_files_means_authorization_off() -> None:
    assert load_policy_engine(PolicyConfig()) is None
    assert not PolicyConfig().enabled
    with pytest.raises(ValueError, match="authorization is off"):
        PolicyEngine(PolicyConfig())


def test_examples_load_with_ids() -> None:
    engine = load_policy_engine(PolicyConfig(files=[EXAMPLES]))
    assert engine is not None
    assert {"acme-small", "eng-gpt-large", "shell-ops-only", "admin-keys-only", "suspended"} <= set(engine.policy_ids)


def test_policies_without_id_are_named_by_file_and_position(tmp_path: Path) -> None:
    engine = load(tmp_path, GOOD + 'permit (principal, action == Goldenpath::Action::"retrieve", resource);\n')
    assert engine.policy_ids == ("any-model", f"{tmp_path / 'p.cedar'}#2")


def test_syntax_error_names_file_line_and_reason(tmp_path: Path) -> None:
    text = GOOD + "\n// a comment; with a semicolon\npermit (principal, action, resource)\n  when { 1 + };\n"
    (problem,) = problems(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'p.cedar'}:5: policy #2: syntax error: ")
    assert "unexpected token" in problem


def test_missing_semicolon_at_the_end(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, GOOD + "\npermit (principal, action, resource)")
    assert problem.startswith(f"{tmp_path / 'p.cedar'}:4: policy #2: syntax error")


def test_unknown_entity_type(tmp_path: Path) -> None:
    text = GOOD + '@id("typo-type")\npermit (principal in Goldenpath::Team::"eng", action, resource);\n'
    found = problems(tmp_path, text)
    assert any(
        p.startswith(f"{tmp_path / 'p.cedar'}:3: policy 'typo-type': ")
        and "unrecognized entity type `Goldenpath::Team`" in p
        for p in found
    ), found


def test_unknown_attribute(tmp_path: Path) -> None:
    text = 'permit (principal, action, resource)\nwhen { principal.role == "admin" };\n'
    (problem,) = problems(tmp_path, text)
    assert problem.startswith(f"{tmp_path / 'p.cedar'}:1: policy '{tmp_path / 'p.cedar'}#1': ")
    assert "attribute `role` on entity type `Goldenpath::Key` not found" in problem


def test_wrong_context_attribute_for_action(tmp_path: Path) -> None:
    text = 'permit (principal, action == Goldenpath::Action::"retrieve", resource)\nwhen { context.stream };\n'
    (problem,) = problems(tmp_path, text)
    assert "`stream`" in problem


def test_every_bad_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.cedar").write_text("permit (principal, action, resource) when { principal.x };\n")
    (tmp_path / "b.cedar").write_text("forbid (principal, action resource);\n")
    with pytest.raises(PolicyError) as info:
        PolicyEngine(PolicyConfig(files=[tmp_path]))
    assert [p.split(":")[0] for p in info.value.problems] == [str(tmp_path / "a.cedar"), str(tmp_path / "b.cedar")]


def test_templates_refused(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, "permit (principal == ?principal, action, resource);\n")
    assert "templates" in problem and ":1: policy #1" in problem


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.cedar").write_text(GOOD)
    (tmp_path / "b.cedar").write_text("\n" + GOOD)
    with pytest.raises(PolicyError, match=r"b\.cedar:2: policy id 'any-model' is already used at .*a\.cedar:1"):
        PolicyEngine(PolicyConfig(files=[tmp_path]))


def test_missing_file_and_empty_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PolicyError) as info:
        PolicyEngine(PolicyConfig(files=[tmp_path / "nope.cedar", empty]))
    assert info.value.problems == (
        f"{empty}: directory holds no .cedar files",
        f"{tmp_path / 'nope.cedar'}: cannot read Cedar policies: No such file or directory",
    )


def test_no_policies_at_all_is_refused(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, "// nothing yet\n")
    assert "no policies" in problem and "deny every request" in problem


def test_schema_syntax_error(tmp_path: Path) -> None:
    schema = tmp_path / "s.cedarschema"
    schema.write_text("namespace Goldenpath { entity Key }")
    (problem,) = problems(tmp_path, GOOD, schema_file=schema)
    assert problem.startswith(f"{schema}: invalid Cedar schema: ")


def test_custom_schema_must_fit_what_the_gateway_builds(tmp_path: Path) -> None:
    text = DEFAULT_SCHEMA.read_text().replace("is_admin: Bool,", "is_admin: Bool, team: String,")
    text = text.replace("action admin ", "action administer ")
    schema = tmp_path / "s.cedarschema"
    schema.write_text(text)
    found = problems(tmp_path, GOOD, schema_file=schema)
    assert any("does not fit the key entities" in p and "exactly the attributes" in p for p in found), found
    assert any("must declare action 'admin'" in p for p in found), found


def test_custom_schema_with_resource_attributes(tmp_path: Path) -> None:
    """A schema may give resources attributes, with their values in the entities file."""
    schema = tmp_path / "s.cedarschema"
    schema.write_text(DEFAULT_SCHEMA.read_text().replace("entity Model;", "entity Model { tier: String };"))
    entities = tmp_path / "entities.json"
    entities.write_text(
        '[{"uid": {"type": "Goldenpath::Model", "id": "big"}, "attrs": {"tier": "premium"}, "parents": []}]'
    )
    text = (
        'permit (principal, action == Goldenpath::Action::"invoke_model", resource)\n'
        'when { resource.tier != "premium" };\n'
    )
    engine = load(tmp_path, text, schema_file=schema, entities_file=entities)
    assert engine.policy_ids == (f"{tmp_path / 'p.cedar'}#1",)
    entities.write_text('[{"uid": {"type": "Goldenpath::Model", "id": "big"}, "attrs": {"tier": 3}, "parents": []}]')
    (problem,) = problems(tmp_path, text, schema_file=schema, entities_file=entities)
    assert problem.startswith(f"{entities}: invalid Cedar entities: ")


def test_entities_file_may_not_define_keys(tmp_path: Path) -> None:
    entities = tmp_path / "entities.json"
    entities.write_text('[{"uid": {"type": "Goldenpath::Key", "id": "k"}, "attrs": {}, "parents": []}]')
    (problem,) = problems(tmp_path, GOOD, entities_file=entities)
    assert problem.startswith(f"{entities}: entity [0]: Goldenpath::Key entities come from the API keys")


def test_entities_file_not_json(tmp_path: Path) -> None:
    entities = tmp_path / "entities.json"
    entities.write_text("[\n{oops}\n]")
    (problem,) = problems(tmp_path, GOOD, entities_file=entities)
    assert problem.startswith(f"{entities}:2: not valid JSON")


def test_config_forbids_unknown_fields() -> None:
    with pytest.raises(ValueError, match="extra"):
        PolicyConfig.model_validate({"files": [], "schema": "x"})


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    (tmp_path / "a.cedar").write_text(GOOD)
    (tmp_path / ".#a.cedar").write_text("not cedar")  # an editor's lock file is skipped
    engine = PolicyEngine(PolicyConfig(files=[tmp_path / "a.cedar", tmp_path]))
    assert engine.policy_ids == ("any-model",)
