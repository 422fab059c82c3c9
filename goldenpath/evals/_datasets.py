"""Evaluation datasets: samples, a content-hash version, deterministic splits, file and shared-data loaders.

A sample is ``{"id", "input", "expected", "metadata"}``. ``input`` is a prompt string, a list of chat
messages (``{"role", "content"}``) or an object of named fields for a prompt template. Sample ids are
the ``item_id`` of result files, so integers are read as their decimal string, as there.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from goldenpath.evals._results import EvalInputError, reject_constant

SHARED_DATA_ENV = "GOLDENPATH_SHARED_DATA"
_FIELDS = ("id", "input", "expected", "metadata")
_Row = TypeVar("_Row")


class DatasetError(EvalInputError):
    """A dataset cannot be read; the message is ``FILE:LINE: reason`` (or names the file or folder)."""


class ChatMessage(BaseModel):
    """One chat message; other OpenAI message fields (``name``, ``tool_call_id``, ...) are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str


SampleInput = str | list[ChatMessage] | dict[str, Any]


class Sample(BaseModel):
    """One evaluation item."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, description="Unique in its dataset; the item_id of results.")
    input: SampleInput = Field(description="A prompt, a list of chat messages, or template fields.")
    expected: Any = Field(default=None, description="What the scorers compare against (any JSON value).")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"must be a string or an integer, got {type(value).__name__}")
        return str(value)

    @field_validator("input", mode="before")
    @classmethod
    def _input_shape(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            if not value:
                raise ValueError("an object of fields must not be empty")
            return value
        if isinstance(value, list):
            if not value:
                raise ValueError("a list of chat messages must not be empty")
            messages = []
            for index, message in enumerate(value):
                try:
                    messages.append(ChatMessage.model_validate(message))
                except ValidationError as exc:
                    raise ValueError(f"message {index}: {_describe(exc)}") from None
            return messages
        raise ValueError(f"must be a string, a list of chat messages or an object, got {type(value).__name__}")

    def canonical(self) -> str:
        """Canonical JSON of the sample (sorted keys, no spaces): what the dataset version hashes."""
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )


class Dataset(BaseModel):
    """A named list of samples with unique ids; ``version`` is a hash of their content."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    samples: tuple[Sample, ...] = Field(min_length=1)
    split: str | None = Field(default=None, description="The split's name when carved by ``Dataset.split_off``.")

    @model_validator(mode="after")
    def _unique_ids(self) -> Dataset:
        seen: set[str] = set()
        for sample in self.samples:
            if sample.id in seen:
                raise ValueError(f"duplicate sample id {sample.id!r}")
            seen.add(sample.id)
        return self

    @cached_property
    def version(self) -> str:
        """sha256 (hex) of the samples' canonical JSON in id order.

        It changes when any sample's id, input, expected or metadata changes, or when a sample is
        added or removed; not with the file's order, format or whitespace, the name or the split.
        """
        digest = hashlib.sha256()
        for sample in sorted(self.samples, key=lambda s: s.id):
            digest.update(sample.canonical().encode())
            digest.update(b"\n")
        return digest.hexdigest()

    @cached_property
    def ids(self) -> tuple[str, ...]:
        return tuple(sample.id for sample in self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    @cached_property
    def _by_id(self) -> dict[str, Sample]:
        return {sample.id: sample for sample in self.samples}

    def get(self, sample_id: str) -> Sample:
        """The sample with this id (``KeyError`` if none)."""
        return self._by_id[sample_id]

    def split_off(self, name: str, fraction: float, *, seed: int = 0, rest: bool = False) -> Dataset:
        """The samples whose id hashes (with ``seed``) below ``fraction``; with ``rest``, the others.

        A sample's side depends only on its id and the seed: adding or removing other samples moves
        none, and a larger fraction holds every sample of a smaller one. ``split_off("validation", 0.2)``
        and ``split_off("train", 0.2, rest=True)`` partition the dataset.
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be between 0 and 1 (exclusive), got {fraction}")
        chosen = tuple(s for s in self.samples if (_unit_hash(s.id, seed) < fraction) != rest)
        if not chosen:
            raise DatasetError(f"{self.name}: split {name!r} (fraction {fraction}, seed {seed}) holds no sample")
        return Dataset(name=self.name, samples=chosen, split=name)


def _unit_hash(sample_id: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}\x00{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


class _Collector:
    """Builds samples from records, reporting errors as ``FILE:LINE: reason``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.samples: list[Sample] = []
        self.first_line: dict[str, int] = {}

    def add(self, line: int, record: dict[str, Any]) -> None:
        where = f"{self.source}:{line}"
        unknown = sorted(set(record) - set(_FIELDS))
        if unknown:
            raise DatasetError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(_FIELDS)})")
        for required in ("id", "input"):
            if record.get(required) in (None, ""):
                raise DatasetError(f"{where}: missing {required}")
        try:
            sample = Sample.model_validate(record)
        except ValidationError as exc:
            raise DatasetError(f"{where}: {_describe(exc)}") from None
        if sample.id in self.first_line:
            raise DatasetError(f"{where}: duplicate id {sample.id!r} (first on line {self.first_line[sample.id]})")
        self.first_line[sample.id] = line
        self.samples.append(sample)

    def dataset(self, name: str) -> Dataset:
        if not self.samples:
            raise DatasetError(f"{self.source}: no samples")
        return Dataset(name=name, samples=tuple(self.samples))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read dataset: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text: {exc.reason}") from None


def load_jsonl(path: str | Path, name: str | None = None) -> Dataset:
    """A JSONL dataset: one object per line with ``id``, ``input`` and optional ``expected``, ``metadata``.

    Blank lines are skipped; unknown keys are refused. ``name`` defaults to the file's stem.
    """
    path = Path(path)
    collector = _Collector(str(path))
    for number, raw in enumerate(_read_text(path).splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw, parse_constant=reject_constant)
        except ValueError as exc:
            raise DatasetError(f"{path}:{number}: not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        collector.add(number, record)
    return collector.dataset(name or path.stem)


def load_csv(path: str | Path, name: str | None = None) -> Dataset:
    """A CSV dataset with a header row: ``id``, ``input`` and optional ``expected``, ``metadata`` columns.

    ``input`` and ``expected`` are text (an empty ``expected`` cell is no expected value);
    ``metadata`` is a JSON object as text (empty: none). Line numbers count physical lines, so a
    quoted cell spanning lines is reported at the line where its record starts.
    """
    path = Path(path)
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{path}: empty file (a header row with id and input is required)") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}:1: bad CSV: {exc}") from None
    columns = [column.strip() for column in header]
    for column in columns:
        if column not in _FIELDS:
            raise DatasetError(f"{path}:1: unknown column {column!r} (columns: {', '.join(_FIELDS)})")
    for required in ("id", "input"):
        if required not in columns:
            raise DatasetError(f"{path}:1: missing column {required!r}")
    if len(set(columns)) != len(columns):
        raise DatasetError(f"{path}:1: a column is repeated in the header")
    collector = _Collector(str(path))
    line = reader.line_num + 1
    for row in _rows(reader, path):
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(columns):
            raise DatasetError(f"{path}:{start}: {len(row)} cells, the header has {len(columns)}")
        cells = dict(zip(columns, row, strict=True))
        record: dict[str, Any] = {"id": cells["id"].strip(), "input": cells["input"]}
        if cells.get("expected"):
            record["expected"] = cells["expected"]
        if cells.get("metadata", "").strip():
            try:
                record["metadata"] = json.loads(cells["metadata"], parse_constant=reject_constant)
            except ValueError as exc:
                raise DatasetError(f"{path}:{start}: metadata is not valid JSON: {exc}") from None
        collector.add(start, record)
    return collector.dataset(name or path.stem)


def _rows(reader: Iterator[_Row], path: Path) -> Iterable[_Row]:
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DatasetError(f"{path}: bad CSV: {exc}") from None


def load_dataset(path: str | Path, name: str | None = None) -> Dataset:
    """A ``.jsonl`` or ``.csv`` dataset, by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl":
        return load_jsonl(path, name)
    if suffix == ".csv":
        return load_csv(path, name)
    raise DatasetError(f"{path}: unknown dataset format {suffix or '(no suffix)'!r} (use .jsonl or .csv)")


# --- the shared data sets --------------------------------------------------------------------------


class CorpusDocument(BaseModel):
    """One document of a retrieval corpus."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    text: str


def shared_data_root(root: str | Path | None = None) -> Path:
    """The shared data folder: ``root``, else ``$GOLDENPATH_SHARED_DATA``, else ``../shared/data`` beside the repo."""
    if root is not None:
        path, origin = Path(root), "the root argument"
    elif os.environ.get(SHARED_DATA_ENV):
        path, origin = Path(os.environ[SHARED_DATA_ENV]), f"${SHARED_DATA_ENV}"
    else:
        path, origin = Path(__file__).resolve().parents[2].parent / "shared" / "data", "the default"
    if not path.is_dir():
        raise DatasetError(f"{path}: shared data folder not found (from {origin}); pass root= or set {SHARED_DATA_ENV}")
    return path


def _data_file(root: str | Path | None, relative: str) -> Path:
    path = shared_data_root(root) / relative
    if not path.is_file():
        raise DatasetError(f"{path}: shared data file not found")
    return path


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, raw in enumerate(_read_text(path).splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise DatasetError(f"{path}:{number}: not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def load_squad_v2(root: str | Path | None = None) -> Dataset:
    """The SQuAD v2 dev subset: one sample per question.

    ``input`` is ``{"context", "question"}``; ``expected`` the list of gold answer texts as given
    (duplicates kept), empty for an unanswerable question; ``metadata`` holds ``title`` and
    ``is_impossible``.
    """
    path = _data_file(root, "squad-v2-dev-subset/squad_v2_dev_subset_5articles.json")
    try:
        data = json.loads(_read_text(path))
        samples = [
            Sample(
                id=qa["id"],
                input={"context": paragraph["context"], "question": qa["question"]},
                expected=[answer["text"] for answer in qa["answers"]],
                metadata={"title": article["title"], "is_impossible": bool(qa.get("is_impossible", False))},
            )
            for article in data["data"]
            for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: not a SQuAD v2 file: {type(exc).__name__}: {exc}") from None
    return Dataset(name="squad-v2-dev-subset", samples=tuple(samples))


def load_scifact_qrels(root: str | Path | None = None, split: str = "test") -> dict[str, dict[str, int]]:
    """SciFact relevance judgements: ``{query_id: {doc_id: relevance}}`` from ``qrels/{split}.tsv``."""
    path = _data_file(root, f"scifact/qrels/{split}.tsv")
    qrels: dict[str, dict[str, int]] = {}
    lines = _read_text(path).splitlines()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip() or (number == 1 and raw.startswith("query-id")):
            continue
        cells = raw.split("\t")
        if len(cells) != 3:
            raise DatasetError(f"{path}:{number}: expected 3 tab-separated cells, got {len(cells)}")
        query_id, doc_id, score = cells
        try:
            relevance = int(score)
        except ValueError:
            raise DatasetError(f"{path}:{number}: relevance {score!r} is not an integer") from None
        judged = qrels.setdefault(query_id, {})
        if doc_id in judged:
            raise DatasetError(f"{path}:{number}: duplicate judgement of query {query_id!r} doc {doc_id!r}")
        judged[doc_id] = relevance
    return qrels


def load_scifact(root: str | Path | None = None, split: str = "test") -> Dataset:
    """SciFact claims as retrieval queries: ``input`` the claim, ``expected`` ``{doc_id: relevance}``.

    Only the queries judged in ``qrels/{split}.tsv`` are samples (all 300 for the test split).
    """
    qrels = load_scifact_qrels(root, split)
    path = _data_file(root, "scifact/queries.jsonl")
    samples = []
    for number, record in _json_lines(path):
        if "_id" not in record or "text" not in record:
            raise DatasetError(f"{path}:{number}: a query needs _id and text")
        query_id = str(record["_id"])
        if query_id in qrels:
            samples.append(Sample(id=query_id, input=record["text"], expected=qrels[query_id]))
    missing = sorted(set(qrels) - {sample.id for sample in samples})
    if missing:
        raise DatasetError(f"{path}: {len(missing)} judged queries are missing, e.g. {missing[0]!r}")
    return Dataset(name=f"scifact-{split}", samples=tuple(samples))


def load_scifact_corpus(root: str | Path | None = None) -> list[CorpusDocument]:
    """The SciFact corpus (5,183 abstracts), in file order."""
    path = _data_file(root, "scifact/corpus.jsonl")
    documents = []
    for number, record in _json_lines(path):
        try:
            documents.append(CorpusDocument(id=str(record["_id"]), title=record.get("title", ""), text=record["text"]))
        except (KeyError, ValidationError) as exc:
            raise DatasetError(f"{path}:{number}: not a corpus document: {exc}") from None
    return documents


def load_deepset_injections(root: str | Path | None = None) -> Dataset:
    """deepset/prompt-injections (train, 546 rows): ``input`` the text, ``expected`` 1 for an injection, else 0.

    Ids are the row numbers (``"0"``...). Needs pyarrow to read the parquet file.
    """
    path = _data_file(root, "prompt-injection/deepset_train.parquet")
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError:
        raise DatasetError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(path, columns=["text", "label"])
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read the parquet file: {exc}") from None
    rows: list[dict[str, Any]] = table.to_pylist()
    samples = []
    for index, row in enumerate(rows):
        if row["label"] not in (0, 1) or not isinstance(row["text"], str):
            raise DatasetError(f"{path}: row {index}: expected a text and a 0/1 label, got {row!r}")
        samples.append(Sample(id=str(index), input=row["text"], expected=int(row["label"])))
    return Dataset(name="deepset-prompt-injections", samples=tuple(samples))


def load_jackhhao_jailbreaks(root: str | Path | None = None) -> Dataset:
    """jackhhao/jailbreak-classification (balanced train, 1,044 rows): ``expected`` 1 for a jailbreak, 0 benign.

    Ids are the row numbers (``"0"``...), ``input`` the prompt.
    """
    path = _data_file(root, "prompt-injection/jackhhao_jailbreak_dataset_train_balanced.csv")
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    if reader.fieldnames is None or not {"prompt", "type"} <= set(reader.fieldnames):
        raise DatasetError(f"{path}:1: expected the columns prompt and type")
    labels = {"jailbreak": 1, "benign": 0}
    samples = []
    line = reader.line_num + 1
    for index, row in enumerate(_rows(reader, path)):
        start, line = line, reader.line_num + 1
        if row["type"] not in labels:
            raise DatasetError(f"{path}:{start}: type must be jailbreak or benign, got {row['type']!r}")
        samples.append(Sample(id=str(index), input=row["prompt"], expected=labels[row["type"]]))
    return Dataset(name="jackhhao-jailbreaks", samples=tuple(samples))


def load_prompt_injection(root: str | Path | None = None, split: str = "all") -> Dataset:
    """Both prompt-injection sets as one detection dataset: ``expected`` 1 for an injection or jailbreak.

    Ids are ``deepset-N`` and ``jackhhao-N`` (row numbers); ``metadata`` holds the ``source``. ``split``:
    ``all`` (1,590 texts), or the guard's own split of them (``goldenpath.guard._train.split``, seed 0):
    ``guard-validation`` (318 texts the shipped injection detector never trained on) or ``guard-train``.
    """
    splits = ("all", "guard-validation", "guard-train")
    if split not in splits:
        raise DatasetError(f"prompt injection: unknown split {split!r} (splits: {', '.join(splits)})")
    parts = {"deepset": load_deepset_injections(root), "jackhhao": load_jackhhao_jailbreaks(root)}
    samples = [
        Sample(id=f"{source}-{s.id}", input=s.input, expected=s.expected, metadata={"source": source})
        for source, dataset in parts.items()
        for s in dataset.samples
    ]
    if split != "all":
        from goldenpath.guard._train import Example
        from goldenpath.guard._train import split as guard_split

        examples = [Example(str(s.input), int(s.expected), str(s.metadata["source"])) for s in samples]
        train_idx, validation_idx = guard_split(examples, seed=0)
        chosen = validation_idx if split == "guard-validation" else train_idx
        samples = [samples[int(i)] for i in chosen]
    return Dataset(name=f"prompt-injection-{split}", samples=tuple(samples), split=None if split == "all" else split)
