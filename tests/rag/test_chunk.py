"""Structure-aware chunking: offsets, coverage, token bounds, overlap, headings."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goldenpath.rag._chunk import (
    ApproxTokenCounter,
    TokenCounter,
    WordpieceTokenCounter,
    chunk_document,
    context_prefix,
    default_token_counter,
)
from goldenpath.rag._parse import parse_upload
from goldenpath.rag._types import Chunk, Document

APPROX = ApproxTokenCounter()
SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "data" / "scifact" / "corpus.jsonl"


def tokens(counter: TokenCounter, text: str) -> int:
    return len(counter.token_starts(text)[0])


def body_tokens(counter: TokenCounter, document: Document, chunk: Chunk) -> int:
    """Tokens of the chunk's body as the chunker counts them: tokens of the document starting in it."""
    starts = counter.token_starts(document.text)[0]
    return sum(1 for start in starts if chunk.start <= start < chunk.end)


def check_invariants(
    document: Document, chunks: list[Chunk], counter: TokenCounter, max_tokens: int, *, prefixed: bool = True
) -> None:
    text = document.text
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    assert [chunk.id for chunk in chunks] == [f"{document.id}#{n}" for n in range(len(chunks))]
    covered = bytearray(len(text))
    for chunk in chunks:
        body = text[chunk.start : chunk.end]
        assert chunk.document_id == document.id
        assert 0 <= chunk.start < chunk.end <= len(text)
        assert body == body.strip(), "bodies are trimmed"
        assert chunk.text.endswith(body)
        prefix = chunk.text[: len(chunk.text) - len(body)]
        if not prefixed:
            assert prefix == ""
        else:
            full = context_prefix(document.title, chunk.heading)
            assert prefix in {full, context_prefix(document.title, "")} or (
                prefix.endswith("\n\n") and full.startswith(prefix[:-2])
            ), "the prefix is the context prefix, or a cut of it"
        assert tokens(counter, prefix) + body_tokens(counter, document, chunk) <= max_tokens
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    missed = [i for i, flag in enumerate(covered) if not flag and not text[i].isspace()]
    assert not missed, f"uncovered text at {missed[:5]}"
    for before, after in itertools.pairwise(chunks):
        assert before.start < after.start and before.end < after.end, "chunks go forward"


def paragraph(words: int, seed: int) -> str:
    vocabulary = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    sentences = []
    for start in range(0, words, 8):
        sentence = [vocabulary[(seed + i * 7) % len(vocabulary)] for i in range(start, min(start + 8, words))]
        sentences.append(" ".join(sentence).capitalize() + ".")
    return " ".join(sentences)


def test_a_short_document_is_one_chunk_with_the_title_before_it() -> None:
    document = Document(id="d", text="  Short text here.\n", title="A Title")
    [chunk] = chunk_document(document, counter=APPROX)
    assert (chunk.id, chunk.document_id, chunk.ordinal, chunk.heading) == ("d#0", "d", 0, "")
    assert chunk.text == "A Title\n\nShort text here."
    assert document.text[chunk.start : chunk.end] == "Short text here."
    [plain] = chunk_document(document, counter=APPROX, contextual_prefix=False)
    assert plain.text == "Short text here."


def test_sections_split_first_and_give_headings() -> None:
    document = parse_upload("g.md", b"Preamble text.\n\n# Install\nRun the installer.\n\n## Linux\nUse apt.\n")[0]
    chunks = chunk_document(document, counter=APPROX)
    assert [(chunk.heading, document.text[chunk.start : chunk.end]) for chunk in chunks] == [
        ("", "Preamble text."),
        ("Install", "Install\nRun the installer."),
        ("Linux", "Linux\nUse apt."),
    ]
    # the body starts with its heading, so the prefix does not repeat it
    assert chunks[1].text == "Install\n\nInstall\nRun the installer."  # title "Install" (first h1), then the body
    check_invariants(document, chunks, APPROX, 256)


def test_the_heading_goes_into_the_prefix_of_chunks_that_do_not_start_with_it() -> None:
    text = "Setup\n" + "\n\n".join(paragraph(60, seed) for seed in range(6))
    document = Document(id="d", text=text, title="Manual", sections=((0, "Setup"),))
    chunks = chunk_document(document, max_tokens=128, overlap=0, counter=APPROX)
    assert len(chunks) > 2
    assert chunks[0].text.startswith("Manual\n\nSetup\n")
    assert all(chunk.text.startswith("Manual\nSetup\n\n") for chunk in chunks[1:])
    assert all(chunk.heading == "Setup" for chunk in chunks)


def test_paragraphs_are_kept_whole_when_they_fit() -> None:
    paragraphs = [paragraph(40, seed) for seed in range(8)]  # ~50-60 approximate tokens each
    document = Document(id="d", text="\n\n".join(paragraphs))
    chunks = chunk_document(document, max_tokens=128, overlap=0, counter=APPROX, contextual_prefix=False)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.text.startswith(tuple(p[:20] for p in paragraphs))
        assert chunk.text.endswith(tuple(p[-20:] for p in paragraphs))
    check_invariants(document, chunks, APPROX, 128, prefixed=False)


def test_a_long_paragraph_is_split_at_sentence_ends() -> None:
    document = Document(id="d", text=paragraph(400, 3))
    chunks = chunk_document(document, max_tokens=64, overlap=0, counter=APPROX, contextual_prefix=False)
    assert len(chunks) > 4
    assert all(chunk.text.endswith(".") for chunk in chunks)
    check_invariants(document, chunks, APPROX, 64, prefixed=False)


def test_text_without_any_break_falls_back_to_word_windows() -> None:
    document = Document(id="d", text=" ".join(f"word{i}" for i in range(500)))
    chunks = chunk_document(document, max_tokens=32, overlap=8, counter=APPROX, contextual_prefix=False)
    assert len(chunks) > 10
    for chunk in chunks:
        assert re.fullmatch(r"word\d+( word\d+)*", chunk.text), "windows cut between words"
    check_invariants(document, chunks, APPROX, 32, prefixed=False)


def test_one_word_longer_than_the_budget_is_cut_between_its_tokens() -> None:
    document = Document(id="d", text="x" * 400)
    chunks = chunk_document(document, max_tokens=16, overlap=0, counter=APPROX, contextual_prefix=False)
    assert "".join(chunk.text for chunk in chunks) == document.text
    check_invariants(document, chunks, APPROX, 16, prefixed=False)


def test_consecutive_chunks_of_a_section_overlap_at_a_sentence_or_word() -> None:
    document = Document(id="d", text=paragraph(600, 1))
    chunks = chunk_document(document, max_tokens=64, overlap=16, counter=APPROX, contextual_prefix=False)
    starts = APPROX.token_starts(document.text)[0]
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end, "they overlap"
        shared = sum(1 for start in starts if after.start <= start < before.end)
        assert 0 < shared <= 16
        assert document.text[after.start - 1] == " "
    unshared = chunk_document(document, max_tokens=64, overlap=0, counter=APPROX, contextual_prefix=False)
    assert all(before.end < after.start for before, after in itertools.pairwise(unshared))


def test_chunks_do_not_overlap_across_sections() -> None:
    first, second = paragraph(300, 1), paragraph(300, 2)
    text = f"{first}\n\n{second}"
    document = Document(id="d", text=text, sections=((0, "One"), (len(first) + 2, "Two")))
    chunks = chunk_document(document, max_tokens=64, overlap=16, counter=APPROX)
    boundary = len(first) + 2
    assert all(chunk.end <= boundary or chunk.start >= boundary for chunk in chunks)
    assert {chunk.heading for chunk in chunks if chunk.start >= boundary} == {"Two"}
    check_invariants(document, chunks, APPROX, 64)


def test_a_long_title_prefix_is_cut_to_a_quarter_of_the_budget() -> None:
    document = Document(id="d", text=paragraph(200, 4), title=paragraph(100, 5))
    chunks = chunk_document(document, max_tokens=64, overlap=8, counter=APPROX)
    for chunk in chunks:
        prefix = chunk.text[: len(chunk.text) - (chunk.end - chunk.start)]
        assert tokens(APPROX, prefix) <= 16
    check_invariants(document, chunks, APPROX, 64)


def test_whitespace_only_sections_give_no_chunks() -> None:
    document = Document(id="d", text="text\n\n   \n", sections=((0, "A"), (6, "Empty")))
    assert [chunk.heading for chunk in chunk_document(document, counter=APPROX)] == ["A"]


@pytest.mark.parametrize(("max_tokens", "overlap"), [(15, 0), (64, 32), (64, -1)])
def test_bad_budgets_are_refused(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError, match=r"max_tokens|overlap"):
        chunk_document(Document(id="d", text="x"), max_tokens=max_tokens, overlap=overlap, counter=APPROX)


def test_the_approximate_counter_splits_long_words() -> None:
    starts, word_starts = APPROX.token_starts("a internationalization, ok")
    assert list(starts) == [0, 2, 7, 11, 15, 19, 22, 24]
    assert list(word_starts) == [1, 1, 0, 0, 0, 0, 1, 1]


# -- properties ---------------------------------------------------------------------------------------

_WORDS = st.sampled_from(["a", "the", "tokenization", "x" * 40, "Ünïcödé", "日本語", "e.g.", "(see", "it)", "42"])
_SEPARATORS = st.sampled_from([" ", " ", " ", ". ", "! ", "\n", "\n\n", "\n \n", "\t", ", ", "  "])


@st.composite
def documents(draw: st.DrawFn) -> Document:
    pieces = draw(st.lists(st.tuples(_WORDS, _SEPARATORS), min_size=1, max_size=300))
    text = draw(st.sampled_from(["", " ", "\n"])) + "".join(word + separator for word, separator in pieces)
    offsets = draw(st.lists(st.integers(0, len(text)), max_size=4))
    headings = draw(st.lists(st.sampled_from(["Intro", "Method", "Intro", ""]), min_size=len(offsets)))
    title = draw(st.sampled_from(["", "Title", "A long title " * 10]))
    return Document(id="doc", text=text, title=title, sections=tuple(zip(offsets, headings, strict=False)))


@settings(max_examples=300, deadline=None)
@given(documents(), st.integers(16, 200), st.data())
def test_chunking_invariants_hold_for_any_text(document: Document, max_tokens: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, max_tokens // 2 - 1))
    prefix = data.draw(st.booleans())
    chunks = chunk_document(document, max_tokens=max_tokens, overlap=overlap, contextual_prefix=prefix, counter=APPROX)
    check_invariants(document, chunks, APPROX, max_tokens, prefixed=prefix)
    starts = APPROX.token_starts(document.text)[0]
    for before, after in itertools.pairwise(chunks):
        shared = sum(1 for start in starts if after.start <= start < before.end)
        assert shared <= overlap
        if before.heading == after.heading and overlap and after.start < before.end:
            assert shared > 0


# -- the MiniLM tokenizer -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wordpiece() -> WordpieceTokenCounter:
    from goldenpath.providers._packaged import minilm_tokenizer

    return WordpieceTokenCounter(minilm_tokenizer())


@pytest.mark.models
def test_wordpiece_offsets_and_word_starts(wordpiece: WordpieceTokenCounter) -> None:
    text = "Unbelievably, café 日本 text"
    starts, word_starts = wordpiece.token_starts(text)
    assert [text[s] for s in starts][:2] == ["U", "b"]  # un ##bel ...
    assert word_starts[0] == 1 and word_starts[1] == 0
    assert text[starts[list(word_starts).index(1, 1)]] == ","
    long_text = "word " * 40000  # more than one block of 64 KiB
    assert len(wordpiece.token_starts(long_text)[0]) == 40000


@pytest.mark.models
@settings(max_examples=100, deadline=None)
@given(documents(), st.integers(16, 200), st.data())
def test_invariants_hold_with_the_wordpiece_counter(
    wordpiece: WordpieceTokenCounter, document: Document, max_tokens: int, data: st.DataObject
) -> None:
    overlap = data.draw(st.integers(0, max_tokens // 2 - 1))
    chunks = chunk_document(document, max_tokens=max_tokens, overlap=overlap, counter=wordpiece)
    check_invariants(document, chunks, wordpiece, max_tokens)


@pytest.mark.models
@pytest.mark.skipif(not SCIFACT.is_file(), reason="the shared SciFact data is not here")
def test_scifact_chunks_fit_the_model_window_when_encoded_alone(wordpiece: WordpieceTokenCounter) -> None:
    with SCIFACT.open() as handle:
        lines = [json.loads(line) for line in itertools.islice(handle, 300)]
    for line in lines:
        document = Document(id=line["_id"], text=line["text"], title=line["title"])
        chunks = chunk_document(document, counter=wordpiece)
        check_invariants(document, chunks, wordpiece, 256)
        assert all(tokens(wordpiece, chunk.text) <= 256 for chunk in chunks)


def test_without_the_model_package_the_estimate_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    from goldenpath.providers import _packaged

    def missing() -> Path:
        raise _packaged.ModelFileMissing("not installed")

    monkeypatch.setattr(_packaged, "minilm_tokenizer", missing)
    default_token_counter.cache_clear()
    try:
        assert isinstance(default_token_counter(), ApproxTokenCounter)
    finally:
        default_token_counter.cache_clear()
