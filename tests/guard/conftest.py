"""Shared detectors: loading the artifact and Presidio's recognizers once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from goldenpath.guard import Guard, InjectionDetector, PIIDetector, SecretsDetector

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "prompt-injection"


@pytest.fixture(scope="session")
def injection() -> InjectionDetector:
    return InjectionDetector()


@pytest.fixture(scope="session")
def pii() -> PIIDetector:
    return PIIDetector()


@pytest.fixture(scope="session")
def secrets() -> SecretsDetector:
    return SecretsDetector()


@pytest.fixture(scope="session")
def guard(injection: InjectionDetector, pii: PIIDetector, secrets: SecretsDetector) -> Guard:
    return Guard(injection=injection, pii=pii, secrets=secrets)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "deepset_train.parquet").exists():
        pytest.skip(f"training data not at {DATA}")
    return DATA
