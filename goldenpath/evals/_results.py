"""Per-item result files: JSONL lines ``{"item_id": ..., "scores": {"metric": value, ...}}``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class EvalInputError(ValueError):
    """An input of a comparison or a gate cannot be used; the message names the file and the reason."""


class ResultsError(EvalInputError):
    """A result file is malformed; the message is ``FILE:LINE: reason``."""


@dataclass(frozen=True)
class RunResults:
    """The scores of one run, by metric, item and epoch (repeat).

    ``scores[metric][item_id]`` holds the item's values in epoch order. An item may lack a metric
    (its scorer did not apply); it then takes no part in that metric.
    """

    source: str
    item_ids: tuple[str, ...]
    scores: dict[str, dict[str, tuple[float, ...]]]

    @property
    def metrics(self) -> list[str]:
        return sorted(self.scores)

    def item_means(self, metric: str) -> dict[str, float]:
        """Each item's mean over its epochs: the unit that comparisons test on."""
        return {item: math.fsum(values) / len(values) for item, values in self.scores[metric].items()}

    def is_binary(self, metric: str) -> bool:
        """Every value of the metric, in every epoch, is 0 or 1 (booleans count as 0 and 1)."""
        return all(v in (0.0, 1.0) for values in self.scores[metric].values() for v in values)

    def mean(self, metric: str) -> float:
        """The mean of the item means over every item that has the metric."""
        means = self.item_means(metric)
        return math.fsum(means.values()) / len(means)


def reject_constant(name: str) -> Any:
    """``json.loads``'s ``parse_constant``: NaN and Infinity are not JSON numbers."""
    raise ValueError(f"{name} is not a number JSON allows")


def _item_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"item_id must be a string or an integer, got {type(value).__name__}")
    text = str(value)
    if not text:
        raise ValueError("item_id is empty")
    return text


def _score(metric: Any, value: Any) -> float:
    if not isinstance(metric, str) or not metric:
        raise ValueError("metric names must be non-empty strings")
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float):
        kind = "null" if value is None else type(value).__name__
        raise ValueError(f"score {metric!r} must be a number or a boolean, got {kind}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"score {metric!r} must be finite, got {value}")
    return number


def parse_results(text: str, source: str) -> RunResults:
    """Parse the text of a result file; ``source`` names it in errors.

    Lines may carry an ``epoch`` (a non-negative integer): either every line does, and an
    ``(item_id, epoch)`` pair may appear once, or none does, and the lines of one item are its
    epochs in file order. Blank lines are skipped; other keys are ignored (provenance, say).
    """
    order: list[str] = []
    epochs: dict[str, dict[int, tuple[int, dict[str, float]]]] = {}
    explicit: bool | None = None
    first_line = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{source}:{number}"
        try:
            line = json.loads(raw, parse_constant=reject_constant)
        except ValueError as exc:
            raise ResultsError(f"{where}: not valid JSON: {exc}") from None
        if not isinstance(line, dict):
            raise ResultsError(f"{where}: expected a JSON object, got {type(line).__name__}")
        try:
            if "item_id" not in line:
                raise ValueError("missing item_id")
            item = _item_id(line["item_id"])
            if "scores" not in line:
                raise ValueError("missing scores")
            raw_scores = line["scores"]
            if not isinstance(raw_scores, dict):
                raise ValueError(f"scores must be an object, got {type(raw_scores).__name__}")
            if not raw_scores:
                raise ValueError("scores is empty")
            scores = {str(k): _score(k, v) for k, v in raw_scores.items()}
            has_epoch = "epoch" in line
            if explicit is None:
                explicit, first_line = has_epoch, number
            elif has_epoch != explicit:
                state = "has" if explicit else "has no"
                raise ValueError(f"epoch must be on every line or on none (line {first_line} {state} epoch)")
            seen = epochs.setdefault(item, {})
            if has_epoch:
                epoch = line["epoch"]
                if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
                    raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
                if epoch in seen:
                    raise ValueError(f"duplicate item_id {item!r} epoch {epoch} (first on line {seen[epoch][0]})")
            else:
                epoch = len(seen)
        except ValueError as exc:
            raise ResultsError(f"{where}: {exc}") from None
        if not seen:
            order.append(item)
        seen[epoch] = (number, scores)
    if not order:
        raise ResultsError(f"{source}: no results (the file has no lines)")
    table: dict[str, dict[str, tuple[float, ...]]] = {}
    for item in order:
        for _, (_, scores) in sorted(epochs[item].items()):
            for metric, value in scores.items():
                row = table.setdefault(metric, {})
                row[item] = (*row.get(item, ()), value)
    return RunResults(source=source, item_ids=tuple(order), scores=table)


def load_results(path: str | Path) -> RunResults:
    """Read a JSONL result file (as written by ``goldenpath eval export``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read result file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{path}: not UTF-8 text: {exc.reason}") from None
    return parse_results(text, str(path))
