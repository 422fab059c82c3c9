"""Output moderation: an offensive-language classifier and deny lists.

The classifier is the model shipped in the ``alt-profanity-check`` PyPI package (MIT): a TF-IDF
vectorizer (15,442 words, English stop words dropped) and five calibrated linear SVMs, trained by the
package's authors on Wikipedia toxic comments and offensive tweets. Loading it as the package does
imports scikit-learn and unpickles it (~3 s) and each call costs ~4 ms; ``export_toxicity`` copies its
numbers once into ``artifacts/toxicity.npz`` (vocabulary, idf, weights, sigmoid calibration), and
``ToxicityDetector`` computes the same probability with numpy in tens of microseconds, with no
scikit-learn at run time. A test checks both agree.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from goldenpath.guard._types import Detection

ARTIFACTS = Path(__file__).parent / "artifacts"
TOXICITY_FILE = "toxicity.npz"
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # the vectorizer's token_pattern, on lower-cased text
# Sentences: split after ., ! or ? followed by space, and at line breaks; each is scored on its own so a
# long, mostly polite text cannot dilute one offensive sentence.
_SENTENCE = re.compile(r"[^\n.!?]*(?:[.!?]+|\n|$)")


def export_toxicity(out: Path = ARTIFACTS / TOXICITY_FILE) -> str:
    """Copy alt-profanity-check's vectorizer and calibrated SVMs into a numpy archive; return its hash.

    Needs the package (and scikit-learn) only here, never at run time.
    """
    from importlib import resources

    import joblib  # type: ignore[import-untyped]

    data = resources.files("profanity_check") / "data"
    vectorizer = joblib.load(str(data / "vectorizer.joblib"))
    model = joblib.load(str(data / "model.joblib"))
    vocabulary: dict[str, int] = vectorizer.vocabulary_
    words = sorted(vocabulary, key=vocabulary.__getitem__)
    folds = model.calibrated_classifiers_
    arrays = {
        "words": np.array("\n".join(words)),
        "idf": vectorizer.idf_.astype(np.float32),
        "coef": np.stack([f.estimator.coef_[0] for f in folds]).astype(np.float32),
        "intercept": np.array([f.estimator.intercept_[0] for f in folds], dtype=np.float64),
        "a": np.array([f.calibrators[0].a_ for f in folds], dtype=np.float64),
        "b": np.array([f.calibrators[0].b_ for f in folds], dtype=np.float64),
    }
    from goldenpath.guard._train import _deterministic_npz

    raw = _deterministic_npz(arrays)
    out.write_bytes(raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:16]


class ToxicityDetector:
    """Probability that a text is offensive (insults, profanity, hate), per sentence.

    ``probability(text)`` scores the whole text as one; ``detect`` scores each sentence and reports the
    worst one at or above the threshold, with its span. ``detail`` is always ``offensive_language``.
    """

    def __init__(self, weights: Path | None = None) -> None:
        path = weights or ARTIFACTS / TOXICITY_FILE
        raw = path.read_bytes()
        self.version = "sha256:" + hashlib.sha256(raw).hexdigest()[:16]
        with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
            words = str(arrays["words"].reshape(-1)[0]).split("\n")
            self._idf = arrays["idf"].astype(np.float64)
            self._coef = arrays["coef"].astype(np.float64)
            self._intercept = arrays["intercept"]
            self._a = arrays["a"]
            self._b = arrays["b"]
        self._index = {w: i for i, w in enumerate(words)}

    def probability(self, text: str) -> float:
        """The package's ``predict_prob`` for the text as one document."""
        return float(self.probabilities([text])[0])

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """One probability per text, computed together (one numpy pass, not one per text)."""
        rows: list[int] = []
        cols: list[int] = []
        for row, text in enumerate(texts):
            for i in map(self._index.get, _TOKEN.findall(text.lower())):
                if i is not None:
                    rows.append(row)
                    cols.append(i)
        decision = np.tile(self._intercept, (len(texts), 1))  # an empty text still gets the intercept's value
        if rows:
            pairs, counts = np.unique(np.asarray(rows) * len(self._idf) + np.asarray(cols), return_counts=True)
            r, c = np.divmod(pairs, len(self._idf))
            tfidf = counts * self._idf[c]
            tfidf /= np.sqrt(np.bincount(r, weights=tfidf * tfidf, minlength=len(texts)))[r]
            for k in range(len(self._intercept)):
                decision[:, k] += np.bincount(r, weights=self._coef[k, c] * tfidf, minlength=len(texts))
        return np.asarray(np.mean(1.0 / (1.0 + np.exp(self._a * decision + self._b)), axis=1))

    def detect(self, text: str, threshold: float) -> list[Detection]:
        """The most offensive sentence scoring at least ``threshold``, if any."""
        spans = [(m.start(), m.end()) for m in _SENTENCE.finditer(text) if _TOKEN.search(m.group(0))]
        if not spans:
            return []
        scores = self.probabilities([text[a:b] for a, b in spans])
        best = int(np.argmax(scores))
        if scores[best] < threshold:
            return []
        start, end = spans[best]
        return [
            Detection(
                type="toxicity", score=round(float(scores[best]), 4), start=start, end=end, detail="offensive_language"
            )
        ]


class DenyListDetector:
    """Configured terms (whole words, case-insensitive) and regular expressions, in one pass.

    ``detail`` names the entry that matched (``terms[2]``, ``patterns[0]``), never the matched text:
    a deny list may itself hold names or codes that should not be copied into records.
    """

    def __init__(self, terms: Iterable[str] = (), patterns: Iterable[str] = ()) -> None:
        alternatives: list[str] = []
        self._names: list[str] = []
        for i, term in enumerate(terms):
            if not term.strip():
                raise ValueError(f"deny list terms[{i}] is empty")
            # \b only where the term starts/ends with a word character, so "c++" or "#tag" still match.
            left = r"\b" if re.match(r"\w", term) else r"(?<!\w)"
            right = r"\b" if re.search(r"\w$", term) else r"(?!\w)"
            alternatives.append(left + r"\s+".join(map(re.escape, term.split())) + right)
            self._names.append(f"terms[{i}]")
        for i, pattern in enumerate(patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"deny list patterns[{i}] is not a valid regular expression: {exc}") from None
            alternatives.append(pattern)
            self._names.append(f"patterns[{i}]")
        self._pattern = (
            re.compile("|".join(f"(?P<_deny{i}>{a})" for i, a in enumerate(alternatives)), re.IGNORECASE)
            if alternatives
            else None
        )

    def detect(self, text: str) -> list[Detection]:
        if self._pattern is None:
            return []
        found: list[Detection] = []
        for m in self._pattern.finditer(text):
            if m.end() == m.start():
                continue
            which = next(i for i, name in enumerate(self._names) if m.group(f"_deny{i}") is not None)
            found.append(
                Detection(type="deny_list", score=1.0, start=m.start(), end=m.end(), detail=self._names[which])
            )
        return found
