"""PII with Presidio's pattern recognizers, offline, on candidate spans only.

Presidio's ``AnalyzerEngine`` runs a spaCy pipeline over the whole text and every recognizer over all
of it. Here cheap prefilter patterns, each run only when its trigger character is in the text, find
the few spans that could be PII at all (something with an ``@``, a run of digits and separators, an
IBAN-shaped token, an IPv4- or IPv6-shaped token); each span is widened to whitespace and handed to
the recognizers that can match that kind of span, whose own patterns and checksum validators (Luhn for
cards, mod-97 for IBAN, NHS mod-11, SSN invalid ranges, offline public-suffix check for email)
decide. Person names are not detected: Presidio finds them only through an NER model (spaCy,
transformers, GLiNER), none of which is available offline here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import tldextract
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    NhsRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

from goldenpath.guard._types import Detection

# The snapshot of the public suffix list bundled with tldextract; never fetched.
_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class _OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer, validating the domain against the bundled suffix list only."""

    def validate_result(self, pattern_text: str) -> bool:
        return _TLD(pattern_text).fqdn != ""


ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN", "UK_NHS")

# Candidate kinds and what they look like. Digits: at least 6 digits with separators between them.
# Each kind is searched only when its trigger character is in the text at all.
_KINDS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("email", "@", re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")),
    ("ipv6", ":", re.compile(r"\b[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}\b")),
    ("iban", "", re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,8}(?:[ ]?[A-Z0-9]{1,4})?\b")),
    ("ipv4", ".", re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")),
    ("digits", "", re.compile(r"[+(]?\d(?:[\d\s().\-/]{0,3}\d){5,}")),
)
_DIGIT = re.compile(r"\d")
_NOT_PHONE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./]\d{1,2}[./]\d{2,4}|\d{1,3}(?:\.\d{1,3}){3}")  # dates, IPv4


def _phone_shaped(window: str) -> bool:
    digits = sum(c.isdigit() for c in window)
    return 7 <= digits <= 15 and _NOT_PHONE.search(window) is None


_NO_NLP: Any = None  # pattern recognizers and the phone matcher read no NLP artifacts (no spaCy here)
_WIDEN = 24  # characters to look around a candidate (a phone's "+" or "(" prefix, a card's groups)


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int
    kinds: frozenset[str]


def _widen(text: str, start: int, end: int) -> tuple[int, int]:
    """Extend to the nearest whitespace within _WIDEN characters, so \\b in patterns sees true edges."""
    lo = max(0, start - _WIDEN)
    cut = text.rfind(" ", lo, start)
    new_start = cut + 1 if cut >= 0 else lo
    hi = min(len(text), end + _WIDEN)
    cut = text.find(" ", end, hi)
    new_end = cut if cut >= 0 else hi
    return new_start, new_end


def candidate_spans(text: str) -> list[_Span]:
    """Merged windows around everything the prefilter matched, with the kinds seen in each."""
    if _DIGIT.search(text) is None and "@" not in text:
        return []
    hits: list[tuple[int, int, str]] = []
    for kind, trigger, pattern in _KINDS:
        if trigger and trigger not in text:
            continue
        hits.extend((*_widen(text, m.start(), m.end()), kind) for m in pattern.finditer(text))
    hits.sort()
    spans: list[_Span] = []
    for start, end, kind in hits:
        if spans and start <= spans[-1].end:
            last = spans.pop()
            spans.append(_Span(last.start, max(last.end, end), last.kinds | {kind}))
        else:
            spans.append(_Span(start, end, frozenset({kind})))
    return spans


class PIIDetector:
    """Finds PII spans; ``detail`` is the entity type, never the value."""

    def __init__(
        self, entities: Iterable[str] = ENTITIES, *, phone_regions: tuple[str, ...] = ("US", "GB", "DE", "FR")
    ):
        wanted = set(entities)
        unknown = wanted - set(ENTITIES)
        if unknown:
            raise ValueError(f"unknown PII entities {sorted(unknown)}; known: {list(ENTITIES)}")
        by_kind: dict[str, list[EntityRecognizer]] = {kind: [] for kind, _, _ in _KINDS}
        if "EMAIL_ADDRESS" in wanted:
            email = _OfflineEmailRecognizer()
            email.validate_result("warm@example.com")  # loads the bundled suffix list now, not on a request
            by_kind["email"].append(email)
        if "IBAN_CODE" in wanted:
            by_kind["iban"].append(IbanRecognizer())
        if "IP_ADDRESS" in wanted:
            ip = IpRecognizer()
            by_kind["ipv6"].append(ip)
            by_kind["ipv4"].append(ip)
        if "CREDIT_CARD" in wanted:
            by_kind["digits"].append(CreditCardRecognizer())
        if "US_SSN" in wanted:
            by_kind["digits"].append(UsSsnRecognizer())
        if "UK_NHS" in wanted:
            by_kind["digits"].append(NhsRecognizer())
        # Phones last, only on phone-shaped spans no other recognizer claimed: phonenumbers is the costly one.
        self._phone = PhoneRecognizer(supported_regions=list(phone_regions)) if "PHONE_NUMBER" in wanted else None
        self._by_kind = by_kind
        self.entities = tuple(e for e in ENTITIES if e in wanted)

    def _results(self, text: str) -> list[tuple[int, int, str, float]]:
        found: list[tuple[int, int, str, float]] = []
        for span in candidate_spans(text):
            window = text[span.start : span.end]
            seen: set[int] = set()
            claimed = False
            for kind in sorted(span.kinds):
                for recognizer in self._by_kind[kind]:
                    if id(recognizer) in seen:
                        continue
                    seen.add(id(recognizer))
                    results: list[RecognizerResult] = recognizer.analyze(window, recognizer.supported_entities, _NO_NLP)
                    for r in results:
                        if r.entity_type in self.entities:
                            claimed = True
                            found.append((span.start + r.start, span.start + r.end, r.entity_type, float(r.score)))
            if self._phone is not None and "digits" in span.kinds and not claimed and _phone_shaped(window):
                for r in self._phone.analyze(window, ["PHONE_NUMBER"], _NO_NLP):
                    found.append((span.start + r.start, span.start + r.end, r.entity_type, float(r.score)))
        return found

    def detect(self, text: str, min_score: float = 0.0) -> list[Detection]:
        """Non-overlapping detections (the higher score wins an overlap), in text order."""
        if not text:
            return []
        chosen: list[tuple[int, int, str, float]] = []
        for start, end, entity, score in sorted(self._results(text), key=lambda r: (-r[3], r[0], r[1] - r[0])):
            if score < min_score or any(start < e and s < end for s, e, _, _ in chosen):
                continue
            chosen.append((start, end, entity, score))
        return [
            Detection(type="pii", score=round(score, 4), start=start, end=end, detail=entity)
            for start, end, entity, score in sorted(chosen)
        ]
