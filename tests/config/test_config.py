"""A bad config fails at start naming the file, the field path and the reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from goldenpath.config import ConfigError, OpenAIDeployment, load_settings

MINIMAL = """
models:
  - name: fake-model
    deployments:
      - provider: openai
        base_url: http://127.0.0.1:8001/v1
        model: fake-model
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gp.yaml"
    p.write_text(text)
    return p


def test_minimal_form(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, MINIMAL), env={})
    dep = s.models[0].deployments[0]
    assert isinstance(dep, OpenAIDeployment) and dep.base_url == "http://127.0.0.1:8001/v1"
    assert s.server.port == 8080 and s.server.host == "127.0.0.1"


def test_defaults_serve_the_embedded_models() -> None:
    s = load_settings(None, env={})
    assert [m.name for m in s.models] == ["smollm2-135m-instruct", "gemma-3-270m", "all-minilm-l6-v2"]
    assert s.data_dir == Path(".goldenpath")


def test_environment_overrides(tmp_path: Path) -> None:
    s = load_settings(
        write(tmp_path, MINIMAL),
        env={"GOLDENPATH_HOME": "/x", "GOLDENPATH_DATABASE_URL": "postgresql://h/db"},
    )
    assert s.data_dir == Path("/x") and s.database_url == "postgresql://h/db"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            MINIMAL.replace("base_url: http://127.0.0.1:8001/v1", "base_url: 127.0.0.1:8001"),
            "models[0].deployments[0].base_url: String should match pattern",
        ),
        (
            MINIMAL.replace("        model: fake-model\n", ""),
            "models[0].deployments[0].model: Field required",
        ),
        (
            MINIMAL.replace("provider: openai", "provider: magic"),
            "models[0].deployments[0]: Input tag 'magic'",
        ),
        (MINIMAL + "        api_key: sk-123\n", "secrets may not be written in the config file"),
        (
            MINIMAL + "        retries: 3\n",
            "models[0].deployments[0].retries: Extra inputs are not permitted",
        ),
        (MINIMAL + "server:\n  port: 99999\n", "server.port: Input should be less than or equal to 65535"),
        (MINIMAL + "routing:\n  strategy: fastest\n", "routing.strategy: Extra inputs are not permitted"),
        (
            MINIMAL.replace("  - name: fake-model", "  - name: fake-model\n    strategy: fastest"),
            "models[0].strategy: Input should be 'priority', 'weighted', 'least-latency' or 'lowest-cost'",
        ),
        (MINIMAL + MINIMAL.replace("models:\n", ""), "model name 'fake-model' is defined twice"),
        ("models: [1, 2", "not valid YAML"),
        ("- just\n- a list\n", "(top level): expected a mapping"),
    ],
)
def test_errors_name_file_field_and_reason(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert expected in message, message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_serve_exits_with_the_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("model: fake-model", "model: ''"))
    out = subprocess.run(
        [sys.executable, "-m", "goldenpath", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert f"{path}: invalid configuration" in out.stderr
    assert "models[0].deployments[0].model: String should have at least 1 character" in out.stderr


def test_unset_api_key_env_is_reported_at_start(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "        api_key_env: GP_TEST_UNSET_KEY\n")
    out = subprocess.run(
        [sys.executable, "-m", "goldenpath", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin"},
    )
    assert out.returncode != 0
    assert "GP_TEST_UNSET_KEY (api_key_env) is not set" in out.stderr


@pytest.mark.parametrize("example", sorted((Path(__file__).parents[2] / "examples").glob("*.yaml")))
def test_examples_are_valid(example: Path) -> None:
    load_settings(example, env={})


def test_policy_files_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "gp.yaml"
    config.parent.mkdir()
    config.write_text(
        "policy:\n  files: [policies/, /etc/abs.cedar]\n  schema_file: schema.cedarschema\n", encoding="utf-8"
    )
    policy = load_settings(config, env={}).policy
    assert policy.files == [config.parent / "policies", Path("/etc/abs.cedar")]
    assert policy.schema_file == config.parent / "schema.cedarschema"
    assert policy.entities_file is None
    assert not load_settings(None, env={}).policy.enabled


def test_retrieval_on_a_qdrant_server_is_checked_at_start(tmp_path: Path) -> None:
    from goldenpath.gateway import Gateway

    config = tmp_path / "gp.yaml"
    config.write_text(
        "retrieval:\n  qdrant_url: http://127.0.0.1:6333\n  qdrant_api_key_env: GP_TEST_QDRANT_KEY\nmodels: []\n"
    )
    settings = load_settings(config, env={})
    with pytest.raises(ValueError, match="qdrant_api_key_env names GP_TEST_QDRANT_KEY, which is not set"):
        Gateway(settings, env={})
    gateway = Gateway(settings, env={"GP_TEST_QDRANT_KEY": "k"})  # nothing is contacted before a retrieval
    assert gateway.retrieval._qdrant is not None and gateway.retrieval._qdrant.url == "http://127.0.0.1:6333"
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval:\n  qdrant_url: qdrant.local:6333\n")
    with pytest.raises(ConfigError, match=r"retrieval\.qdrant_url"):
        load_settings(bad, env={})
