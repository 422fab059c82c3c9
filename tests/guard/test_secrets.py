"""Secrets: detect-secrets' plugins on free text; type and span reported, the secret never."""

from __future__ import annotations

import pytest

from goldenpath.guard import SecretsDetector

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn\n-----END RSA PRIVATE KEY-----"
CASES = [
    ("AKIAIOSFODNN7EXAMPLE", "AWS Access Key"),
    ("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", "GitHub Token"),
    ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "Slack Token"),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "Stripe Access Key"),
    (JWT, "JSON Web Token"),
    (KEY, "Private Key"),
    ("Zx8Qp2Lw9Rt5Yv3Nb7Mk1Jh6Gf4Ds0Aa", "Base64 High Entropy String"),
]


@pytest.mark.parametrize(("secret", "kind"), CASES)
def test_found_with_exact_span_and_not_echoed(secrets: SecretsDetector, secret: str, kind: str) -> None:
    text = f"here is my credential {secret} please keep it safe"
    detections = secrets.detect(text)
    assert [(d.detail, text[d.start : d.end]) for d in detections] == [(kind, secret)]
    dumped = "".join(d.model_dump_json() for d in detections)
    assert secret not in dumped and secret[4:14] not in dumped


def test_password_in_url(secrets: SecretsDetector) -> None:
    text = "connect to https://admin:hunter2secretpw@db.example.com/app"
    (d,) = secrets.detect(text)
    assert d.detail == "Basic Auth Credentials" and text[d.start : d.end] == "hunter2secretpw"


def test_prose_is_clean(secrets: SecretsDetector) -> None:
    text = "Please summarise the quarterly report and list the three biggest risks for next year. " * 20
    assert secrets.detect(text) == []


def test_entropy_can_be_turned_off() -> None:
    assert SecretsDetector(entropy=False).detect("token Zx8Qp2Lw9Rt5Yv3Nb7Mk1Jh6Gf4Ds0Aa") == []
