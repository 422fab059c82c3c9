"""Datasets: file loaders and their errors, the content version, splits, the shared data sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from goldenpath.evals import (
    ChatMessage,
    Dataset,
    DatasetError,
    EvalInputError,
    Sample,
    load_csv,
    load_dataset,
    load_deepset_injections,
    load_jackhhao_jailbreaks,
    load_jsonl,
    load_scifact,
    load_scifact_corpus,
    load_squad_v2,
    shared_data_root,
)


def _jsonl(path: Path, *records: object) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


# --- JSONL -------------------------------------------------------------------------------------------


def test_jsonl_reads_every_input_shape(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "qa.jsonl",
        {"id": "a", "input": "What is 2+2?", "expected": "4", "metadata": {"topic": "math"}},
        "",
        {"id": 7, "input": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]},
        {"id": "c", "input": {"context": "Paris is in France.", "question": "Where is Paris?"}, "expected": ["France"]},
    )
    dataset = load_jsonl(path)
    assert dataset.name == "qa"
    assert dataset.ids == ("a", "7", "c")
    assert len(dataset) == 3
    assert dataset.get("a").metadata == {"topic": "math"}
    messages = dataset.get("7").input
    assert isinstance(messages, list)
    assert messages[1] == ChatMessage(role="user", content="Hi")
    assert dataset.get("7").expected is None
    assert dataset.get("c").input == {"context": "Paris is in France.", "question": "Where is Paris?"}
    with pytest.raises(KeyError):
        dataset.get("missing")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "a", "input": "x"}', '{"id": "b", "input": "y",}'], "data.jsonl:2: not valid JSON"),
        (['{"input": "x"}'], "data.jsonl:1: missing id"),
        (['{"id": "", "input": "x"}'], "data.jsonl:1: missing id"),
        (['{"id": "a"}'], "data.jsonl:1: missing input"),
        (
            ['{"id": "a", "input": "x"}', "", '{"id": "a", "input": "y"}'],
            "data.jsonl:3: duplicate id 'a' (first on line 1)",
        ),
        (['{"id": "a", "input": "x", "answer": "y"}'], "data.jsonl:1: unknown field 'answer'"),
        (['["a", "x"]'], "data.jsonl:1: expected a JSON object, got list"),
        (['{"id": true, "input": "x"}'], "data.jsonl:1: id: must be a string or an integer, got bool"),
        (['{"id": "a", "input": 3}'], "data.jsonl:1: input: must be a string, a list of chat messages or an object"),
        (['{"id": "a", "input": [{"role": "robot", "content": "x"}]}'], "data.jsonl:1: input: message 0: role"),
        (['{"id": "a", "input": []}'], "data.jsonl:1: input: a list of chat messages must not be empty"),
        (['{"id": "a", "input": "x", "metadata": [1]}'], "data.jsonl:1: metadata: Input should be a valid dictionary"),
        (['{"id": "a", "input": "x", "expected": NaN}'], "data.jsonl:1: not valid JSON: NaN"),
        (["", "  "], "data.jsonl: no samples"),
    ],
)
def test_jsonl_errors_name_file_line_and_reason(tmp_path: Path, lines: list[str], message: str) -> None:
    path = _jsonl(tmp_path / "data.jsonl", *lines)
    with pytest.raises(DatasetError) as caught:
        load_jsonl(path)
    assert str(caught.value).startswith(str(tmp_path / message))
    assert isinstance(caught.value, EvalInputError)


def test_unreadable_files_are_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read dataset"):
        load_jsonl(tmp_path / "absent.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"id": "a", "input": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_jsonl(tmp_path / "latin1.jsonl")


# --- CSV ---------------------------------------------------------------------------------------------


def test_csv_reads_text_and_json_metadata(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    path.write_text(
        'id,input,expected,metadata\n1,"Two\nlines, one cell",4,"{""topic"": ""math""}"\n2,plain,,\n',
        encoding="utf-8",
    )
    dataset = load_csv(path)
    assert dataset.ids == ("1", "2")
    assert dataset.get("1") == Sample(id="1", input="Two\nlines, one cell", expected="4", metadata={"topic": "math"})
    assert dataset.get("2").expected is None
    assert dataset.get("2").metadata == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "data.csv: empty file"),
        ("id,prompt\n1,x\n", "data.csv:1: unknown column 'prompt'"),
        ("id,expected\n1,x\n", "data.csv:1: missing column 'input'"),
        ("input,id,input\nx,1,y\n", "data.csv:1: a column is repeated"),
        ('id,input,metadata\n1,"a\nb",{}\n2,c,{bad}\n', "data.csv:4: metadata is not valid JSON"),
        ("id,input\n1,x\n,y\n", "data.csv:3: missing id"),
        ("id,input\n1,x\n2,y\n1,z\n", "data.csv:4: duplicate id '1' (first on line 2)"),
        ("id,input\n1,x,extra\n", "data.csv:2: 3 cells, the header has 2"),
        ('id,input,metadata\n1,x,"[1, 2]"\n', "data.csv:2: metadata: Input should be a valid dictionary"),
    ],
)
def test_csv_errors_name_file_line_and_reason(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        load_csv(path)
    assert str(caught.value).startswith(str(tmp_path / message))


def test_load_dataset_picks_the_format_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("id,input\n1,x\n", encoding="utf-8")
    _jsonl(tmp_path / "d.jsonl", {"id": 1, "input": "x"})
    assert load_dataset(tmp_path / "d.csv", name="d").version == load_dataset(tmp_path / "d.jsonl", name="d").version
    with pytest.raises(DatasetError, match=r"unknown dataset format '\.txt'"):
        load_dataset(tmp_path / "d.txt")


# --- version -----------------------------------------------------------------------------------------

_RECORDS: list[dict[str, Any]] = [
    {"id": "a", "input": "one", "expected": "1", "metadata": {"k": [1, 2]}},
    {"id": "b", "input": [{"role": "user", "content": "two"}], "expected": {"x": 2}},
    {"id": "c", "input": {"question": "three"}, "expected": ["3", "three"]},
]


def test_version_is_stable_across_loads_order_format_and_name(tmp_path: Path) -> None:
    first = load_jsonl(_jsonl(tmp_path / "a.jsonl", *_RECORDS))
    again = load_jsonl(_jsonl(tmp_path / "b.jsonl", *reversed(_RECORDS)), name="other")
    spaced = tmp_path / "c.jsonl"
    spaced.write_text("\n\n".join(json.dumps(r, indent=None, separators=(" , ", " : ")) for r in _RECORDS))
    assert len(first.version) == 64
    assert first.version == again.version == load_jsonl(spaced).version
    assert first.version == Dataset(name="x", samples=tuple(Sample.model_validate(r) for r in _RECORDS)).version


@pytest.mark.parametrize(
    ("index", "change"),
    [
        (0, {"expected": "one"}),
        (0, {"metadata": {"k": [2, 1]}}),
        (1, {"input": [{"role": "system", "content": "two"}]}),
        (2, {"input": {"question": "three", "context": ""}}),
        (2, {"id": "d"}),
        (2, {"expected": ["three", "3"]}),
    ],
)
def test_version_changes_with_any_sample_change(index: int, change: dict[str, object]) -> None:
    base = Dataset(name="x", samples=tuple(Sample.model_validate(r) for r in _RECORDS))
    records = [dict(r) for r in _RECORDS]
    records[index].update(change)
    changed = Dataset(name="x", samples=tuple(Sample.model_validate(r) for r in records))
    assert changed.version != base.version
    fewer = Dataset(name="x", samples=base.samples[:2])
    assert fewer.version != base.version


def test_dataset_refuses_duplicate_ids() -> None:
    with pytest.raises(ValueError, match="duplicate sample id 'a'"):
        Dataset(name="x", samples=(Sample(id="a", input="1"), Sample(id="a", input="2")))


# --- splits ------------------------------------------------------------------------------------------


def _numbered(n: int) -> Dataset:
    return Dataset(name="n", samples=tuple(Sample(id=f"q{i}", input=str(i)) for i in range(n)))


def test_split_is_deterministic_and_partitions() -> None:
    dataset = _numbered(1000)
    validation = dataset.split_off("validation", 0.2, seed=3)
    train = dataset.split_off("train", 0.2, seed=3, rest=True)
    assert validation.split == "validation" and train.split == "train"
    assert validation.ids == dataset.split_off("validation", 0.2, seed=3).ids
    assert set(validation.ids).isdisjoint(train.ids)
    assert len(validation) + len(train) == 1000
    assert 150 <= len(validation) <= 250
    assert validation.ids != dataset.split_off("validation", 0.2, seed=4).ids
    assert [i for i in dataset.ids if i in set(validation.ids)] == list(validation.ids)  # dataset order kept


def test_split_membership_depends_only_on_the_id() -> None:
    small, large = _numbered(300), _numbered(1000)
    assert set(small.split_off("v", 0.3).ids) == set(large.split_off("v", 0.3).ids) & set(small.ids)
    assert set(large.split_off("v", 0.1).ids) <= set(large.split_off("v", 0.3).ids)  # nested fractions


def test_split_errors() -> None:
    with pytest.raises(ValueError, match="fraction must be between 0 and 1"):
        _numbered(10).split_off("v", 1.0)
    with pytest.raises(DatasetError, match=r"split 'v' .* holds no sample"):
        _numbered(1).split_off("v", 1e-9)


# --- shared data -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared() -> Path:
    try:
        return shared_data_root()
    except DatasetError as exc:
        pytest.skip(str(exc))


def test_shared_root_from_argument_env_and_default(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOLDENPATH_SHARED_DATA", str(tmp_path))
    assert shared_data_root() == tmp_path
    assert shared_data_root(shared) == shared
    with pytest.raises(DatasetError, match=r"shared/data/scifact/qrels/test.tsv: shared data file not found"):
        load_scifact(_empty_shared(tmp_path))
    monkeypatch.setenv("GOLDENPATH_SHARED_DATA", str(tmp_path / "absent"))
    with pytest.raises(DatasetError, match=r"absent: shared data folder not found \(from \$GOLDENPATH_SHARED_DATA\)"):
        load_squad_v2()
    with pytest.raises(DatasetError, match="from the root argument"):
        shared_data_root(tmp_path / "absent")
    monkeypatch.delenv("GOLDENPATH_SHARED_DATA")
    assert shared_data_root() == (Path(__file__).resolve().parents[2].parent / "shared" / "data")


def _empty_shared(tmp_path: Path) -> Path:
    root = tmp_path / "shared" / "data"
    root.mkdir(parents=True)
    return root


def test_squad_v2_subset(shared: Path) -> None:
    squad = load_squad_v2(shared)
    assert len(squad) == 1407
    unanswerable = [s for s in squad.samples if not s.expected]
    assert len(unanswerable) == 1407 - 705
    assert all(s.metadata["is_impossible"] for s in unanswerable)
    first = squad.get("56ddde6b9a695914005b9628")
    assert isinstance(first.input, dict)
    assert first.input["question"] == "In what country is Normandy located?"
    assert first.input["context"].startswith("The Normans")
    assert first.expected == ["France"] * 4
    assert first.metadata == {"title": "Normans", "is_impossible": False}
    assert squad.version == load_squad_v2(shared).version


def test_scifact_queries_qrels_and_corpus(shared: Path) -> None:
    scifact = load_scifact(shared)
    assert len(scifact) == 300
    assert sum(len(s.expected) for s in scifact.samples) == 339
    assert scifact.get("1") == Sample(
        id="1", input="0-dimensional biomaterials show inductive properties.", expected={"31715818": 1}
    )
    corpus = load_scifact_corpus(shared)
    assert len(corpus) == 5183
    ids = {d.id for d in corpus}
    assert all(doc in ids for s in scifact.samples for doc in s.expected)


def test_prompt_injection_sets(shared: Path) -> None:
    deepset = load_deepset_injections(shared)
    assert len(deepset) == 546
    assert sum(s.expected for s in deepset.samples) == 203
    assert deepset.get("0") == Sample(id="0", input="Refugee crisis in Europe solutions", expected=0)
    jackhhao = load_jackhhao_jailbreaks(shared)
    assert len(jackhhao) == 1044
    assert {s.expected for s in jackhhao.samples} == {0, 1}
    assert jackhhao.get("0") == Sample(id="0", input="You are a devoted fan of a celebrity.", expected=0)
