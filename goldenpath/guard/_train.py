"""``goldenpath guard train``: the injection classifier, reproducible from the data and a seed.

Data: deepset/prompt-injections (train split, English and German; 1 = injection) and
jackhhao/jailbreak-classification (balanced train split; jailbreak = 1). Validation: 20% of the
groups, stratified by label, where a group joins texts whose normalized form, or normalized first
64 characters, is the same (near-duplicate templates never straddle the split). The head is a
logistic regression over hashed n-grams (the fast stage) and one over n-grams plus MiniLM
embeddings (the full stage, run only when the fast stage is unsure).

scikit-learn, scipy and pyarrow are imported inside the functions that train: serving the guard
needs none of them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from goldenpath.guard._features import (
    EMBED_WINDOW,
    LEXICAL_CHARS,
    LEXICAL_FEATURES,
    embed,
    hashed,
    make_embedder,
)
from goldenpath.guard._injection import ARTIFACTS, WEIGHTS_FILE
from goldenpath.guard._normalize import normalize
from goldenpath.guard._rules import match_rules
from goldenpath.providers.onnx_embeddings import OnnxEmbedder

DEFAULT_DATA = Path("../shared/data/prompt-injection")
CARD_FILE = "injection_card.json"
CARD_MD_FILE = "injection_card.md"
EMBED_SCALE = 0.5  # embeddings are unit vectors; their block weighs half of the l2-normalized n-gram blocks
C_FAST = 8.0
C_FULL = 8.0
BAND = 0.25  # the full stage runs when the fast probability lies within [BAND, 1 - BAND] ...
ESCALATE_MAX_CHARS = 1500  # ... and the text is short: 128 tokens say little about a long text, and cost ~35 ms
MAX_FPR = 0.02  # the threshold is chosen on out-of-fold training scores for at most this benign FPR
BOOTSTRAP = 1000
LONG_TEXTS = 300  # synthetic long texts for a diagnostic: validation prompts joined, some with an injection inside


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: int
    source: str


def load_examples(data_dir: Path) -> list[Example]:
    import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

    examples = [
        Example(str(r["text"]), int(r["label"]), "deepset")
        for r in pq.read_table(data_dir / "deepset_train.parquet").to_pylist()
    ]
    with (data_dir / "jackhhao_jailbreak_dataset_train_balanced.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            examples.append(Example(row["prompt"], int(row["type"] == "jailbreak"), "jackhhao"))
    return examples


_NON_WORD = re.compile(r"[\W_]+")


def _key(text: str) -> str:
    return _NON_WORD.sub(" ", normalize(text).text.casefold()).strip()


def groups_of(texts: list[str]) -> np.ndarray:
    """Union-find over equal normalized texts and equal normalized 64-character prefixes."""
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, text in enumerate(texts):
        key = _key(text)
        for k in {"full:" + key, "head:" + key[:64]} if len(key) >= 64 else {"full:" + key}:
            if k in first:
                parent[find(i)] = find(first[k])
            else:
                first[k] = i
    return np.array([find(i) for i in range(len(texts))])


def split(examples: list[Example], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: one fold of five, stratified by label, grouped by near-duplicates."""
    from sklearn.model_selection import StratifiedGroupKFold  # type: ignore[import-untyped,unused-ignore]

    labels = np.array([e.label for e in examples])
    groups = groups_of([e.text for e in examples])
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    train_idx, val_idx = next(folds.split(np.zeros(len(labels)), labels, groups))
    return np.sort(train_idx), np.sort(val_idx)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def _fit(x: Any, y: np.ndarray, c: float, seed: int) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped,unused-ignore]

    model = LogisticRegression(C=c, max_iter=5000, solver="liblinear", random_state=seed)
    model.fit(x, y)
    return np.asarray(model.coef_[0], dtype=np.float64), float(model.intercept_[0])


@dataclass(frozen=True, slots=True)
class Heads:
    fast_w: np.ndarray
    fast_b: float
    full_w: np.ndarray  # lexical weights followed by the embedding weights
    full_b: float

    def scores(
        self, lex: Any, emb: np.ndarray, rules: np.ndarray, short: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fast probability, full probability, deployed cascade probability incl. rules) per row."""
        fast = _sigmoid(lex @ self.fast_w + self.fast_b)
        n_lex = lex.shape[1]
        full = _sigmoid(lex @ self.full_w[:n_lex] + emb @ self.full_w[n_lex:] * EMBED_SCALE + self.full_b)
        unsure = (fast >= BAND) & (fast <= 1 - BAND) & short
        cascade = np.where(unsure, full, fast)
        return fast, full, np.maximum(cascade, rules)


def long_texts(
    texts: list[str], y: np.ndarray, pool: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[list[str], np.ndarray]:
    """Texts longer than ESCALATE_MAX_CHARS made of the pool's benign prompts; every third has one of
    the pool's injections inserted at a random place (label 1), the rest are benign (label 0).

    Long texts in the data are almost all jailbreak templates, so this measures how the n-gram head
    treats long benign inputs. (Adding such texts to training was tried: it did not lower the false
    positives on real documents and cost validation F1, so they only measure.)
    """
    benign = pool[y[pool] == 0]
    attacks = pool[y[pool] == 1]
    out: list[str] = []
    labels = np.zeros(n, dtype=np.int64)
    for j in range(n):
        parts: list[str] = []
        while sum(len(p) + 2 for p in parts) <= ESCALATE_MAX_CHARS and len(parts) < 60:
            parts.append(texts[int(rng.choice(benign))])
        if j % 3 == 2 and len(attacks):
            parts.insert(int(rng.integers(0, len(parts) + 1)), texts[int(rng.choice(attacks))])
            labels[j] = 1
        out.append("\n\n".join(parts))
    return out, labels


def _fit_heads(lex: Any, emb: np.ndarray, y: np.ndarray, seed: int) -> Heads:
    from scipy import sparse  # type: ignore[import-untyped,unused-ignore]

    fast_w, fast_b = _fit(lex, y, C_FAST, seed)
    full_w, full_b = _fit(sparse.hstack([lex, sparse.csr_matrix(emb * EMBED_SCALE)], format="csr"), y, C_FULL, seed)
    return Heads(fast_w, fast_b, full_w, full_b)


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half); NaN when one class is missing."""
    from scipy.stats import rankdata  # type: ignore[import-untyped,unused-ignore]

    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "fpr": fp / max(1, int(np.sum(y == 0))),
        "roc_auc": roc_auc(y, p),
    }


def _with_ci(y: np.ndarray, p: np.ndarray, threshold: float, seed: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Point estimates with 95% percentile-bootstrap intervals (resampling validation rows)."""
    point = _metrics(y, p, threshold)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(rounds):
        idx = rng.integers(0, len(y), len(y))
        for k, v in _metrics(y[idx], p[idx], threshold).items():
            samples[k].append(v)
    return {
        k: {
            "value": round(point[k], 4),
            "ci95": [round(float(np.nanpercentile(samples[k], q)), 4) for q in (2.5, 97.5)],
        }
        for k in point
    }


def _clopper_pearson(failures: int, n: int) -> list[float]:
    """Exact 95% interval of a rate (the bootstrap degenerates to [0, 0] when no failure was seen)."""
    from scipy.stats import beta  # type: ignore[import-untyped,unused-ignore]

    low = 0.0 if failures == 0 else float(beta.ppf(0.025, failures, n - failures + 1))
    high = 1.0 if failures == n else float(beta.ppf(0.975, failures + 1, n - failures))
    return [round(low, 4), round(high, 4)]


def _threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The F1-best threshold whose benign false-positive rate stays within MAX_FPR."""
    best, best_f1 = 0.5, -1.0
    for t in np.round(np.arange(0.2, 0.96, 0.01), 2):
        m = _metrics(y, p, float(t))
        if m["fpr"] <= MAX_FPR and m["f1"] > best_f1:
            best, best_f1 = float(t), m["f1"]
    return best


def lexical(texts: list[str]) -> Any:
    """A CSR matrix [n, LEXICAL_FEATURES] of the hashed n-gram features."""
    from scipy import sparse  # type: ignore[import-untyped,unused-ignore]

    rows = [hashed(t) for t in texts]
    indptr = np.cumsum([0] + [len(idx) for idx, _ in rows])
    indices = np.concatenate([idx for idx, _ in rows]) if rows else np.zeros(0, np.int64)
    data = np.concatenate([val for _, val in rows]) if rows else np.zeros(0)
    return sparse.csr_matrix((data, indices, indptr), shape=(len(texts), LEXICAL_FEATURES))


def _rule_scores(texts: list[str]) -> np.ndarray:
    hits = [match_rules(t) for t in texts]
    return np.array([h.score if h else 0.0 for h in hits])


def _deterministic_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz whose bytes depend only on the arrays (fixed member times, fixed order)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue(), compresslevel=9)
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class Artifact:
    version: str  # "sha256:<first 16 hex>" of the weights file
    weights: bytes
    card: dict[str, Any]


def train(
    seed: int = 0,
    data_dir: Path = DEFAULT_DATA,
    *,
    limit: int | None = None,
    embedder: OnnxEmbedder | None = None,
    bootstrap: int = BOOTSTRAP,
) -> Artifact:
    """Train both heads on the train split, choose the threshold out of fold, measure on validation.

    ``limit`` keeps the first N examples of each source and ``bootstrap`` sets the resamples of the
    confidence intervals (both for quick reproducibility checks).
    """
    examples = load_examples(data_dir)
    if limit is not None:
        by_source: dict[str, list[Example]] = {}
        for e in examples:
            by_source.setdefault(e.source, []).append(e)
        examples = [e for group in by_source.values() for e in group[:limit]]
    texts = [normalize(e.text).text for e in examples]
    y = np.array([e.label for e in examples])
    train_idx, val_idx = split(examples, seed)
    lex = lexical(texts)
    emb = embed(embedder or make_embedder(), texts)
    from sklearn.model_selection import StratifiedGroupKFold  # type: ignore[import-untyped,unused-ignore]

    rules = _rule_scores(texts)
    short = np.array([len(t) <= ESCALATE_MAX_CHARS for t in texts])

    # Out-of-fold cascade scores on the training part choose the threshold (validation stays unseen).
    oof = np.zeros(len(train_idx))
    inner = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed + 1)
    groups = groups_of([texts[i] for i in train_idx])
    for fit_part, held in inner.split(np.zeros(len(train_idx)), y[train_idx], groups):
        rows, out = train_idx[fit_part], train_idx[held]
        heads = _fit_heads(lex[rows], emb[rows], y[rows], seed)
        oof[held] = heads.scores(lex[out], emb[out], rules[out], short[out])[2]
    threshold = _threshold(y[train_idx], oof)

    heads = _fit_heads(lex[train_idx], emb[train_idx], y[train_idx], seed)
    fast, full, cascade = heads.scores(lex[val_idx], emb[val_idx], rules[val_idx], short[val_idx])
    yv = y[val_idx]
    unsure = float(np.mean((fast >= BAND) & (fast <= 1 - BAND) & short[val_idx]))
    sources = np.array([e.source for e in examples])[val_idx]
    per_source = {
        s: {k: round(v, 4) for k, v in _metrics(yv[sources == s], cascade[sources == s], threshold).items()}
        for s in sorted(set(sources.tolist()))
    }
    rules_alone = _metrics(yv, rules[val_idx], 0.5)
    # Long texts built from validation prompts only (the fast head decides them alone).
    long_val, long_y = long_texts(texts, y, val_idx, LONG_TEXTS, np.random.default_rng(seed + 2))
    long_rules = _rule_scores(long_val)
    no_embedding = np.zeros((len(long_val), emb.shape[1]))
    long_short = np.zeros(len(long_val), dtype=bool)
    long_scores = heads.scores(lexical(long_val), no_embedding, long_rules, long_short)[2]
    long_metrics = {k: round(v, 4) for k, v in _metrics(long_y, long_scores, threshold).items()}

    # The shipped heads are the train-only fit measured above: the validation split stays unseen, so
    # tests can recompute these numbers from the artifact.
    final = heads
    weights = _deterministic_npz(
        {
            "fast_w": final.fast_w.astype(np.float16),
            "fast_b": np.array([final.fast_b], dtype=np.float64),
            "full_w": final.full_w.astype(np.float16),
            "full_b": np.array([final.full_b], dtype=np.float64),
            "threshold": np.array([threshold], dtype=np.float64),
            "band": np.array([BAND], dtype=np.float64),
            "escalate_max_chars": np.array([ESCALATE_MAX_CHARS], dtype=np.int64),
            "embed_scale": np.array([EMBED_SCALE], dtype=np.float64),
        }
    )
    version = "sha256:" + hashlib.sha256(weights).hexdigest()[:16]
    card: dict[str, Any] = {
        "model": "goldenpath prompt-injection classifier",
        "version": version,
        "seed": seed,
        "data": {
            "sources": {
                "deepset/prompt-injections (train)": "deepset_train.parquet, text/label, English + German",
                "jackhhao/jailbreak-classification (train, balanced)": "prompt/type benign|jailbreak",
            },
            "examples": len(examples),
            "validation_indices_sha256": hashlib.sha256(np.asarray(val_idx, dtype=np.int64).tobytes()).hexdigest(),
            "positives": int(y.sum()),
            "limit_per_source": limit,
        },
        "split": {
            "method": "StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed), first fold held back; "
            "groups = union of texts with equal normalized text or equal normalized first 64 characters",
            "train": len(train_idx),
            "validation": len(val_idx),
            "validation_positives": int(yv.sum()),
            "groups": len(set(groups_of(texts).tolist())),
        },
        "features": {
            "lexical": "hashed char 3-5-grams (2^18) + word 1-2-grams (2^17) of the lower-cased text, each block "
            f"l2-normalized, first and last {LEXICAL_CHARS // 2} characters",
            "embedding": f"all-MiniLM-L6-v2 (int8 ONNX), first {EMBED_WINDOW} tokens, x{EMBED_SCALE}",
            "normalization": "zero-width/bidi removal, NFKC, mixed-script homoglyph folding, spaced-letter joining",
        },
        "heads": {
            "fast": f"logistic regression on lexical features (liblinear, C={C_FAST})",
            "full": f"logistic regression on lexical + embedding (liblinear, C={C_FULL}); run when the fast "
            f"probability is within [{BAND}, {1 - BAND}] and the text has at most {ESCALATE_MAX_CHARS} characters",
            "rules": "ignore-previous-instructions (en/de/fr/es/pt/it), role-play jailbreaks, system-prompt "
            "extraction; score = max(model, rule)",
            "threshold": threshold,
            "threshold_method": f"F1-best on out-of-fold training scores with benign FPR <= {MAX_FPR}",
        },
        "validation": {
            "cascade_with_rules": _with_ci(yv, cascade, threshold, seed, bootstrap),
            "fpr_exact_ci95": _clopper_pearson(int(np.sum((cascade >= threshold) & (yv == 0))), int(np.sum(yv == 0))),
            "fast_only": {k: round(v, 4) for k, v in _metrics(yv, fast, threshold).items()},
            "full_only": {k: round(v, 4) for k, v in _metrics(yv, full, threshold).items()},
            "rules_only": {k: round(v, 4) for k, v in rules_alone.items()},
            "long_texts_from_validation": long_metrics,
            "per_source": per_source,
            "share_escalated_to_full": round(unsure, 4),
            "bootstrap": f"{bootstrap} resamples of validation rows, percentile 95% interval, seed {seed}",
        },
        "shipped": "The shipped heads are the train-only fit measured above (the validation split was never "
        "trained on). EMBED_SCALE and C were chosen after a small sweep on this split (scale 0.5/1/2, C 2/8/32, "
        "with an earlier feature hasher), so these numbers are slightly optimistic",
        "limitations": [
            "Long texts in the data are nearly all jailbreak templates, and there is no code or technical "
            "documentation at all: 7 of 18 excerpts of this repository's docs and Python files scored above the "
            "threshold, while long texts joined from benign validation prompts did not (long_texts_from_validation). "
            "Use action=flag (not block) for the context stage and long inputs until benign document data is added.",
            "An injection hidden inside a long benign text is missed by the classifier about 4 times in 10 "
            "(long_texts_from_validation recall); the rules, which read the whole text, catch the known families.",
            "Trained on ~1,600 prompts from two public sets: English and German only (other languages "
            "are covered by rules, not the classifier); jailbreak data is dominated by long DAN-style templates.",
            "Indirect injection (instructions inside retrieved documents or tool output) is not in the data.",
            "Role-play prompts that are benign ('You are a blacksmith...') resemble jailbreak templates; "
            "FPR on other benign distributions (code, long documents) is unmeasured here.",
            "Lexical features read only the first and last 2,000 characters; the embedding only the first "
            f"{EMBED_WINDOW} tokens; rules read the whole text.",
            "Adversarial paraphrases, other encodings than base64, and languages outside the rules will evade it.",
        ],
    }
    return Artifact(version, weights, card)


def _card_markdown(card: dict[str, Any]) -> str:
    v = card["validation"]
    rows = "\n".join(
        f"| {k} | {m['value']} | [{m['ci95'][0]}, {m['ci95'][1]}] |" for k, m in v["cascade_with_rules"].items()
    )
    return (
        f"# {card['model']} — {card['version']}\n\n"
        f"Seed {card['seed']}; {card['data']['examples']} examples ({card['data']['positives']} injections).\n\n"
        f"## Data\n\n" + "\n".join(f"- {k}: {d}" for k, d in card["data"]["sources"].items()) + "\n\n"
        f"## Split\n\n{card['split']['method']}. Train {card['split']['train']}, validation "
        f"{card['split']['validation']} ({card['split']['validation_positives']} injections).\n\n"
        f"## Model\n\n" + "\n".join(f"- {k}: {d}" for k, d in {**card["features"], **card["heads"]}.items()) + "\n\n"
        f"## Validation (deployed cascade + rules, threshold {card['heads']['threshold']})\n\n"
        f"| metric | value | 95% bootstrap CI |\n|---|---|---|\n{rows}\n\n"
        f"Benign false-positive rate, exact (Clopper-Pearson) 95% interval: {v['fpr_exact_ci95']}.\n\n"
        f"Fast head only: {v['fast_only']}\n\nFull head only: {v['full_only']}\n\nRules only: {v['rules_only']}\n\n"
        f"Long texts (> {ESCALATE_MAX_CHARS} characters) built from validation prompts only, {LONG_TEXTS}, "
        f"one in three with an injection inside: {v['long_texts_from_validation']}\n\n"
        f"Per source: {v['per_source']}\n\nShare of validation escalated to the full head: "
        f"{v['share_escalated_to_full']}. Intervals: {v['bootstrap']}.\n\n{card['shipped']}.\n\n"
        f"## Known limitations\n\n" + "\n".join(f"- {item}" for item in card["limitations"]) + "\n"
    )


def save(artifact: Artifact, out_dir: Path = ARTIFACTS) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / WEIGHTS_FILE).write_bytes(artifact.weights)
    (out_dir / CARD_FILE).write_text(json.dumps(artifact.card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out_dir / CARD_MD_FILE).write_text(_card_markdown(artifact.card), encoding="utf-8")


@click.command("train")
@click.option("--seed", type=int, default=0, show_default=True, help="Split and training seed.")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_DATA,
    show_default=True,
    help="Folder with deepset_train.parquet and jackhhao_jailbreak_dataset_train_balanced.csv.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=ARTIFACTS,
    show_default=True,
    help="Where the weights and the model card go.",
)
def train_command(seed: int, data_dir: Path, out_dir: Path) -> None:
    """Train the prompt-injection classifier and write its artifact and model card."""
    artifact = train(seed, data_dir)
    save(artifact, out_dir)
    metrics = artifact.card["validation"]["cascade_with_rules"]
    click.echo(f"{artifact.version} -> {out_dir}")
    for name in ("f1", "fpr", "roc_auc"):
        click.echo(
            f"  {name}: {metrics[name]['value']} (95% CI {metrics[name]['ci95'][0]} to {metrics[name]['ci95'][1]})"
        )
