"""Office, e-book, notebook, data and mail formats, each through the library that reads it best here.

markitdown (Microsoft's converter to Markdown) reads .pptx, .xlsx, .csv, .epub and .ipynb; its Markdown is split at
its headings like a .md file, slides become pages. It treats mail and JSON as plain text (MIME headers, encoded
bodies) and has no ODF reader, so .eml goes through the standard library's email parser, .json through its json
module (validated, one key path and value a line) and .odt through odfpy.
See docs/benchmarks.md, "How the converter was chosen", for how the candidates compared.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from ingest.loaders import (
    SNIFF_BYTES,
    Headings,
    LoadError,
    Section,
    html_sections,
    sniff_encoding,
    text_sections,
    title_of,
    under_heading,
)

_SLIDE = re.compile(r"^<!-- Slide number: (\d+) -->\s*$", re.MULTILINE)


_CONVERTERS = {
    ".pptx": "PptxConverter",
    ".xlsx": "XlsxConverter",
    ".csv": "CsvConverter",
    ".epub": "EpubConverter",
    ".ipynb": "IpynbConverter",
}


@cache
def _converter(suffix: str) -> Any:
    """markitdown's own converter for this format only: its MarkItDown front tries every converter in turn and
    ends with plain text, so a corrupt .pptx or .xlsx came back as its raw bytes, 'converted'."""
    from markitdown import converters

    return getattr(converters, _CONVERTERS[suffix])()


def load_with_markitdown(path: Path) -> Iterator[Section]:
    """The file as Markdown, then sections at its headings; a .pptx's slides are its pages."""
    from markitdown import StreamInfo

    suffix = path.suffix.lower()
    charset = _text_encoding(path) if suffix == ".csv" else None  # a binary file named .csv fails here
    info = StreamInfo(extension=suffix, filename=path.name, local_path=str(path), charset=charset)
    try:
        with path.open("rb") as stream:
            result = _converter(suffix).convert(stream, info)
    except Exception as exc:  # each reader (python-pptx, openpyxl, zipfile, json) fails in its own types
        raise LoadError(f"corrupt or unreadable {suffix.lstrip('.').upper()}: {_reason(exc)}") from exc
    markdown = result.markdown or ""
    if suffix == ".pptx":
        yield from _slides(markdown)
    else:
        yield from text_sections(markdown.splitlines(keepends=True), "markdown", title=result.title)


def load_json(path: Path) -> Iterator[Section]:
    """Valid JSON as one "key path: value" line per value ("animals 1 name: wombat"), which an embedder reads
    far better than braces and quotes (a question on an indented dump was refused); broken JSON is a failure."""
    _text_encoding(path)  # a binary file named .json fails here, as a text file would
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise LoadError(f"corrupt JSON: {_reason(exc)}") from exc
    yield from text_sections(f"{line}\n" for line in _flattened(data, []))


def _flattened(value: Any, path: list[str]) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flattened(item, [*path, str(key)])
    elif isinstance(value, list):
        for index, item in enumerate(value, start=1):
            yield from _flattened(item, [*path, str(index)] if len(value) > 1 else path)
    else:
        text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        yield f"{' '.join(path)}: {text}" if path else text


def _text_encoding(path: Path) -> str:
    """The text file's encoding, as the text loader sniffs it; LoadError on binary content."""
    with path.open("rb") as raw:
        return sniff_encoding(raw.read(SNIFF_BYTES))


def _slides(markdown: str) -> Iterator[Section]:
    parts = _SLIDE.split(markdown)  # text before the first slide, then number, text, number, text...
    for i in range(1, len(parts) - 1, 2):
        yield from text_sections(parts[i + 1].splitlines(keepends=True), "markdown", page=int(parts[i]))


def _reason(exc: BaseException) -> str:
    """The innermost cause's first line: markitdown's own message lists every converter it tried."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def load_eml(path: Path) -> Iterator[Section]:
    """A mail's subject as the title, its sender, recipients and date, then its text (the plain part, else the
    HTML part read as a web page). Attachments are not read."""
    from email import policy
    from email.parser import BytesParser

    try:
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        header = "\n".join(f"{name}: {message[name]}" for name in ("From", "To", "Date") if message[name])
        subject = str(message["Subject"] or "").strip() or None
        text = _mail_text(message)
    except (LookupError, ValueError, TypeError, AttributeError) as exc:
        raise LoadError(f"corrupt or unreadable EML: {_reason(exc)}") from exc
    if not message.keys():
        raise LoadError("corrupt or unreadable EML: no mail headers")
    if text:
        yield Section(f"{header}\n\n{text}" if header else text, subject)


def _mail_text(message: Any) -> str:
    """The plain text body; when it is missing or blank, the HTML body's visible text."""
    plain = message.get_body(preferencelist=("plain",))
    text = str(plain.get_content()).strip() if plain is not None else ""
    if text:
        return text
    html = message.get_body(preferencelist=("html",))
    if html is None:
        return ""
    return "\n".join(s.text for s in html_sections(str(html.get_content()).encode("utf-8")))


def load_odt(path: Path) -> Iterator[Section]:
    """An OpenDocument text's paragraphs and lists, split at its headings (outline levels make the title path)."""
    from odf import opendocument, teletype
    from odf.namespaces import TEXTNS

    try:
        document = opendocument.load(str(path))
    except Exception as exc:  # zipfile's, KeyError for a missing part, SAX errors on a broken content.xml
        raise LoadError(f"corrupt or unreadable ODT: {_reason(exc)}") from exc
    stack: Headings = []
    title: str | None = None
    buffer: list[str] = []
    for element in _blocks(document.text, TEXTNS):
        text = teletype.extractText(element).strip()
        if element.qname == (TEXTNS, "h"):
            if buffer:
                yield Section("\n".join(buffer), title)
                buffer = []
            stack = under_heading(stack, int(element.getAttrNS(TEXTNS, "outline-level") or 1), text)
            title = title_of(stack)
        elif text:
            buffer.append(text)
    if buffer:
        yield Section("\n".join(buffer), title)


def _blocks(element: Any, textns: str) -> Iterator[Any]:
    """Headings and paragraphs in document order, at any depth (inside lists, tables, sections)."""
    for child in element.childNodes:
        if getattr(child, "qname", None) in ((textns, "h"), (textns, "p")):
            yield child
        elif getattr(child, "childNodes", None):
            yield from _blocks(child, textns)
