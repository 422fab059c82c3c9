"""Calibration and power of the evaluation gate's no-regression rule on paired binary outcomes.

Each simulated comparison draws n item difficulties p_i ~ Beta(3.5, 1.5); the baseline's outcome
on item i is Bernoulli(p_i) and the candidate's, drawn independently, Bernoulli(q_i) with
q_i = p_i * (1 - d / mean(p)): every item's success probability shrinks by the same factor, so the
mean probability over the n items drops by exactly d (and no q_i leaves [0, 1]). d = 0 is an A/A
comparison. For every comparison this script asks

- the gate (``evaluate_gate``, what ``goldenpath gate`` runs) with ``max_drop: 0`` and, for
  contrast, ``max_drop: 0.02``, both at ``confidence: 0.95``;
- scipy's exact one-sided McNemar test (``binomtest`` on the discordant pairs, alpha 0.05), computed
  here independently of goldenpath;

and, for the first ``--via-files`` comparisons of each drop, writes both runs as exported JSONL
files into a temporary directory and runs ``run_gate`` on them (the function behind the CLI,
reports included), checking its verdict equals the in-memory one. A second table gives the size of
the ``max_drop: 0.02`` rule (Tango's score test) at its boundary, a true drop of exactly 2 points,
for several n (``--boundary-sims`` comparisons each).

    .venv/bin/python bench/eval_calibration.py [--sims 1000] [--items 400] [--seed 0]
        [--via-files 100] [--boundary-sims 3000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from goldenpath.evals import Gate, MetricRule, RunResults, evaluate_gate, run_gate

ALPHA = 0.05
DROPS = range(11)
BOUNDARY_ITEMS = (100, 400, 1000)


def runs(outcomes: np.ndarray, name: str) -> RunResults:
    ids = tuple(f"item-{i}" for i in range(len(outcomes)))
    return RunResults(
        source=name, item_ids=ids, scores={"accuracy": {i: (float(v),) for i, v in zip(ids, outcomes, strict=True)}}
    )


def export(outcomes: np.ndarray, path: Path) -> None:
    lines = (json.dumps({"item_id": f"item-{i}", "scores": {"accuracy": bool(v)}}) for i, v in enumerate(outcomes))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def mcnemar_fails(candidate: np.ndarray, baseline: np.ndarray) -> bool:
    regressed = int(np.sum((candidate == 0) & (baseline == 1)))
    discordant = regressed + int(np.sum((candidate == 1) & (baseline == 0)))
    return discordant > 0 and binomtest(regressed, discordant, 0.5, alternative="greater").pvalue < ALPHA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=1000)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--via-files", type=int, default=100, help="comparisons per drop also run through files")
    parser.add_argument("--boundary-sims", type=int, default=3000, help="comparisons per n at the 2-point boundary")
    args = parser.parse_args()

    strict = Gate(metrics={"accuracy": MetricRule(max_drop=0.0, confidence=0.95)})
    tolerant = Gate(metrics={"accuracy": MetricRule(max_drop=0.02, confidence=0.95)})
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gate_file = Path(tmp) / "gate.yaml"
        gate_file.write_text("metrics:\n  accuracy:\n    max_drop: 0\n    confidence: 0.95\n", encoding="utf-8")
        for drop in DROPS:
            gate_fails = tolerant_fails = reference_fails = file_fails = agree = 0
            for sim in range(args.sims):
                p = rng.beta(3.5, 1.5, size=args.items)
                q = p * (1.0 - drop / 100.0 / p.mean())
                baseline = (rng.random(args.items) < p).astype(np.int8)
                candidate = (rng.random(args.items) < q).astype(np.int8)
                cand, base = runs(candidate, "candidate"), runs(baseline, "baseline")
                failed = not evaluate_gate(strict, cand, base).passed
                gate_fails += failed
                tolerant_fails += not evaluate_gate(tolerant, cand, base).passed
                reference_fails += mcnemar_fails(candidate, baseline)
                if sim < args.via_files:
                    export(candidate, Path(tmp) / "candidate.jsonl")
                    export(baseline, Path(tmp) / "baseline.jsonl")
                    result = run_gate(gate_file, Path(tmp) / "candidate.jsonl", Path(tmp) / "baseline.jsonl", tmp)
                    file_fails += not result.passed
                    agree += (not result.passed) == failed
            via = min(args.via_files, args.sims)
            rows.append((drop, gate_fails, reference_fails, tolerant_fails, file_fails, agree, via))
    boundary = []
    for items in BOUNDARY_ITEMS:
        fails = 0
        for _ in range(args.boundary_sims):
            p = rng.beta(3.5, 1.5, size=items)
            q = p * (1.0 - 0.02 / p.mean())
            baseline = (rng.random(items) < p).astype(np.int8)
            candidate = (rng.random(items) < q).astype(np.int8)
            fails += not evaluate_gate(tolerant, runs(candidate, "candidate"), runs(baseline, "baseline")).passed
        boundary.append((items, fails))
    elapsed = time.perf_counter() - started

    n = args.sims
    print(f"{n} simulated comparisons per drop, n = {args.items} items, seed {args.seed}, {elapsed:.0f} s\n")
    print(
        "| drop (points) | gate `max_drop: 0` fails | exact McNemar (scipy) rejects | difference "
        "| gate `max_drop: 0.02` fails | through files: fails / agree |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for drop, gate, ref, tol, files, agree, via in rows:
        print(
            f"| {drop} | {gate / n:.1%} | {ref / n:.1%} | {(gate - ref) / n * 100:+.1f} pts "
            f"| {tol / n:.1%} | {files}/{via} fail, {agree}/{via} agree |"
        )

    b = args.boundary_sims
    print(f"\nSize of `max_drop: 0.02` at a true drop of exactly 2 points ({b} comparisons per n, alpha 5%)\n")
    print("| n items | gate `max_drop: 0.02` fails |")
    print("|---:|---:|")
    for items, fails in boundary:
        print(f"| {items} | {fails / b:.1%} |")


if __name__ == "__main__":
    main()
