"""PII: Presidio's recognizers and checksums on candidate spans; no value ever in a detection."""

from __future__ import annotations

import pytest

from goldenpath.guard import PIIDetector
from goldenpath.guard._pii import candidate_spans


def found(pii: PIIDetector, text: str) -> list[tuple[str, str]]:
    return [(d.detail, text[d.start : d.end]) for d in pii.detect(text, 0.4)]


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("write to jane.roe@example.org today", "EMAIL_ADDRESS", "jane.roe@example.org"),
        ("my card is 4111 1111 1111 1111 thanks", "CREDIT_CARD", "4111 1111 1111 1111"),
        ("card 5500-0000-0000-0004 please", "CREDIT_CARD", "5500-0000-0000-0004"),
        ("IBAN DE89 3704 0044 0532 0130 00 for rent", "IBAN_CODE", "DE89 3704 0044 0532 0130 00"),
        ("pay GB82WEST12345698765432 now", "IBAN_CODE", "GB82WEST12345698765432"),
        ("server at 192.168.10.20 is down", "IP_ADDRESS", "192.168.10.20"),
        ("ipv6 2001:db8::8a2e:370:7334 works", "IP_ADDRESS", "2001:db8::8a2e:370:7334"),
        ("ssn 536-22-8726 on file", "US_SSN", "536-22-8726"),
        ("NHS number 943 476 5919 here", "UK_NHS", "943 476 5919"),
        ("call me at +1 415-555-0132 tonight", "PHONE_NUMBER", "+1 415-555-0132"),
    ],
)
def test_entities_found(pii: PIIDetector, text: str, entity: str, value: str) -> None:
    assert (entity, value) in found(pii, text)


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("my card is 4111 1111 1111 1112 thanks", "CREDIT_CARD"),  # fails Luhn
        ("IBAN DE89 3704 0044 0532 0130 01 for rent", "IBAN_CODE"),  # fails mod-97
        ("NHS number 943 476 5918 here", "UK_NHS"),  # fails mod-11
        ("ssn 000-12-3456 on file", "US_SSN"),  # area 000 is never issued
        ("write to jane@localhost-nowhere.invalidtld", "EMAIL_ADDRESS"),  # not a public suffix
    ],
)
def test_checksums_reject_invalid(pii: PIIDetector, text: str, entity: str) -> None:
    assert entity not in {e for e, _ in found(pii, text)}


def test_no_value_in_detections(pii: PIIDetector) -> None:
    text = "mail jane.roe@example.org, card 4111 1111 1111 1111"
    dumped = "".join(d.model_dump_json() for d in pii.detect(text))
    assert "jane.roe" not in dumped and "4111" not in dumped


def test_prefilter_skips_plain_text() -> None:
    assert candidate_spans("What is the capital of France? Tell me about its history.") == []
    assert len(candidate_spans("ring 030 1234567 or mail a@b.co")) == 2


def test_dates_and_versions_are_not_pii(pii: PIIDetector) -> None:
    assert found(pii, "released on 2024-05-01 as version 3.11.7, build 20240501") == []


def test_entity_selection() -> None:
    only_email = PIIDetector(["EMAIL_ADDRESS"])
    assert [d.detail for d in only_email.detect("a@example.com 4111 1111 1111 1111")] == ["EMAIL_ADDRESS"]
    with pytest.raises(ValueError, match="unknown PII"):
        PIIDetector(["PERSON"])
