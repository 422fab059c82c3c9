"""Parsing files, folders, uploads and payloads into documents, and refusing hostile input clearly."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import ContentStream, DictionaryObject, NameObject

from goldenpath.rag._exceptions import IngestError
from goldenpath.rag._parse import parse_path, parse_payload, parse_upload, supported_extensions


def make_pdf(pages: list[str], *, password: str | None = None, title: str = "") -> bytes:
    """A real PDF with one page per string (an empty string is a page without text)."""
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    for text in pages:
        page = writer.add_blank_page(612, 792)
        if text:
            page[NameObject("/Resources")] = DictionaryObject(
                {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
            )
            stream = ContentStream(None, writer)
            lines = " ".join(f"({line}) Tj 0 -14 Td" for line in text.split("\n"))
            stream.set_data(f"BT /F1 12 Tf 72 720 Td {lines} ET".encode())
            page.replace_contents(stream)
    if title:
        writer.add_metadata({"/Title": title})
    if password is not None:
        writer.encrypt(user_password=password, owner_password="owner-secret")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def error_of(call: object, *args: object, **kwargs: object) -> IngestError:
    assert callable(call)
    with pytest.raises(IngestError) as caught:
        result = call(*args, **kwargs)
        if not isinstance(result, list):
            list(result)
    return caught.value


# -- text and markdown --------------------------------------------------------------------------------


def test_text_file_id_is_its_name_and_line_ends_and_bom_are_normalized(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_bytes(b"\xef\xbb\xbfFirst line\r\nsecond\rthird\n")
    [document] = parse_path(tmp_path / "notes.txt")
    assert document.id == "notes.txt"
    assert document.text == "First line\nsecond\nthird\n"
    assert document.source == str(tmp_path / "notes.txt")
    assert document.metadata["format"] == "text"
    assert document.sections == ()


def test_utf16_with_bom_is_read() -> None:
    [document] = parse_upload("w.txt", "Grüße aus Köln".encode("utf-16"))
    assert document.text == "Grüße aus Köln"


def test_markdown_headings_become_sections_and_code_fences_stay_text() -> None:
    source = (
        "# Guide\n\nSee [the docs](https://x.example) and ![a chart](c.png).\n\n"
        "```bash\n# not a heading\necho [x](y)\n```\n\n"
        "Install\n-------\n\nRun it.\n\n## Linux ##\nUse apt.\n    # indented code, not a heading\n"
    )
    [document] = parse_upload("guide.md", source.encode())
    assert document.title == "Guide"
    headings = [heading for _, heading in document.sections]
    assert headings == ["Guide", "Install", "Linux"]
    for offset, heading in document.sections:
        assert document.text[offset:].startswith(heading + "\n")
    assert "See the docs and a chart." in document.text
    assert "```bash\n# not a heading\necho [x](y)\n```" in document.text
    assert "#" not in document.text.replace("# not a heading", "").replace("# indented", "")


def test_markdown_without_a_level_one_heading_takes_the_first_heading_as_title() -> None:
    [document] = parse_upload("a.md", b"intro\n\n### Details\nmore\n")
    assert document.title == "Details"
    assert document.sections == ((7, "Details"),)


# -- html ---------------------------------------------------------------------------------------------

PAGE = b"""<!doctype html><html><head><title> The  Page </title><style>p{color:red}</style>
<script>var secret = 1;</script></head><body><nav><a href="/">Home</a> menu</nav>
<h1>Welcome</h1><p>Hello <b>bold</b>
   world.</p><div>first<br>second</div><!-- a comment -->
<h2>Details</h2><ul><li>one</li><li>two</li></ul>
<table><tr><td>c1</td><td>c2</td></tr></table>
<pre>  keep
    indent</pre><noscript>enable js</noscript></body></html>"""


def test_html_keeps_text_blocks_headings_and_title_and_drops_scripts_styles_nav() -> None:
    [document] = parse_upload("page.html", PAGE)
    assert document.title == "The Page"
    assert document.text == (
        "Welcome\n\nHello bold world.\n\nfirst\nsecond\n\nDetails\n\none\n\ntwo\n\nc1 c2\n\n  keep\n    indent"
    )
    assert [(document.text[offset:].split("\n")[0], heading) for offset, heading in document.sections] == [
        ("Welcome", "Welcome"),
        ("Details", "Details"),
    ]
    for dropped in ("secret", "color", "menu", "Home", "comment", "enable js"):
        assert dropped not in document.text


def test_html_honours_its_declared_charset_and_survives_deep_nesting() -> None:
    latin = '<html><head><meta charset="iso-8859-1"></head><body><p>café</p></body></html>'.encode("latin-1")
    [document] = parse_upload("old.htm", latin)
    assert document.text == "café"
    deep = b"<html><body>" + b"<div>" * 20000 + b"deep text" + b"</div>" * 20000 + b"</body></html>"
    [document] = parse_upload("deep.html", deep)
    assert document.text == "deep text"


def test_html_without_title_uses_the_first_heading() -> None:
    [document] = parse_upload("a.html", b"<h1>Top</h1><p>x</p>")
    assert document.title == "Top"


# -- pdf ----------------------------------------------------------------------------------------------


def test_pdf_text_per_page_with_page_sections(tmp_path: Path) -> None:
    (tmp_path / "r.pdf").write_bytes(make_pdf(["Hello page one\nsecond line", "", "Page three"], title="Report"))
    [document] = parse_path(tmp_path / "r.pdf")
    assert document.id == "r.pdf"
    assert document.title == "Report"
    assert document.metadata == {"format": "pdf", "pages": 3}
    assert "Hello page one" in document.text and "Page three" in document.text
    assert [heading for _, heading in document.sections] == ["page 1", "page 3"]
    page_three = document.sections[1][0]
    assert document.text[page_three:] == "Page three"


def test_pdf_encrypted_with_an_empty_user_password_is_read() -> None:
    [document] = parse_upload("open.pdf", make_pdf(["readable"], password=""))
    assert document.text == "readable"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (make_pdf(["secret"], password="pw"), "encrypted and needs a password"),
        (make_pdf(["", ""]), "no extractable text in 2 page(s)"),
        (make_pdf(["cut off"])[:200], "not a readable PDF"),
        (b"%PDF-1.7\n" + b"\x00garbage" * 50, "not a readable PDF"),
        (b"just text named .pdf", "not a PDF file"),
    ],
    ids=["encrypted", "image-only", "truncated", "garbage", "not-pdf"],
)
def test_bad_pdfs_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    error = error_of(parse_upload, "bad.pdf", data)
    assert error.source == "bad.pdf"
    assert reason in error.reason


# -- jsonl --------------------------------------------------------------------------------------------


def test_beir_jsonl_lines_become_documents_with_their_ids(tmp_path: Path) -> None:
    lines = [
        {"_id": "4983", "title": "Microstructure", "text": "Alterations of white matter.", "year": 2001},
        {"id": 17, "text": "An integer id.", "metadata": {"lang": "en"}},
        {"_id": "t-only", "title": "Title only", "text": ""},
    ]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    documents = list(parse_path(tmp_path / "corpus.jsonl"))
    assert [document.id for document in documents] == ["4983", "17", "t-only"]
    assert documents[0].title == "Microstructure"
    assert documents[0].text == "Alterations of white matter."
    assert documents[0].metadata == {"year": 2001}
    assert documents[1].metadata == {"lang": "en"}
    assert documents[2].text == "Title only"
    assert all(document.source == str(tmp_path / "corpus.jsonl") for document in documents)


def test_jsonl_without_ids_uses_file_and_line() -> None:
    documents = parse_upload("data.jsonl", b'{"text": "a"}\n\n{"content": "b"}\n')
    assert [(document.id, document.text) for document in documents] == [("data.jsonl:1", "a"), ("data.jsonl:3", "b")]


def test_jsonl_fields_can_be_chosen() -> None:
    line = b'{"key": "k1", "headline": "H", "passage": "P", "text": "ignored"}\n'
    [document] = parse_upload("x.jsonl", line, id_field="key", title_field="headline", text_field="passage")
    assert (document.id, document.title, document.text) == ("k1", "H", "P")
    assert document.metadata == {"text": "ignored"}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"_id": "x"}', "no text field"),
        (b'{"_id": "x", "text": 5}', "must be a string"),
        (b'{"_id": "x", "text": " "}', "no text"),
        (b'{"_id": [1], "text": "t"}', "must be a string or an integer"),
        (b'{"_id": "a", "text": "dup"}', "duplicate id 'a' (first at c.jsonl:1)"),
        (b"[" * 100000 + b"]" * 100000, "invalid JSON"),
    ],
)
def test_a_bad_jsonl_line_is_named_by_file_and_line(line: bytes, reason: str) -> None:
    data = b'{"_id": "a", "text": "fine"}\n\n' + line + b"\n"
    error = error_of(parse_upload, "c.jsonl", data)
    assert error.source == "c.jsonl:3"
    assert reason in error.reason


def test_collecting_keeps_the_good_lines_and_reports_the_bad(tmp_path: Path) -> None:
    (tmp_path / "c.jsonl").write_text('{"_id": "a", "text": "x"}\nnope\n{"_id": "b", "text": "y"}\n')
    errors: list[IngestError] = []
    documents = list(parse_path(tmp_path / "c.jsonl", errors=errors))
    assert [document.id for document in documents] == ["a", "b"]
    assert [error.source for error in errors] == [f"{tmp_path / 'c.jsonl'}:2"]


def test_a_bad_jsonl_line_yields_nothing_of_that_file_when_raising(tmp_path: Path) -> None:
    (tmp_path / "c.jsonl").write_text('{"_id": "a", "text": "x"}\nnope\n')
    yielded = []
    with pytest.raises(IngestError):
        for document in parse_path(tmp_path / "c.jsonl"):
            yielded.append(document)
    assert yielded == []


# -- csv ----------------------------------------------------------------------------------------------


def test_csv_rows_become_documents_with_sensible_columns() -> None:
    data = b'_id,title,body,lang\nd1,First,"a body\nover two lines",en\nd2,,second body,\n'
    documents = parse_upload("t.csv", data)
    assert [(d.id, d.title, d.text, dict(d.metadata)) for d in documents] == [
        ("d1", "First", "a body\nover two lines", {"lang": "en"}),
        ("d2", "", "second body", {}),
    ]


def test_csv_columns_can_be_chosen_and_rows_without_ids_use_their_line() -> None:
    data = b"name,summary\nalpha,first summary\nbeta,second summary\n"
    documents = parse_upload("t.csv", data, title_field="name", text_field="summary")
    assert [(d.id, d.title, d.text) for d in documents] == [
        ("t.csv:2", "alpha", "first summary"),
        ("t.csv:3", "beta", "second summary"),
    ]


def test_a_csv_row_without_text_is_named_by_its_line() -> None:
    data = b'id,text\n1,"two\nlines"\n2,\n3,fine\n'
    error = error_of(parse_upload, "t.csv", data)
    assert error.source == "t.csv:4"  # the quoted field spans lines 2 and 3
    assert "no text" in error.reason
    errors: list[IngestError] = []
    assert [d.id for d in parse_upload("t.csv", data, errors=errors)] == ["1", "3"]
    assert [e.source for e in errors] == ["t.csv:4"]


@pytest.mark.parametrize(
    ("data", "options", "reason"),
    [
        (b"id,name\n1,x\n", {}, "no text column: expected one of text, content, body; the columns are id, name"),
        (b"id,text\n1,x\n", {"title_field": "heading"}, "no column 'heading'"),
        (b"", {}, "no header row"),
        (b"id,text\n", {}, "no documents"),
    ],
)
def test_csv_shape_errors(data: bytes, options: dict[str, str], reason: str) -> None:
    assert reason in error_of(parse_upload, "t.csv", data, **options).reason


def test_a_csv_row_with_too_many_fields_is_an_error() -> None:
    error = error_of(parse_upload, "t.csv", b"id,text\n1,a,extra\n")
    assert (error.source, error.reason) == ("t.csv:2", "more fields than the 2 columns of the header")


# -- folders ------------------------------------------------------------------------------------------


def make_tree(root: Path) -> None:
    (root / "guides" / "deep").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "readme.md").write_text("# Readme\nhello\n")
    (root / "guides" / "setup.txt").write_text("setup steps")
    (root / "guides" / "deep" / "page.html").write_text("<p>deep page</p>")
    (root / "guides" / "image.png").write_bytes(b"\x89PNG\x00\x00")
    (root / ".git" / "config.txt").write_text("hidden")
    (root / ".hidden.md").write_text("hidden")


def test_folder_ids_are_relative_paths_and_stable(tmp_path: Path) -> None:
    make_tree(tmp_path)
    ids = [document.id for document in parse_path(tmp_path)]
    assert ids == ["readme.md", "guides/setup.txt", "guides/deep/page.html"]
    assert [document.id for document in parse_path(tmp_path)] == ids
    assert [document.id for document in parse_path(tmp_path, recursive=False)] == ["readme.md"]
    assert [document.id for document in parse_path(tmp_path / "guides")] == ["setup.txt", "deep/page.html"]


def test_folder_errors_are_raised_or_collected(tmp_path: Path) -> None:
    make_tree(tmp_path)
    (tmp_path / "guides" / "empty.md").write_text("  \n")
    (tmp_path / "guides" / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(IngestError, match=r"blob\.txt: binary file"):
        list(parse_path(tmp_path))
    errors: list[IngestError] = []
    ids = [document.id for document in parse_path(tmp_path, errors=errors)]
    assert ids == ["readme.md", "guides/setup.txt", "guides/deep/page.html"]
    assert sorted(Path(error.source).name for error in errors) == ["blob.txt", "empty.md"]
    assert any("no text to index" in error.reason for error in errors)


def test_symlink_loops_do_not_hang_and_broken_links_are_reported(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "doc.txt").write_text("in a")
    (tmp_path / "a" / "loop").symlink_to(tmp_path)
    (tmp_path / "a" / "self").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "gone.txt").symlink_to(tmp_path / "missing.txt")
    errors: list[IngestError] = []
    documents = list(parse_path(tmp_path, errors=errors))
    assert [document.id for document in documents] == ["a/doc.txt"]
    assert [Path(error.source).name for error in errors] == ["gone.txt"]


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    error = error_of(parse_path, tmp_path / "pipe.txt")
    assert error.reason == "not a regular file"


def test_a_missing_path_raises_even_when_collecting(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="cannot read"):
        list(parse_path(tmp_path / "nope", errors=[]))


# -- hostile files ------------------------------------------------------------------------------------


def test_a_huge_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as handle:  # sparse: 60 MB on paper, nothing on disk
        handle.truncate(60 * 1024 * 1024)
    tracemalloc.start()
    try:
        error = error_of(parse_path, huge)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "62,914,560 bytes, over the limit of 52,428,800 bytes" in error.reason
    assert peak < 1024 * 1024
    (tmp_path / "small.txt").write_text("x" * 101)
    assert "over the limit of 100 bytes" in error_of(parse_path, tmp_path / "small.txt", max_bytes=100).reason
    assert "over the limit of 10 bytes" in error_of(parse_upload, "u.md", b"x" * 11, max_bytes=10).reason


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("a.txt", b"\x7fELF\x02\x01\x01\x00\x00", "binary file (contains NUL bytes)"),
        ("a.md", bytes(range(1, 32)) * 20, "binary file (many control characters)"),
        ("a.txt", "café".encode("latin-1"), "not valid utf-8 text (byte 0xe9 at offset 3)"),
        ("a.txt", b"", "no text to index (empty text document)"),
        ("a.md", b"\n \n\t\n", "no text to index (empty markdown document)"),
        ("a.html", b"<html><script>x()</script></html>", "no text to index (empty html document)"),
        ("a.exe", b"MZ", "extension '.exe' is not supported; supported: " + ", ".join(supported_extensions())),
        ("Makefile", b"all:", "a file without an extension is not supported"),
    ],
)
def test_hostile_or_empty_uploads_are_refused_clearly(name: str, data: bytes, reason: str) -> None:
    error = error_of(parse_upload, name, data)
    assert error.source == name
    assert reason in error.reason


def test_an_unknown_extension_on_a_named_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    assert "'.png' is not supported; supported: .csv" in error_of(parse_path, tmp_path / "photo.png").reason


def test_a_named_encoding_reads_legacy_text() -> None:
    [document] = parse_upload("legacy.txt", "café \u2013 ok".encode("cp1252"), encoding="cp1252")
    assert document.text == "café \u2013 ok"
    with pytest.raises(LookupError):
        parse_upload("legacy.txt", b"x", encoding="no-such-codec")


# -- uploads and payloads -----------------------------------------------------------------------------


def test_uploads_dispatch_by_extension_then_content_type() -> None:
    [document] = parse_upload("../../etc/notes.MD", b"# Hi\ntext")
    assert (document.id, document.source, document.sections) == ("notes.MD", "notes.MD", ((0, "Hi"),))
    [document] = parse_upload("blob", b"<p>from html</p>", "text/html; charset=utf-8")
    assert document.text == "from html"
    [document] = parse_upload("page.html", b"<p>extension wins</p>", "text/plain")
    assert document.text == "extension wins"
    assert "content type 'image/png'" in error_of(parse_upload, "blob", b"x", "image/png").reason
    with pytest.raises(IngestError, match="needs a file name"):
        parse_upload("../", b"x")


def test_payload_becomes_an_api_document() -> None:
    document = parse_payload({"id": "d1", "text": "body", "title": " T ", "metadata": {"k": 1}})
    assert (document.id, document.text, document.title, document.source) == ("d1", "body", "T", "api")
    assert document.metadata == {"k": 1}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"id": "d1"}, "document 'd1': field 'text': Field required"),
        ({"id": "d1", "text": "  "}, "document 'd1': field 'text': has no text"),
        ({"id": 3, "text": "x"}, "document: field 'id': Input should be a valid string"),
        ({"id": "", "text": "x"}, "field 'id': String should have at least 1 character"),
        ({"id": "d1", "text": "x", "metadata": []}, "field 'metadata': Input should be a valid dictionary"),
        ({"id": "d1", "text": "x", "acl": ["a"]}, "field 'acl': unknown field"),
        (["not", "an", "object"], "document: a document must be a JSON object"),
    ],
)
def test_payload_errors_name_the_field(payload: object, message: str) -> None:
    with pytest.raises(IngestError) as caught:
        parse_payload(payload)
    assert message in str(caught.value)
