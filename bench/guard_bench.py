"""Latency of the whole input guard pipeline (injection + PII + secrets) on one core.

Prompts are benign texts from the training data's benign rows (deepset + jackhhao), joined and cut
to exactly 100 and 1,000 MiniLM tokens (50 distinct prompts per size, seeded); every third prompt gets
an email address, a phone number and a card number, every fifth an AWS key, so the PII and secret
paths do real work. Each ``Guard.check(text, "input")`` is timed with ``time.perf_counter`` after a
warm-up, cycling through the prompts ``--rounds`` times; the process is pinned to one CPU and
onnxruntime runs one thread. Reported: p50/p95/p99 per size, the share of checks that escalated
to the MiniLM head, and each detector's p50/p95 alone. ``--presidio`` also times Presidio's
``AnalyzerEngine`` as is (blank spaCy pipeline, same recognizers) on the same prompts. The same texts
are also checked at the context stage (injection in document mode + PII + secrets), at the output
stage (toxicity + PII + secrets), and streamed through a ``StreamGuard`` in 4-character deltas (the
time for the whole answer, and per delta).

Run: ``.venv/bin/python bench/guard_bench.py [--rounds 4] [--presidio] [--data ../shared/data/prompt-injection]``
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from goldenpath.guard import Guard, StreamGuard
from goldenpath.guard._features import make_embedder
from goldenpath.guard._train import DEFAULT_DATA, load_examples

SIZES = (100, 1000)
PII_SNIPPET = " You can reach me at maria.schmidt@example.de or +49 30 12345678, card 4111 1111 1111 1111."
SECRET_SNIPPET = " The deploy key is AKIAIOSFODNN7EXAMPLE."


def prompts(data_dir: Path, tokens: int, count: int, seed: int) -> list[str]:
    tokenizer = make_embedder()._tokenizer
    tokenizer.no_truncation()
    benign = [e.text for e in load_examples(data_dir) if e.label == 0]
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(count):
        rng.shuffle(benign)
        extra = (PII_SNIPPET if i % 3 == 0 else "") + (SECRET_SNIPPET if i % 5 == 0 else "")
        text = ""
        for piece in benign:
            text += piece.strip() + " "
            if len(tokenizer.encode(text + extra).ids) > tokens + 2:  # +2: [CLS] and [SEP]
                break
        encoding = tokenizer.encode(text)
        budget = tokens - (len(tokenizer.encode(extra).ids) - 2 if extra else 0)
        cut = encoding.offsets[budget][1] if len(encoding.ids) > budget + 1 else len(text)
        out.append(text[:cut].strip() + extra)
    return out


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "mean": statistics.fmean(ordered) * 1000}


def timed(fn: Callable[[str], Any], texts: list[str], rounds: int) -> list[float]:
    for text in texts[:5]:
        fn(text)
    samples: list[float] = []
    for _ in range(rounds):
        for text in texts:
            start = time.perf_counter()
            fn(text)
            samples.append(time.perf_counter() - start)
    return samples


def presidio_engine() -> Any:
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    from goldenpath.guard import PIIDetector

    class BlankEngine(SpacyNlpEngine):  # type: ignore[misc]
        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    engine = BlankEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.load()
    registry = RecognizerRegistry()
    detector = PIIDetector()
    for recognizers in detector._by_kind.values():
        for recognizer in recognizers:
            if recognizer not in registry.recognizers:
                registry.add_recognizer(recognizer)
    if detector._phone is not None:
        registry.add_recognizer(detector._phone)
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


def presidio_analyze() -> Callable[[str], Any]:
    analyzer = presidio_engine()
    return lambda text: analyzer.analyze(text, language="en")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--presidio", action="store_true", help="also time Presidio's AnalyzerEngine as is")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    guard = Guard()

    def stream(text: str) -> None:
        sg = StreamGuard(guard)
        for i in range(0, len(text), 4):
            sg.feed(text[i : i + 4])
        sg.finish()

    assert guard.injection is not None and guard.pii is not None and guard.secrets is not None
    injection, pii, secrets = guard.injection, guard.pii, guard.secrets
    print(f"one core (pid pinned), onnxruntime 1 thread; {args.count} prompts per size x {args.rounds} rounds")
    for size in SIZES:
        texts = prompts(args.data, size, args.count, seed=size)
        injection.escalations = 0
        whole = percentiles(timed(lambda t: guard.check(t, "input"), texts, args.rounds))
        share = injection.escalations / (args.rounds * len(texts) + 5)
        parts = {
            "injection": percentiles(timed(injection.score, texts, args.rounds)),
            "pii": percentiles(timed(pii.detect, texts, args.rounds)),
            "secrets": percentiles(timed(secrets.detect, texts, args.rounds)),
        }
        stages = {
            "context stage": percentiles(timed(lambda t: guard.check(t, "context"), texts, args.rounds)),
            "output stage": percentiles(timed(lambda t: guard.check(t, "output"), texts, args.rounds)),
            "stream, whole answer": percentiles(timed(stream, texts, 1)),
        }
        flagged = sum(guard.check(t).action == "block" for t in texts)
        print(
            f"\n{size} tokens ({statistics.fmean(len(t) for t in texts):.0f} chars): whole pipeline "
            + " ".join(f"{k} {v:.2f} ms" for k, v in whole.items())
            + f"; escalated to MiniLM {share:.1%}; blocked (false positives) {flagged}/{len(texts)}"
        )
        for name, stats in parts.items():
            print(f"  {name:9s} " + " ".join(f"{k} {v:.2f} ms" for k, v in stats.items()))
        for name, stats in stages.items():
            print(f"  {name}: " + " ".join(f"{k} {v:.2f} ms" for k, v in stats.items()))
        deltas = statistics.fmean(len(t) for t in texts) / 4
        print(f"  stream per 4-char delta (mean): {stages['stream, whole answer']['mean'] / deltas * 1000:.1f} us")
        if args.presidio:
            stats = percentiles(timed(presidio_analyze(), texts, 1))
            print("  presidio AnalyzerEngine as is: " + " ".join(f"{k} {v:.2f} ms" for k, v in stats.items()))


if __name__ == "__main__":
    main()
