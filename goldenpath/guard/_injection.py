"""The prompt-injection detector: rules, then a fast n-gram head, then MiniLM only when unsure."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from goldenpath.guard._features import embed, hashed, make_embedder
from goldenpath.guard._normalize import normalize
from goldenpath.guard._rules import decoded_payloads, match_rules
from goldenpath.guard._types import Detection
from goldenpath.providers.onnx_embeddings import OnnxEmbedder

ARTIFACTS = Path(__file__).parent / "artifacts"
WEIGHTS_FILE = "injection.npz"
# Documents (retrieved chunks, tool results, answers) are read in overlapping windows about the length
# of the training prompts, by the n-gram head only: see ``score_document``.
DOC_WINDOW = 600
DOC_STRIDE = 300
DOC_THRESHOLD = 0.9


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


class InjectionDetector:
    """Scores a text for prompt injection and jailbreaks.

    The score is max(rule score, model probability). The model is a cascade: a logistic head on hashed
    n-grams (under 1 ms) decides alone when its probability is outside [band, 1 - band] or the text is
    long; otherwise a head on n-grams plus the MiniLM embedding of the first 128 tokens decides
    (~35 ms on one slow core).
    """

    def __init__(self, weights: Path | bytes | None = None, *, embedder: OnnxEmbedder | None = None) -> None:
        if weights is None:
            weights = ARTIFACTS / WEIGHTS_FILE
        data = weights if isinstance(weights, bytes) else weights.read_bytes()
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            fast_w = arrays["fast_w"].astype(np.float64)
            full_w = arrays["full_w"].astype(np.float64)
            self._fast_b = float(arrays["fast_b"][0])
            self._full_b = float(arrays["full_b"][0])
            self.threshold = float(arrays["threshold"][0])
            self._band = float(arrays["band"][0])
            self._embed_scale = float(arrays["embed_scale"][0])
            self._escalate_max_chars = int(arrays["escalate_max_chars"][0])
        n_lex = fast_w.shape[0]
        self._fast_w = fast_w
        self._full_lex = full_w[:n_lex]
        self._full_emb = full_w[n_lex:] * self._embed_scale
        self._embedder = embedder
        self.escalations = 0  # how many texts needed the embedding head (for benchmarks and metrics)

    def warm(self) -> None:
        """Load MiniLM now (~0.5 s) rather than on the first unsure text."""
        embed(self._embedder_or_load(), ["warm up"])

    def _embedder_or_load(self) -> OnnxEmbedder:
        if self._embedder is None:
            self._embedder = make_embedder()
        return self._embedder

    def probability(self, normalized: str) -> float:
        """The model's probability for an already normalized text (rules not included)."""
        idx, values = hashed(normalized)
        fast = _sigmoid(float(values @ self._fast_w[idx]) + self._fast_b)
        if not self._band <= fast <= 1 - self._band or len(normalized) > self._escalate_max_chars:
            return fast
        self.escalations += 1
        vector = embed(self._embedder_or_load(), [normalized])[0]
        logit = float(values @ self._full_lex[idx]) + self._full_b
        return _sigmoid(logit + float(vector @ self._full_emb))

    def fast_probability(self, normalized: str) -> float:
        """The n-gram head alone (no MiniLM), for an already normalized text."""
        idx, values = hashed(normalized)
        return _sigmoid(float(values @ self._fast_w[idx]) + self._fast_b)

    def score_document(self, text: str) -> tuple[float, str]:
        """(score, reason) for a document rather than a prompt.

        The training data are prompts; read whole, long code and technical prose look like long
        jailbreak templates to the n-gram head (10% of 1,500-character code/docs excerpts over the
        prompt threshold), while an injection hidden in a long document is diluted. So a document is
        scored as the maximum of the n-gram head over windows of ``DOC_WINDOW`` characters every
        ``DOC_STRIDE``, and is meant to be compared with ``DOC_THRESHOLD``; the rules still read the whole
        text, except that the bare word "jailbreak" is taken as a mention. No MiniLM escalation: its
        128-token window says little about a document and costs ~35 ms.
        """
        normalized = normalize(text)
        hit = match_rules(normalized.text, documents=True)
        best, reason = (hit.score, hit.family) if hit else (0.0, "classifier")
        body = normalized.text
        starts = range(0, max(1, len(body) - DOC_WINDOW + DOC_STRIDE), DOC_STRIDE)
        for start in starts:
            model = self.fast_probability(body[start : start + DOC_WINDOW])
            if model > best:
                best, reason = model, "classifier"
        for _, _, decoded in decoded_payloads(body):
            inner = normalize(decoded).text
            inner_hit = match_rules(inner, documents=True)
            inner_score = max(inner_hit.score if inner_hit else 0.0, self.fast_probability(inner))
            if inner_score > best:
                best, reason = inner_score, "encoded_payload:base64"
        if normalized.obfuscated:
            reason += "+obfuscated"
        return best, reason

    def detect(self, text: str) -> Detection | None:
        """A detection covering the whole text when its score reaches the threshold, else None."""
        score, detail = self.score(text)
        if score < self.threshold:
            return None
        return Detection(type="prompt_injection", score=round(score, 4), start=0, end=len(text), detail=detail)

    def score(self, text: str) -> tuple[float, str]:
        """(score, reason): reason names the rule family, "classifier", and any obfuscation undone."""
        normalized = normalize(text)
        reasons = ["obfuscated"] if normalized.obfuscated else []
        hit = match_rules(normalized.text)
        best, reason = (hit.score, hit.family) if hit else (0.0, "classifier")
        if best < 0.95:
            model = self.probability(normalized.text)
            if model > best:
                best, reason = model, "classifier"
        for _, _, decoded in decoded_payloads(normalized.text):
            inner = normalize(decoded).text
            inner_hit = match_rules(inner)
            inner_score = max(inner_hit.score if inner_hit else 0.0, self.probability(inner))
            if inner_score >= self.threshold and inner_score >= best:
                best, reason = inner_score, "encoded_payload:base64"
        if reasons:
            reason = reason + "+" + "+".join(reasons)
        return best, reason
