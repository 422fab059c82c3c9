"""Rules for known prompt-attack families, read on the normalized text.

Each rule is a family name, a fixed score and one compiled pattern (case-insensitive). They catch
what a small classifier may miss out of its training distribution: instruction overrides in several
languages, named role-play jailbreaks, system-prompt extraction, and instructions hidden in base64.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_W = r"[\s,;:'\"-]+"  # separators between words
_ANY = r"(?:[\w'-]+" + _W + r"){0,3}?"  # up to three filler words ("all of your", "toutes les")


@dataclass(frozen=True, slots=True)
class Rule:
    family: str
    score: float
    anchor: re.Pattern[str]  # the words every alternative starts with: the pattern is tried only there
    pattern: re.Pattern[str]


def _rule(family: str, score: float, starts: str, *alternatives: str) -> Rule:
    anchor = re.compile(r"\b(?:" + "|".join(starts.split()) + ")", re.IGNORECASE)
    pattern = re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE)
    return Rule(family, score, anchor, pattern)


RULES: tuple[Rule, ...] = (
    _rule(
        "ignore_previous_instructions",
        0.97,
        "ignor disregard forget skip overrid bypass neglect drop vergiss vergesst vergessen missacht überspring "
        "uberspring "
        "oubli néglig olvid descart esquec dimentic",
        # English
        r"\b(?:ignore|disregard|forget|skip|override|bypass|neglect|drop)"
        + _W
        + _ANY
        + r"(?:previous|prior|above|earlier|preceding|foregoing|initial|original|system|given|existing)"
        + _W
        + r"(?:instructions?|prompts?|rules|directions?|directives?|tasks?|context|commands?|guidelines|orders"
        + r"|assignments?|requirements|constraints)\b",
        r"\b(?:forget|ignore|disregard)"
        + _W
        + r"(?:everything|all)"
        + _W
        + r"(?:you(?:'ve| have)? (?:been )?(?:told|learned|said)|(?:i|we) (?:said|told you)|above|before|so far)",
        r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+)?(?:of\s+)?your\s+"
        r"(?:rules|instructions|guidelines|programming|restrictions|directives)\b",
        r"\b(?:olvida|olvide|ignora|ignore)\w*\s+(?:todas\s+)?(?:tus|sus)\s+(?:reglas|instrucciones|normas|restricciones)",
        r"\b(?:oublie[zs]?|ignore[zs]?)\s+(?:toutes\s+)?(?:tes|vos)\s+(?:règles|instructions|consignes|restrictions)",
        r"\b(?:vergiss|vergessen sie|ignorier\w*)\s+(?:alle\s+)?(?:deine|ihre)\s+"
        r"(?:regeln|anweisungen|vorgaben|einschränkungen)",
        # German
        r"\b(?:ignorier|vergiss|vergesst|vergessen sie|missacht|überspring|uberspring)\w*"
        + _W
        + _ANY
        + r"(?:vorherig|bisherig|obig|vorangegangen|vorig|früher|frueher|ursprünglich|erst)\w*"
        + _W
        + r"(?:anweisung|befehl|aufgab|instruktion|regel|vorgab|anordnung)\w*",
        r"\b(?:vergiss|vergesst|ignorier\w*)" + _W + r"alles" + _W + r"(?:was|bisher|davor|vorher|zuvor|oben)",
        # French
        r"\b(?:ignore[zrs]?|oublie[zrs]?|néglige[zr]?)"
        + _W
        + _ANY
        + r"(?:instructions?|consignes?|règles|directives|ordres|tâches)"
        + _W
        + r"(?:précédentes?|antérieures?|ci-dessus|initiales?|d'origine)",
        r"\b(?:ignore[zrs]?|oublie[zrs]?)"
        + _W
        + _ANY
        + r"(?:précédentes?|antérieures?)"
        + _W
        + r"(?:instructions?|consignes?|règles)",
        # Spanish / Portuguese / Italian
        r"\b(?:ignora|ignore|olvida|olvide|descarta|esquece|esqueça|dimentica)\w*"
        + _W
        + _ANY
        + r"(?:instrucciones|indicaciones|reglas|órdenes|instruções|regras|istruzioni|regole)"
        + _W
        + r"(?:anteriores|previas|precedentes|precedenti|previe|iniciales|iniziali)",
    ),
    _rule(
        "roleplay_jailbreak",
        0.95,
        "do developer dev god unrestricted jailbr evil chaos you act pretend become free not no without don have "
        "tu vous eres sei du sie agis actúa actua handle sois",
        r"\bdo anything now\b",
        r"\b(?:developer|dev|god|unrestricted|jailbreak|evil|chaos)\s?mode\b(?:\W+\w+){0,4}?\W+"
        r"(?:enabled|activated|on|output|response)",
        r"\b(?:you are|you're|act as|pretend to be|become)" + _W + r"(?:now\s+)?(?:a\s+|an\s+)?"
        r"(?:DAN|STAN|DUDE|AIM|jailbroken|unfiltered|uncensored|unrestricted|amoral|unethical)\b",
        r"\b(?:free(?:d)? from|no longer (?:bound|restricted|limited) by|not bound by|without any|"
        r"do not have any|don't have any|have no)"
        r"(?:\s+\w+){0,3}?\s+(?:restrictions|filters|censorship|ethical (?:guidelines|constraints|principles)|"
        r"content polic(?:y|ies)|openai(?:'s)? polic(?:y|ies)|moral(?:s| guidelines))\b",
        r"\bjailbr(?:ea|o)k(?:ed|en)?\b",
        # "you are (now) an AI without restrictions" in French, Spanish, German, Italian
        r"\b(?:tu es|vous êtes|eres|sei|du bist|sie sind|agis|actúa|actua|handle|sois)\b[^.!?\n]{0,60}?"
        r"\b(?:sans|sin|ohne|senza)\s+(?:aucune?s?\s+|ningun[ao]s?\s+|jegliche[nr]?\s+|alcuna\s+)?"
        r"(?:restrictions?|restricciones|límites|limites|einschränkungen|beschränkungen|regeln|règles|reglas"
        r"|filtres?|filtros|zensur|censure|censura|restrizioni|limiti)\b(?!\s+(?:de|d'|of|von|di)\b)",
    ),
    _rule(
        "system_prompt_extraction",
        0.93,
        "reveal show print repeat output display leak dump tell give write spell what zeig gib nenn verrat "
        "montre affiche révèle",
        r"\b(?:reveal|show|print|repeat|output|display|leak|dump|tell me|give me|write out|spell out"
        r"|what (?:is|are|was|were))"
        r"(?:\s+\w+){0,3}?\s+(?:system|initial|original|hidden|secret|internal|previous|first)\s+"
        r"(?:prompts?|instructions?|message|rules|configuration)\b",
        r"\b(?:repeat|print|output)\s+(?:the\s+|all\s+)?(?:words|text|everything)\s+(?:above|before)",
        r"\b(?:zeig|gib|nenn|verrat)\w*\s+(?:mir\s+)?(?:\w+\s+){0,2}?(?:system\s*-?prompt|prompt-?texte?|"
        r"anweisungen|ursprünglichen\s+anweisungen)",
        r"\b(?:montre|affiche|révèle|révèlez|montrez)\w*\s+(?:moi\s+|-moi\s+)?(?:\w+\s+){0,2}?"
        r"(?:prompt\s+système|instructions\s+(?:initiales|système|cachées))",
    ),
)

_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_LETTERS = re.compile(r"[A-Za-z]")


@dataclass(frozen=True, slots=True)
class RuleHit:
    family: str
    score: float
    start: int
    end: int


# The bare word: in a prompt it signals intent; in a document (an article or code about jailbreaks) it is a mention.
_MENTION = re.compile(r"jailbr(?:ea|o)k(?:ed|en)?", re.IGNORECASE)


def match_rules(text: str, *, documents: bool = False) -> RuleHit | None:
    """The strongest rule that matches, or None. ``documents``: bare mentions of "jailbreak" do not count."""
    best: RuleHit | None = None
    for rule in RULES:
        for anchor in rule.anchor.finditer(text):
            m = rule.pattern.match(text, anchor.start())
            if m is not None and documents and _MENTION.fullmatch(m.group(0)):
                continue
            if m is not None:
                if best is None or rule.score > best.score:
                    best = RuleHit(rule.family, rule.score, m.start(), m.end())
                break
    return best


def decoded_payloads(text: str, limit: int = 4) -> list[tuple[int, int, str]]:
    """Base64 runs that decode to readable text: (start, end, decoded), at most ``limit`` of them."""
    found: list[tuple[int, int, str]] = []
    if len(text) < 24:
        return found
    for m in _BASE64.finditer(text):
        blob = m.group(0)
        if blob.isalpha() or blob.isdigit():  # a long word or number, not an encoding
            continue
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        readable = all(c.isprintable() or c.isspace() for c in decoded)
        if readable and " " in decoded and len(_LETTERS.findall(decoded)) >= 0.6 * len(decoded):
            found.append((m.start(), m.end(), decoded))
            if len(found) >= limit:
                break
    return found
