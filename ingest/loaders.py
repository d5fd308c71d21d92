"""Turn a file into text sections (title, page, text) for chunking.

Each loader yields `Section`s lazily so a large plain-text file is read in bounded memory. A problem with the
file raises `LoadError` with a one-line reason.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from rag.tables import pipe_row

SECTION_CHARS = 64_000  # a long section is cut here; the chunker never sees more at once
SNIFF_BYTES = 64 * 1024


class LoadError(Exception):
    """The file cannot be read as a document; the message says why, in one line."""


@dataclass
class Section:
    text: str
    title: str | None = None
    page: int | None = None
    ocr: bool = False  # read from a picture of the page, not from a text layer


# --------------------------------------------------------------------------- plain text, Markdown, reST

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")


def sniff_encoding(head: bytes) -> str:
    """UTF-8 when it decodes, else Windows-1252, else Latin-1 (which decodes any byte).

    Statistical guessers mistook short Western text for Central European code pages here; a fixed,
    predictable fallback is the better default for the documents this app meets.
    """
    if b"\x00" in head[:8192] and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise LoadError("binary content (NUL bytes), not text")
    encoding = _guess_encoding(head)
    share = _control_share(head.decode(encoding, errors="replace"))
    if share > MAX_CONTROL_SHARE:
        raise LoadError(f"binary content ({share:.0%} control or undecodable characters), not text")
    return encoding


MAX_CONTROL_SHARE = 0.05  # text has next to none; bytes read as Windows-1252 or Latin-1 have 10-25%


def _control_share(text: str) -> float:
    """The share of characters no text is made of: control characters other than whitespace, and U+FFFD."""
    odd = sum(
        1 for ch in text if ch == "\ufffd" or (unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f\v")
    )
    return odd / max(1, len(text))


def _guess_encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 4:  # a character cut at the end of the sniffed block
            return "utf-8"
    return _east_asian(head) or _western(head)


def _western(raw: bytes) -> str:
    try:
        raw.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


_MULTIBYTE = {
    "shift_jis",
    "cp932",
    "euc_jp",
    "iso2022_jp",
    "gb2312",
    "gbk",
    "gb18030",
    "big5",
    "euc_kr",
    "cp949",
}


def _east_asian(raw: bytes) -> str | None:
    """A Japanese, Chinese or Korean encoding when charset-normalizer finds one; None for anything else, where
    the fixed Western fallback is the more predictable guess."""
    from charset_normalizer import from_bytes

    best = from_bytes(raw[:SNIFF_BYTES]).best()
    return best.encoding if best is not None and best.encoding in _MULTIBYTE else None


def _text_lines(path: Path) -> Iterator[str]:
    with path.open("rb") as raw:
        head = raw.read(SNIFF_BYTES)
    encoding = sniff_encoding(head)
    with path.open("r", encoding=encoding, errors="replace", newline=None) as handle:
        yield from handle


def load_text(path: Path, headings: str = "none") -> Iterator[Section]:
    """Stream a text file as sections, split at Markdown or reST headings when asked."""
    yield from text_sections(_text_lines(path), headings)


def text_sections(
    lines: Iterable[str], headings: str = "none", title: str | None = None, page: int | None = None
) -> Iterator[Section]:
    """Lines (with their line ends) as sections, split at Markdown or reST headings when asked."""
    buffer: list[str] = []
    size = 0
    previous: str | None = None
    for line in lines:
        heading = _heading(line, previous, headings)
        if heading is not None:
            if headings == "rst" and buffer:
                buffer.pop()  # the title line was already buffered as text
            if any(part.strip() for part in buffer):
                yield Section("".join(buffer), title, page)
            buffer, size, title = [], 0, heading
            previous = None
            continue
        buffer.append(line)
        size += len(line)
        previous = line
        if size >= SECTION_CHARS and not line.strip():
            yield Section("".join(buffer), title, page)
            buffer, size = [], 0
    if any(part.strip() for part in buffer):
        yield Section("".join(buffer), title, page)


def _heading(line: str, previous: str | None, style: str) -> str | None:
    if style == "markdown":
        match = _MD_HEADING.match(line)
        return match.group(2).strip() if match else None
    is_underline = style == "rst" and previous and previous.strip() and _RST_UNDERLINE.match(line)
    if is_underline and previous and len(line.rstrip()) >= len(previous.rstrip()) - 1:
        return previous.strip()
    return None


# --------------------------------------------------------------------------- HTML

_DROP_TAGS = {"script", "style", "noscript", "nav", "header", "footer", "aside", "form", "template", "svg"}
_DROP_CLASSES = {
    "sphinxsidebar",
    "related",
    "footer",
    "headerlink",
    "mobile-nav",
    "navigation",
    "breadcrumbs",
}
_DROP_ROLES = {"navigation", "search", "banner", "contentinfo"}
_BLOCK_TAGS = {
    "p", "div", "li", "ul", "ol", "pre", "br", "tr", "table", "dt", "dd", "dl", "blockquote",
    "section", "article", "main", "hr", "figure", "figcaption", "caption", "td", "th",
}  # fmt: skip
_HEADING_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_MARK = "\x00"
_PARAGRAPH_BREAK = "\x01"  # a blank line that `_tidy` keeps (it drops the others)


def load_html(path: Path) -> Iterator[Section]:
    """Clean text of an HTML page, split into sections at its headings (h1 > h2 > ... as the title).

    lxml's tree directly: BeautifulSoup over the same parser spent 10x longer building its own objects, and over
    the Python docs that was most of ingestion's parsing time. A page nested too deep for lxml's tree (2,048
    levels) or for this walk's recursion is read again by events, at any depth.
    """
    yield from html_sections(path.read_bytes())


def html_sections(raw: bytes) -> Iterator[Section]:
    """`load_html` on bytes already read (a mail's HTML body, say)."""
    import lxml.html
    from lxml import etree

    if not raw.strip():
        return
    source, parser = _html_source(raw)
    try:
        root = lxml.html.document_fromstring(source, parser=parser)
    except (etree.ParserError, ValueError) as exc:
        if "Document is empty" in str(exc):  # e.g. only a comment: no text, which the job reports as a skip
            return
        raise LoadError(f"cannot parse HTML: {exc}") from exc
    pieces: list[str] = []
    try:
        if any("Excessive depth" in error.message for error in parser.error_log):
            raise RecursionError
        body = root.find("body")
        _walk(body if body is not None else root, pieces)
    except RecursionError:
        yield from _split_marked(*_flat_text(_decoded(raw)))
        return
    yield from _split_marked("".join(pieces), _page_title(root))


_DECLARED_CHARSET = re.compile(rb"<meta[^>]*charset|<\?xml[^>]*encoding", re.IGNORECASE)
_CHARSET_NAME = re.compile(rb"(?:charset|encoding)\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.IGNORECASE)


def _html_source(raw: bytes) -> tuple[bytes | str, Any]:
    """What to parse and how: UTF-8 when the bytes are UTF-8, else the page's declared charset (or BOM), else an
    East Asian encoding charset-normalizer finds, else Windows-1252 decoded here (libxml2's own fallback, Latin-1,
    turns curly quotes into control characters)."""
    import lxml.html

    try:
        raw.decode("utf-8")
        return raw, lxml.html.HTMLParser(encoding="utf-8", huge_tree=True)
    except UnicodeDecodeError:
        pass
    parser = lxml.html.HTMLParser(huge_tree=True)
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _DECLARED_CHARSET.search(
        raw[:SNIFF_BYTES]
    ):
        return raw, parser
    return raw.decode(_east_asian(raw) or _western(raw), errors="replace"), parser


def _decoded(raw: bytes) -> str:
    """The page as text, decoded as `_html_source` would have lxml decode it."""
    source, _ = _html_source(raw)
    if isinstance(source, str):
        return source
    declared = _CHARSET_NAME.search(raw[:SNIFF_BYTES])
    candidates = ["utf-8", "utf-16", declared.group(1).decode("ascii") if declared else ""]
    for encoding in candidates:
        try:
            return raw.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return raw.decode("cp1252", errors="replace")


def _walk(element: Any, out: list[str]) -> None:
    """Visible text in document order; headings become marks that `_split_marked` turns into section titles, and
    a data table becomes pipe rows between blank lines (the chunker repeats its header row)."""
    tag = element.tag  # a comment's or processing instruction's tag is not a str: its text is not shown
    if isinstance(tag, str) and not is_dropped(tag, element.attrib):
        if tag in _HEADING_TAGS:
            out.append(f"\n{_MARK}{tag[1]}{_MARK}{_heading_text(element)}{_MARK}\n")
        elif tag == "table" and (rows := table_rows(element)):
            out.append(f"\n{_PARAGRAPH_BREAK}\n" + "\n".join(rows) + f"\n{_PARAGRAPH_BREAK}\n")
        else:
            if element.text:
                out.append(element.text)
            for child in element:
                _walk(child, out)
            if tag in _BLOCK_TAGS:
                out.append("\n")
    if element.tail:
        out.append(element.tail)


_VOID_TAGS = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


class _FlatText(HTMLParser):
    """The same visible text and heading marks as `_walk`, by parser events: no tree, no depth limit."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.title: list[str] | None = None
        self.page_title = ""
        self.heading: tuple[str, list[str]] | None = None
        self.dropping: tuple[str, int] | None = None  # the dropped element's tag, and how many of it are open

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID_TAGS:
            if tag == "br":
                self.handle_data("\n" if self.heading is None else " ")
            return
        if self.dropping is not None:
            name, open_count = self.dropping
            self.dropping = (name, open_count + (tag == name))
        elif is_dropped(tag, dict(attrs)):
            self.dropping = (tag, 1)
        elif tag in _HEADING_TAGS:
            self.heading = (tag[1], [])
        elif tag == "title":
            self.title = []
        elif tag in _BLOCK_TAGS:
            self.handle_data("\n")

    def handle_endtag(self, tag: str) -> None:
        if self.dropping is not None:
            name, open_count = self.dropping
            if tag == name:
                self.dropping = (name, open_count - 1) if open_count > 1 else None
        elif self.heading is not None and tag in _HEADING_TAGS:
            level, words = self.heading
            self.out.append(f"\n{_MARK}{level}{_MARK}{' '.join(''.join(words).split())}{_MARK}\n")
            self.heading = None
        elif tag == "title" and self.title is not None:
            self.page_title, self.title = " ".join("".join(self.title).split()), None
        elif tag in _BLOCK_TAGS:
            self.handle_data("\n")

    def handle_data(self, data: str) -> None:
        if self.dropping is not None:
            return
        target = self.heading[1] if self.heading else self.title if self.title is not None else self.out
        target.append(data)


def _flat_text(page: str) -> tuple[str, str | None]:
    """The page's marked text and its <title>."""
    parser = _FlatText()
    parser.feed(page.replace(_MARK, ""))
    parser.close()
    return "".join(parser.out), parser.page_title or None


def _heading_text(element: Any) -> str:
    pieces: list[str] = []
    _walk_text(element, pieces)
    return " ".join("".join(pieces).split())


def _walk_text(element: Any, out: list[str]) -> None:
    """Inline pieces join as written ("with-statement"); a <br> or block inside a heading separates words."""
    if element.text:
        out.append(element.text)
    for child in element:
        if isinstance(child.tag, str) and not is_dropped(child.tag, child.attrib):
            _walk_text(child, out)
            if child.tag in _BLOCK_TAGS:
                out.append(" ")
        if child.tail:
            out.append(child.tail)


_HIDDEN_STYLE = re.compile(
    r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*hidden|(?:font-size|opacity)\s*:\s*(?:0+(?:\.0*)?|\.0+)(?:px|pt|em|rem|%)?"
    r"\s*(?:!important\s*)?(?:;|$))",
    re.IGNORECASE,
)


def is_dropped(tag: str, attrs: Any) -> bool:
    """Scripts, navigation, page furniture, and elements a browser does not show (where injected instructions
    hide): plain attribute checks, as CSS selectors need soupsieve's tables."""
    return (
        tag in _DROP_TAGS
        or not _DROP_CLASSES.isdisjoint((attrs.get("class") or "").split())
        or attrs.get("role") in _DROP_ROLES
        or attrs.get("aria-hidden") == "true"
        or "hidden" in attrs
        or bool(_HIDDEN_STYLE.search(attrs.get("style") or ""))
    )


def _page_title(root: Any) -> str | None:
    title = root.find("head/title")  # not .//title: an <svg><title> in the body is an icon's label
    text = title.text_content() if title is not None else ""
    return " ".join(text.split()) or None


def _split_marked(text: str, page_title: str | None) -> Iterator[Section]:
    stack: Headings = []
    parts = text.split(_MARK)
    # parts: text, level, heading, text, level, heading, text, ...
    current = _tidy(parts[0])
    title: str | None = page_title
    for i in range(1, len(parts) - 2, 3):
        if current:
            yield Section(current, title)
        level, heading = int(parts[i]), parts[i + 1]
        stack = under_heading(stack, level, heading)
        title = " › ".join(h for _, h in stack)
        current = _tidy(parts[i + 2])
    if current:
        yield Section(current, title)


def _tidy(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.splitlines()]
    out = "\n".join(line for line in lines if line)
    return out.replace(_PARAGRAPH_BREAK, "").strip()


def table_rows(table: Any) -> list[str]:
    """A data table as Markdown pipe rows (with the header's rule under a first row of <th> cells). No rows (the
    caller then reads it as text) for what is laid out as a table rather than holding data: a table inside, rows
    of different widths (a merged title cell), fewer than two rows with text, or mostly empty cells (navigation
    arrows)."""
    if any(True for _ in table.iterdescendants("table")):
        return []
    rows: list[list[Any]] = []
    for row in table.iter("tr"):
        cells = [cell for cell in row if cell.tag in ("td", "th") and not is_dropped(cell.tag, cell.attrib)]
        if cells and not is_dropped("tr", row.attrib):
            rows.append(cells)
    texts = [[_heading_text(cell) for cell in cells] for cells in rows]
    kept = [i for i, cells in enumerate(texts) if any(cells)]
    if len(kept) < 2 or len({len(texts[i]) for i in kept}) > 1:
        return []
    if 2 * sum(not cell for i in kept for cell in texts[i]) > sum(len(texts[i]) for i in kept):
        return []
    lines = [pipe_row(texts[i]) for i in kept]
    if all(cell.tag == "th" for cell in rows[kept[0]]):
        lines.insert(1, pipe_row(["---"] * len(texts[kept[0]])))
    return lines


# --------------------------------------------------------------------------- PDF, DOCX


def load_pdf(path: Path) -> Iterator[Section]:
    """Text per page, with the physical 1-based page number (the text layer only: ingest.ocr reads the rest)."""
    title, pages = read_pdf(path)
    for page in pages:
        if page.text:
            yield Section(page.text, title, page.number)


@dataclass(frozen=True)
class PdfPage:
    number: int  # physical, from 1
    text: str  # the text layer, tidied
    has_images: bool  # draws an image: a scan, when it has (almost) no text


def read_pdf(path: Path) -> tuple[str | None, list[PdfPage]]:
    """The PDF's title and its pages."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path), strict=False)
        pages = [
            PdfPage(number, _tidy(page.extract_text() or ""), _draws_images(page))
            for number, page in enumerate(reader.pages, start=1)
        ]
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise LoadError(f"corrupt or unreadable PDF: {exc}") from exc
    return _pdf_title(reader), pages


def _draws_images(page: Any) -> bool:
    """Whether the page's resources hold an image (form XObjects are not looked into)."""
    try:
        resources = page.get("/Resources")
        objects = resources.get_object().get("/XObject") if resources is not None else None
        return objects is not None and any(
            objects.get_object()[name].get_object().get("/Subtype") == "/Image"
            for name in objects.get_object()
        )
    except Exception:  # a broken resource dictionary never costs the page's text: it is just not OCR'd
        return False


def _pdf_title(reader: object) -> str | None:
    try:
        meta = reader.metadata  # type: ignore[attr-defined]
        return str(meta.title).strip() or None if meta and meta.title else None
    except Exception:  # broken metadata never costs the text
        return None


Headings = list[tuple[int, str]]  # the open headings, outermost first, with their levels


def under_heading(open_headings: Headings, level: int, heading: str) -> Headings:
    """The open headings once a heading of this level starts: the shallower ones stay, it is added."""
    return [(lvl, h) for lvl, h in open_headings if lvl < level] + [(level, heading)]


def title_of(open_headings: Headings) -> str:
    """A section's title path ("Part › Chapter"), empty headings left out."""
    return " › ".join(h for _, h in open_headings if h)


def load_docx(path: Path) -> Iterator[Section]:
    """Paragraphs and tables of a Word file, split at its Heading styles."""
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (
        zipfile.BadZipFile,
        PackageNotFoundError,
        KeyError,
    ) as exc:  # KeyError: a zip without Word's parts
        raise LoadError("corrupt or unreadable DOCX: not a Word (zip) package") from exc
    except ValueError as exc:
        raise LoadError(f"corrupt or unreadable DOCX: {exc}") from exc
    stack: Headings = []
    title: str | None = None
    buffer: list[str] = []
    for paragraph in document.paragraphs:
        style = paragraph.style.name if paragraph.style is not None else ""
        text = paragraph.text.strip()
        if style.startswith("Heading") or style == "Title":
            if buffer:
                yield Section("\n".join(buffer), title)
                buffer = []
            stack = under_heading(stack, int(style.split()[-1]) if style.split()[-1].isdigit() else 0, text)
            title = title_of(stack)
        elif text:
            buffer.append(text)
    for table in document.tables:  # each its own paragraph, so the chunker can repeat its header row
        rows = [pipe_row([" ".join(cell.text.split()) for cell in row.cells]) for row in table.rows]
        rows = [row for row in rows if row.strip(" |")]
        if len(rows) > 1:  # the first row is taken for the header, as Word's "header row" option has it
            rows.insert(1, pipe_row(["---"] * len(table.columns)))
        if rows:
            buffer.append("\n" + "\n".join(rows) + "\n")
    if buffer:
        yield Section("\n".join(buffer), title)
