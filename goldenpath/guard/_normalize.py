"""Undo cheap obfuscation before the injection detector reads a text.

Zero-width and bidi controls are removed, NFKC folds full-width and stylised letters, words that mix
Latin with Cyrillic or Greek look-alikes are mapped to Latin, and letters spaced out one by one
("i g n o r e") are joined. Whole-script text (Russian, Greek) is left alone: only mixed words are
homoglyph tricks.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]"
)
# Cyrillic and Greek letters that look like Latin ones (escaped: they are indistinguishable in source).
_CONFUSABLES = str.maketrans(
    "\u0430\u0432\u0435\u0451\u043a\u043c\u043d\u043e\u0440\u0441\u0442\u0443\u0445\u0456\u0457\u0458\u0455\u0501\u051b\u051d\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421"
    "\u0422\u0423\u0425\u0406\u0408\u0405\u03b1\u03b5\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7",
    "abeekmhopctyxiijsdqwABEKMHOPCTYXIJSaeikvoptuxABEZHIKMNOPTYX",
)
_MIXED_WORD = re.compile(r"\w*(?:[a-zA-Z][\u0370-\u03ff\u0400-\u04ff]|[\u0370-\u03ff\u0400-\u04ff][a-zA-Z])\w*")
_SPACED = re.compile(r"(?<!\w)[^\W\d_](?:[ .\-_*][^\W\d_](?!\w)){3,}")
_CYRILLIC_OR_GREEK = re.compile(r"[\u0370-\u04ff]")
_SEPARATORS = re.compile(r"[ .\-_*]")


@dataclass(frozen=True, slots=True)
class Normalized:
    text: str
    obfuscated: bool  # invisible characters, look-alike letters or spaced-out letters were found


def normalize(text: str) -> Normalized:
    """Return the text as the detector should read it, and whether obfuscation was undone."""
    out = _INVISIBLE.sub("", text)
    changed = len(out) != len(text)
    if not out.isascii():
        out = unicodedata.normalize("NFKC", out)
        if _CYRILLIC_OR_GREEK.search(out) is not None:
            mixed = _MIXED_WORD.sub(lambda m: m.group(0).translate(_CONFUSABLES), out)
            changed = changed or mixed != out
            out = mixed
    joined = _SPACED.sub(lambda m: _SEPARATORS.sub("", m.group(0)), out)
    changed = changed or joined != out
    return Normalized(joined, changed)
