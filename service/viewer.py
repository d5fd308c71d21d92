"""A cited passage in its document: the section around it with the passage and its quoted sentences marked, a PDF
page drawn with the passage highlighted where its text can be found on it, and the original file.

The UI links each [n] of an answer here (`citation_url`); the page is small, self-contained HTML so it works in the
UI's viewer frame, in a new tab and from a saved conversation alike. Files are served only when the document's
recorded path lies inside the folder it was ingested from.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from rag.collection import Collection
from rag.errors import DocumentNotFound
from rag.store.payload import ChunkPayload, DocumentRecord

AROUND = 2  # chunks shown before and after the cited one: its section, give or take
PAGE_SCALE = 1.6  # PDF points to pixels: about 130 dpi, legible beside a chat
_LINK = re.compile(r"<a [^>]*class=\"cite\"[^>]*>(\[\d+\])</a>")

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 0; padding: 12px 16px; color: #1f2937; }
header { border-bottom: 1px solid #e5e7eb; margin-bottom: 10px; padding-bottom: 6px; }
header .where { color: #6b7280; font-size: 0.9em; }
.context { white-space: pre-wrap; }
mark.passage { background: #fef3c7; border-radius: 3px; }
mark.quote { background: #fcd34d; font-weight: 600; }
.gap { color: #9ca3af; text-align: center; margin: 6px 0; }
.section { font-weight: 600; color: #374151; margin: 8px 0 2px; white-space: normal; }
img.page { max-width: 100%; border: 1px solid #e5e7eb; margin-top: 10px; }
"""


@dataclass(frozen=True)
class SourceView:
    record: DocumentRecord
    cited: ChunkPayload
    context: list[ChunkPayload]  # the cited chunk and its neighbours, in document order


MAX_QUOTES = 5  # sentences marked in one view; the route refuses more
MAX_QUOTE_CHARS = 2000  # a longer one is marked by its start (the route refuses longer)


def citation_url(collection: str, doc_id: str, chunk_index: int | None, quotes: list[str]) -> str:
    """Where [n] leads, relative to the app's root (so it works behind a path prefix too)."""
    marked = [q[:MAX_QUOTE_CHARS] for q in quotes[:MAX_QUOTES]]
    query = [("chunk", str(chunk_index if chunk_index is not None else 0))] + [("hl", q) for q in marked]
    return f"view/{quote(collection, safe='')}/{quote(doc_id, safe='')}?{urlencode(query)}"


def unlinked(text: str) -> str:
    """A reply as plain text: its citation links back to [n] (for history sent to the model, and the terminal)."""
    return _LINK.sub(r"\1", text)


def source_view(collection: Collection, doc_id: str, chunk_index: int) -> SourceView:
    record = next((d for d in collection.documents() if d.doc_id == doc_id), None)
    if record is None:
        raise DocumentNotFound(f"no document {doc_id!r} in collection {collection.name!r}")
    chunks = sorted(
        (ChunkPayload.from_payload(p) for p in collection.store.chunks_of(doc_id)),
        key=lambda c: c.chunk_index,
    )
    if not chunks:
        raise DocumentNotFound(f"document {record.source!r} has no passages (ingest it again)")
    at = next((i for i, c in enumerate(chunks) if c.chunk_index == chunk_index), 0)
    return SourceView(record, chunks[at], chunks[max(0, at - AROUND) : at + AROUND + 1])


def view_html(view: SourceView, quotes: list[str]) -> str:
    """The viewer's page: where the passage is, a download link, the context with marks, and a PDF's page."""
    record, cited = view.record, view.cited
    where = [
        f"page {cited.page}" if cited.page else "",
        html.escape(cited.title or ""),
        "read by OCR" if cited.ocr else "",
    ]
    file_link = (
        f"<a href='{quote(record.doc_id)}/file' download>Download {html.escape(Path(record.source).name)}</a>"
    )
    page = (
        f"<img class='page' alt='page {cited.page}' "
        f"src='{quote(record.doc_id)}/page/{cited.page}.png?chunk={cited.chunk_index}&amp;"
        f"{html.escape(urlencode([('hl', q) for q in quotes]))}'>"
        if record.file_type == "pdf" and cited.page
        else ""
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(record.source)}</title>"
        f"<style>{STYLE}</style></head><body><header><strong>{html.escape(record.source)}</strong> "
        f"<span class='where'>{' · '.join(w for w in where if w)}</span><br>{file_link}</header>"
        f"<div class='context'>{_context_html(view, quotes)}</div>{page}"
        "<script>const m = document.querySelector('mark.quote, mark.passage');"
        " if (m) m.scrollIntoView({block: 'center'});</script></body></html>"
    )


def _context_html(view: SourceView, quotes: list[str]) -> str:
    """The chunks around the cited one, overlaps joined by their character spans; the cited passage marked, its
    quoted sentences marked inside it."""
    parts: list[str] = []
    previous: ChunkPayload | None = None
    for chunk in view.context:
        text = chunk.text
        if previous is not None and _continues(previous, chunk):
            text = text[previous.char_end - chunk.char_start :]
        elif previous is not None:
            parts.append("<div class='gap'>…</div>")
        if chunk.title and (previous is None or chunk.title != previous.title):
            parts.append(f"<div class='section'>{html.escape(chunk.title)}</div>")
        body = html.escape(text)
        if chunk is view.cited:
            body = f"<mark class='passage'>{_mark_quotes(body, quotes)}</mark>"
        parts.append(body)
        previous = chunk
    return "".join(parts)


def _continues(previous: ChunkPayload, chunk: ChunkPayload) -> bool:
    """chunk picks up where previous left off in one text (same page, spans that touch or overlap, and texts that
    are exactly their spans: a table's later chunks repeat its header and are not)."""
    exact = all(len(c.text) == c.char_end - c.char_start for c in (previous, chunk))
    return (
        exact and chunk.page == previous.page and previous.char_start <= chunk.char_start <= previous.char_end
    )


def _mark_quotes(escaped: str, quotes: list[str]) -> str:
    for sentence in quotes:
        pattern = _loose(html.escape(sentence))
        if pattern:
            escaped = re.sub(pattern, lambda m: f"<mark class='quote'>{m.group(0)}</mark>", escaped, count=1)
    return escaped


def _loose(text: str) -> str:
    """A pattern for text whatever its whitespace (a quote is the passage's words, not always its line breaks)."""
    words = text.split()
    return r"\s+".join(re.escape(w) for w in words) if len(words) >= 2 else ""


def original_file(record: DocumentRecord) -> Path:
    """The document's file, only if its recorded path stays inside the folder it was ingested from (an absolute
    one: a relative root would be the server's working folder)."""
    if not Path(record.root).is_absolute():
        raise DocumentNotFound(f"{record.source!r} has no folder on record to serve it from")
    root = Path(record.root).resolve()
    path = (root / record.source).resolve()
    if not path.is_relative_to(root) or path == root:
        raise DocumentNotFound(f"{record.source!r} is not inside the folder it was ingested from")
    if not path.is_file():
        raise DocumentNotFound(f"{record.source!r} is no longer at {path}")
    return path


def page_png(view: SourceView, page: int, quotes: list[str]) -> bytes:
    """A PDF page as PNG, the passage (and its quotes, stronger) highlighted where their text is on the page."""
    import pypdfium2 as pdfium
    from PIL import Image, ImageDraw

    if view.record.file_type != "pdf":
        raise DocumentNotFound(f"{view.record.source!r} is not a PDF: it has no pages to draw")
    try:
        pdf = pdfium.PdfDocument(str(original_file(view.record)))
    except pdfium.PdfiumError as exc:
        raise DocumentNotFound(f"{view.record.source!r} cannot be drawn: {exc}") from None
    try:
        if not 1 <= page <= len(pdf):
            raise DocumentNotFound(f"{view.record.source!r} has no page {page}")
        sheet = pdf[page - 1]
        image = sheet.render(scale=PAGE_SCALE).to_pil().convert("RGBA")
        text_page = sheet.get_textpage()
        height = sheet.get_height()
        layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        # the passage line by line (as a whole it rarely matches: hyphens, headers, page breaks), then its quotes
        lines = [line for line in view.cited.text.splitlines() if len(line.split()) >= 3]
        needles = [(line, (253, 230, 138, 110)) for line in lines] + [
            (q, (251, 191, 36, 130)) for q in quotes
        ]
        for needle, colour in needles:
            for left, bottom, right, top in _boxes(text_page, needle):
                box = [
                    left * PAGE_SCALE,
                    (height - top) * PAGE_SCALE,
                    right * PAGE_SCALE,
                    (height - bottom) * PAGE_SCALE,
                ]
                draw.rectangle(box, fill=colour)
        out = io.BytesIO()
        Image.alpha_composite(image, layer).convert("RGB").save(out, format="PNG")
        return out.getvalue()
    finally:
        pdf.close()


def _boxes(text_page: object, needle: str) -> list[tuple[float, float, float, float]]:
    """The character boxes of needle's first occurrence on the page, whatever the whitespace; none if absent."""
    page_text = text_page.get_text_range()  # type: ignore[attr-defined]
    pattern = _loose(needle)
    found = re.search(pattern, page_text) if pattern else None
    if found is None:
        return []
    return [text_page.get_charbox(i) for i in range(found.start(), found.end()) if not page_text[i].isspace()]  # type: ignore[attr-defined]
