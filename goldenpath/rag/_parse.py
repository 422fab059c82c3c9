"""Turning files, folders, uploads and API payloads into ``Document``s.

Formats: txt, md, html/htm, pdf, jsonl and csv (one document per line or row). Every failure is an
``IngestError`` whose ``source`` names the file (``FILE:LINE`` for a line or row) and whose reason says
what to fix. A file is parsed whole before any of its documents is yielded, so a bad file yields
nothing; pass a list as ``errors`` to collect the errors of bad files (and of bad lines and rows,
whose good neighbours are still yielded) instead of raising the first one.

Decisions:

- text is UTF-8 (a BOM is dropped; UTF-16 with a BOM is read too). Anything else is refused, not
  guessed: a wrong guess silently indexes mojibake. ``encoding=`` names another codec explicitly, and
  an HTML file's own ``<meta charset>`` is honoured.
- a document with no text (after parsing) is an error, not skipped silently; collect errors to go on.
- in a folder, hidden entries (``.git``) and files of other extensions are skipped; a file named
  directly with an unsupported extension is an error. Symlinks are followed, each folder once.
- file document ids are the path relative to the ingest root (``guides/setup.md``; a file named
  directly is relative to its folder), so re-ingesting a folder replaces its documents.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import json
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from goldenpath.rag._exceptions import IngestError
from goldenpath.rag._types import Document

DEFAULT_MAX_BYTES = 50 * 1024 * 1024

FORMATS: Mapping[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}
_CONTENT_TYPES: Mapping[str, str] = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/x-ndjson": "jsonl",
    "application/ndjson": "jsonl",
    "text/csv": "csv",
}
ID_FIELDS = ("_id", "id")
TITLE_FIELDS = ("title",)
TEXT_FIELDS = ("text", "content", "body")


@dataclass(frozen=True, slots=True)
class _Options:
    max_bytes: int
    encoding: str | None
    id_field: str | None
    title_field: str | None
    text_field: str | None


def supported_extensions() -> list[str]:
    return sorted(FORMATS)


def parse_path(
    path: str | os.PathLike[str],
    *,
    recursive: bool = True,
    errors: list[IngestError] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    encoding: str | None = None,
    id_field: str | None = None,
    title_field: str | None = None,
    text_field: str | None = None,
) -> Iterator[Document]:
    """The documents of a file, or of every supported file in a folder (sorted; subfolders if ``recursive``).

    ``errors``: ``None`` raises the first ``IngestError``; a list collects them and the ingest goes on.
    ``max_bytes`` bounds each file (checked before reading). ``id_field``, ``title_field`` and
    ``text_field`` pick the jsonl keys and csv columns; by default ``_id``/``id``, ``title`` and the
    first of ``text``/``content``/``body``. A missing path raises even when collecting.
    """
    options = _options(max_bytes, encoding, id_field, title_field, text_field)
    root = Path(path)
    try:
        info = root.stat()
    except OSError as exc:
        raise IngestError(str(root), f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        for file, relative in _walk(root, recursive, errors):
            yield from _guarded(functools.partial(_parse_file, file, relative, options, errors), errors)
        return
    fmt = FORMATS.get(root.suffix.lower())
    if fmt is None:
        _fail(IngestError(str(root), _unsupported(root.suffix)), errors)
        return
    yield from _guarded(lambda: _parse_file(root, root.name, options, errors), errors)


def parse_upload(
    filename: str,
    content: bytes,
    content_type: str | None = None,
    *,
    errors: list[IngestError] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    encoding: str | None = None,
    id_field: str | None = None,
    title_field: str | None = None,
    text_field: str | None = None,
) -> list[Document]:
    """The documents of an uploaded file: its format from the extension, else from ``content_type``.

    A single-document file's id is its base name (any directories in ``filename`` are dropped).
    ``errors`` as for ``parse_path``; per line and row in jsonl and csv, otherwise the whole upload.
    """
    options = _options(max_bytes, encoding, id_field, title_field, text_field)
    name = PurePath(filename.replace("\\", "/")).name
    if not name or name in {".", ".."}:
        raise IngestError(repr(filename), "the upload needs a file name")
    fmt = FORMATS.get(PurePath(name).suffix.lower())
    if fmt is None and content_type:
        fmt = _CONTENT_TYPES.get(content_type.split(";")[0].strip().lower())
    if fmt is None:
        reason = _unsupported(PurePath(name).suffix)
        if content_type:
            reason += f" (content type {content_type!r} is not one either)"
        _fail(IngestError(name, reason), errors)
        return []
    if len(content) > max_bytes:
        _fail(IngestError(name, _too_big(len(content), max_bytes)), errors)
        return []
    return list(_guarded(lambda: _parse_bytes(content, fmt, name, name, options, errors), errors))


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: StrictStr = Field(min_length=1, max_length=1024)
    text: StrictStr = Field(min_length=1)
    title: StrictStr = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


def parse_payload(obj: object) -> Document:
    """A document sent through the API: ``{"id", "text", "title"?, "metadata"?}``; no other fields.

    The ``IngestError`` names the offending field (its source is the id when there is one)."""
    if not isinstance(obj, Mapping):
        raise IngestError("document", f"a document must be a JSON object, got {type(obj).__name__}")
    source = f"document {obj['id']!r}" if isinstance(obj.get("id"), str) else "document"
    try:
        payload = _Payload.model_validate(obj)
    except ValidationError as exc:
        raise IngestError(source, _describe(exc)) from None
    if not payload.text.strip():
        raise IngestError(source, "field 'text': has no text (only whitespace)")
    return Document(
        id=payload.id, text=payload.text, title=payload.title.strip(), source="api", metadata=payload.metadata
    )


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"field {where!r}: {message}" if where else message)
    return "; ".join(parts)


def _options(
    max_bytes: int, encoding: str | None, id_field: str | None, title_field: str | None, text_field: str | None
) -> _Options:
    if max_bytes < 1:
        raise ValueError("max_bytes must be positive")
    if encoding is not None:
        codecs.lookup(encoding)  # LookupError for an unknown codec, before any file is read
    return _Options(max_bytes, encoding, id_field, title_field, text_field)


def _fail(error: IngestError, errors: list[IngestError] | None) -> None:
    if errors is None:
        raise error
    errors.append(error)


def _guarded(parse: Callable[[], list[Document]], errors: list[IngestError] | None) -> Iterator[Document]:
    """Runs ``parse`` (returning a list of documents) and yields them, or reports its ``IngestError``."""
    try:
        documents = parse()
    except IngestError as exc:
        _fail(exc, errors)
        return
    yield from documents


def _unsupported(suffix: str) -> str:
    what = f"extension {suffix!r}" if suffix else "a file without an extension"
    return f"{what} is not supported; supported: {', '.join(supported_extensions())}"


def _too_big(size: int, limit: int) -> str:
    return f"file is {size:,} bytes, over the limit of {limit:,} bytes (raise max_bytes to allow it)"


def _walk(root: Path, recursive: bool, errors: list[IngestError] | None) -> Iterator[tuple[Path, str]]:
    """Supported files under ``root`` with their POSIX path relative to it, in sorted order.

    Follows symlinks but enters each real folder once, so links that loop cannot hang the walk."""
    seen: set[tuple[int, int]] = set()
    pending: list[tuple[Path, PurePath]] = [(root, PurePath())]
    while pending:
        folder, relative = pending.pop()
        try:
            info = folder.stat()
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as exc:
            _fail(IngestError(str(folder), f"cannot read the folder: {exc.strerror or exc}"), errors)
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows symlinks; False for a broken link
            except OSError:
                is_dir = False
            if is_dir:
                if recursive:
                    subfolders.append((child, relative / entry.name))
            elif FORMATS.get(child.suffix.lower()) is not None:
                yield child, (relative / entry.name).as_posix()
        pending.extend(reversed(subfolders))


def _parse_file(file: Path, relative: str, options: _Options, errors: list[IngestError] | None) -> list[Document]:
    source = str(file)
    try:
        info = file.stat()
    except OSError as exc:
        raise IngestError(source, f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise IngestError(source, "not a regular file")
    if info.st_size > options.max_bytes:
        raise IngestError(source, _too_big(info.st_size, options.max_bytes))
    try:
        with file.open("rb") as handle:
            data = handle.read(options.max_bytes + 1)  # the size may change after the stat
    except OSError as exc:
        raise IngestError(source, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > options.max_bytes:
        raise IngestError(source, f"file is over the limit of {options.max_bytes:,} bytes (raise max_bytes)")
    return _parse_bytes(data, FORMATS[file.suffix.lower()], relative, source, options, errors)


def _parse_bytes(
    data: bytes, fmt: str, doc_id: str, source: str, options: _Options, errors: list[IngestError] | None
) -> list[Document]:
    """``errors`` is only used by jsonl and csv, to collect bad lines and rows and keep the good ones."""
    if fmt == "pdf":
        return [_pdf(data, doc_id, source)]
    if fmt == "html":
        text = _decode(data, source, options.encoding or _meta_charset(data))
        return [_html(text, doc_id, source)]
    text = _decode(data, source, options.encoding)
    if fmt == "markdown":
        return [_markdown(text, doc_id, source)]
    if fmt == "jsonl":
        return _jsonl(text, doc_id, source, options, errors)
    if fmt == "csv":
        return _csv(text, doc_id, source, options, errors)
    return [_document(doc_id, text, source, "text")]


def _document(
    doc_id: str,
    text: str,
    source: str,
    fmt: str,
    *,
    title: str = "",
    sections: Sequence[tuple[int, str]] = (),
    metadata: Mapping[str, Any] | None = None,
) -> Document:
    if not text.strip():
        raise IngestError(source, f"no text to index (empty {fmt} document)")
    return Document(
        id=doc_id,
        text=text,
        title=" ".join(title.split()),
        source=source,
        metadata={"format": fmt, **(metadata or {})},
        sections=tuple(sections),
    )


# -- text decoding -----------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def _decode(data: bytes, source: str, encoding: str | None) -> str:
    """UTF-8 (BOM dropped), UTF-16 with a BOM, or an explicit codec; line ends become ``\\n``."""
    if encoding is None and data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    if encoding is None:
        if b"\x00" in data:
            raise IngestError(source, "binary file (contains NUL bytes), not text")
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise IngestError(
            source,
            f"not valid {exc.encoding} text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "re-encode it as UTF-8 or name its encoding",
        ) from None
    controls = len(_CONTROL.findall(text, 0, 65536))
    if controls > max(8, min(len(text), 65536) // 100):
        raise IngestError(source, "binary file (many control characters), not text")
    return text.replace("\r\n", "\n").replace("\r", "\n")


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _meta_charset(data: bytes) -> str | None:
    """The encoding an HTML file declares in its first 4 KiB, if it is a codec Python knows."""
    match = _META_CHARSET.search(data, 0, 4096)
    if match is None:
        return None
    name = match.group(1).decode("ascii")
    try:
        return "utf-8-sig" if codecs.lookup(name).name == "utf-8" else name
    except LookupError:
        return None


# -- markdown ----------------------------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LINK = re.compile(r"!?\[([^\]\n]*)\]\([^)\n]*\)")


def _markdown(text: str, doc_id: str, source: str) -> Document:
    """Headings (ATX and setext) become sections and lose their markers; links and images keep their
    text; code blocks are kept as they are, and ``#`` lines inside them are not headings."""
    lines = text.split("\n")
    out: list[str] = []
    offset = 0
    sections: list[tuple[int, str]] = []
    title = ""
    fence: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        heading: tuple[int, str] | None = None
        fence_match = _FENCE.match(line)
        if fence is not None:
            if fence_match and fence_match.group(1)[0] == fence[0] and len(fence_match.group(1)) >= len(fence):
                fence = None
        elif fence_match:
            fence = fence_match.group(1)
        elif (atx := _ATX.match(line)) is not None:
            heading = (len(atx.group(1)), (atx.group(2) or "").strip())
        elif (
            line.strip()
            and index + 1 < len(lines)
            and _SETEXT.match(lines[index + 1])
            and not (out and out[-1].strip())  # a setext heading is a paragraph of its own here
        ):
            heading = (1 if lines[index + 1].strip()[0] == "=" else 2, line.strip())
            index += 1
        if heading is not None:
            level, line = heading
            if line:
                sections.append((offset, line))
                if level == 1 and not title:
                    title = line
        elif fence is None and not fence_match:
            line = _LINK.sub(r"\1", line)
        out.append(line)
        offset += len(line) + 1
        index += 1
    if not title and sections:
        title = sections[0][1]
    return _document(doc_id, "\n".join(out), source, "markdown", title=title, sections=sections)


# -- html --------------------------------------------------------------------------------------------

_DROPPED = ["script", "style", "nav", "noscript", "template", "svg", "iframe", "object", "head"]
_BLOCKS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "html",
        "legend",
        "li",
        "main",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "tfoot",
        "thead",
        "tr",
        "ul",
    ]
)
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})


def _html(text: str, doc_id: str, source: str) -> Document:
    """Text of the body in blocks separated by blank lines; title from ``<title>`` (else the first h1);
    h1-h6 become sections. Whitespace inside a block collapses, except in ``<pre>``."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(text)
    title_node = tree.css_first("title")
    title = title_node.text(strip=True) if title_node is not None else ""
    tree.strip_tags(_DROPPED)
    blocks: list[str] = []
    sections: list[tuple[int, str]] = []
    offset = 0
    inline: list[str | None] = []  # None is a <br>
    heading = False
    preformatted = False

    def flush() -> None:
        nonlocal offset, heading
        if preformatted:
            block = "".join(piece or "\n" for piece in inline).strip("\n")
        else:
            lines = "".join(piece if piece is not None else "\x00" for piece in inline).split("\x00")
            block = "\n".join(collapsed for line in lines if (collapsed := " ".join(line.split())))
        inline.clear()
        if block.strip():
            if heading:
                sections.append((offset, " ".join(block.split())))
            blocks.append(block)
            offset += len(block) + 2
        heading = False

    root = tree.root
    # an explicit stack, not recursion: hostile pages nest thousands of elements deep
    stack: list[tuple[Any, bool]] = [(root, False)] if root is not None else []
    while stack:
        node, leaving = stack.pop()
        tag = node.tag
        if leaving:
            if tag in _BLOCKS:
                flush()
                preformatted = preformatted and tag != "pre"
            continue
        if tag == "-text":
            inline.append(node.text_content or "")
            continue
        if tag == "br":
            inline.append(None)
            continue
        if tag in _BLOCKS:
            flush()
            heading = tag in _HEADINGS
            preformatted = preformatted or tag == "pre"
            stack.append((node, True))
        elif tag in {"td", "th"}:
            inline.append(" ")
        children = list(node.iter(include_text=True))
        stack.extend((child, False) for child in reversed(children) if child.tag != "-comment")
    flush()
    if not title and sections:
        title = sections[0][1]
    return _document(doc_id, "\n\n".join(blocks), source, "html", title=title, sections=sections)


# -- pdf ---------------------------------------------------------------------------------------------


def _pdf(data: bytes, doc_id: str, source: str) -> Document:
    """Text page by page, pages separated by blank lines; each page is a section ``page N``."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    if b"%PDF-" not in data[:1024]:
        raise IngestError(source, "not a PDF file (no %PDF- header)")
    pages: list[tuple[int, str]] = []
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise IngestError(source, "the PDF is encrypted and needs a password; decrypt it first")
        count = len(reader.pages)
        info = reader.metadata
        title = str(info.title or "") if info is not None else ""
        for number, page in enumerate(reader.pages, start=1):
            page_text = (page.extract_text() or "").replace("\r\n", "\n").replace("\r", "\n").strip()
            if page_text:
                pages.append((number, page_text))
    except IngestError:
        raise
    except (FileNotDecryptedError, DependencyError) as exc:
        raise IngestError(source, f"the PDF is encrypted and cannot be read: {exc}") from None
    except Exception as exc:  # pypdf raises many kinds of errors on malformed files
        raise IngestError(source, f"not a readable PDF ({type(exc).__name__}: {exc})") from None
    if not pages:
        raise IngestError(
            source,
            f"no extractable text in {count} page(s); the PDF may be scanned images (run OCR on it first)",
        )
    sections = []
    offset = 0
    for number, page_text in pages:
        sections.append((offset, f"page {number}"))
        offset += len(page_text) + 2
    text = "\n\n".join(page_text for _, page_text in pages)
    return _document(doc_id, text, source, "pdf", title=title, sections=sections, metadata={"pages": count})


# -- jsonl and csv -----------------------------------------------------------------------------------


def _pick(available: Sequence[str], chosen: str | None, candidates: Sequence[str]) -> str | None:
    if chosen is not None:
        return chosen
    return next((name for name in candidates if name in available), None)


def _record(
    row: Mapping[str, Any],
    where: str,
    fallback_id: str,
    file_source: str,
    options: _Options,
    seen: dict[str, str],
) -> Document:
    keys = list(row)
    id_key = _pick(keys, options.id_field, ID_FIELDS)
    title_key = _pick(keys, options.title_field, TITLE_FIELDS)
    text_key = _pick(keys, options.text_field, TEXT_FIELDS)
    if text_key is None:
        raise IngestError(where, f"no text field: expected one of {', '.join(TEXT_FIELDS)} (or set text_field)")
    text = row.get(text_key)
    if text is None:
        raise IngestError(where, f"missing the text field {text_key!r}")
    if not isinstance(text, str):
        raise IngestError(where, f"field {text_key!r} must be a string, got {type(text).__name__}")
    title = row.get(title_key, "") if title_key is not None else ""
    if title is None:
        title = ""
    if not isinstance(title, str):
        raise IngestError(where, f"field {title_key!r} must be a string, got {type(title).__name__}")
    if id_key is not None and row.get(id_key) not in (None, ""):
        raw_id = row[id_key]
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
            raise IngestError(where, f"field {id_key!r} must be a string or an integer, got {type(raw_id).__name__}")
        doc_id = str(raw_id).strip()
    elif options.id_field is not None:
        raise IngestError(where, f"missing the id field {id_key!r}")
    else:
        doc_id = fallback_id
    if not text.strip():
        if not title.strip():
            raise IngestError(where, f"no text: field {text_key!r} is empty")
        text = title  # a title-only record (BEIR has some) is still findable by its title
    if doc_id in seen:
        raise IngestError(where, f"duplicate id {doc_id!r} (first at {seen[doc_id]})")
    seen[doc_id] = where
    metadata: dict[str, Any] = {}
    extra = row.get("metadata")
    if isinstance(extra, Mapping):
        metadata.update(extra)
    for key, value in row.items():
        if key not in {id_key, title_key, text_key, "metadata"} and value not in (None, ""):
            metadata[key] = value
    return Document(id=doc_id, text=text, title=" ".join(title.split()), source=file_source, metadata=metadata)


def _jsonl(text: str, doc_id: str, source: str, options: _Options, errors: list[IngestError] | None) -> list[Document]:
    """One document per non-blank line; ``FILE:LINE`` names a bad line."""
    documents: list[Document] = []
    seen: dict[str, str] = {}
    failed = 0
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise IngestError(where, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
            except RecursionError:
                raise IngestError(where, "invalid JSON (nested too deeply)") from None
            if not isinstance(row, dict):
                raise IngestError(where, f"each line must be a JSON object, got {type(row).__name__}")
            documents.append(_record(row, where, f"{doc_id}:{number}", source, options, seen))
        except IngestError as exc:
            failed += 1
            _fail(exc, errors)
    if not documents and not failed:
        raise IngestError(source, "no documents (the file has no non-blank lines)")
    return documents


def _csv(text: str, doc_id: str, source: str, options: _Options, errors: list[IngestError] | None) -> list[Document]:
    """One document per row after the header row; ``FILE:LINE`` names a bad row."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise IngestError(f"{source}:1", f"unreadable CSV header ({exc})") from None
    if not header:
        raise IngestError(source, "no header row (the first row must name the columns)")
    if _pick(header, options.text_field, TEXT_FIELDS) not in header:
        wanted = repr(options.text_field) if options.text_field else f"one of {', '.join(TEXT_FIELDS)}"
        raise IngestError(source, f"no text column: expected {wanted}; the columns are {', '.join(header)}")
    for name in (options.id_field, options.title_field):
        if name is not None and name not in header:
            raise IngestError(source, f"no column {name!r}; the columns are {', '.join(header)}")
    documents: list[Document] = []
    seen: dict[str, str] = {}
    failed = 0
    line = reader.line_num  # the header's last line
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise IngestError(f"{source}:{reader.line_num}", f"unreadable CSV ({exc})") from None
        first_line = line + 1
        where = f"{source}:{first_line}"
        line = reader.line_num
        try:
            if None in row:
                raise IngestError(where, f"more fields than the {len(header)} columns of the header")
            documents.append(_record(row, where, f"{doc_id}:{first_line}", source, options, seen))
        except IngestError as exc:
            failed += 1
            _fail(exc, errors)
    if not documents and not failed:
        raise IngestError(source, "no documents (the file has a header row only)")
    return documents
