"""Token-aware chunking at paragraph and sentence boundaries, with overlap and exact character spans.

A table (a paragraph of pipe-separated rows: what the CSV, spreadsheet, Word and HTML loaders write) too long for
one chunk is split between rows, never inside one while a row fits, and every chunk after the first repeats its
header row: row 50 of a 200-row table still says which column is which.

Why not llama-index's SentenceSplitter: on code-heavy documentation it took 60 ms per chunk here (it re-tokenizes
while it recurses) and it does not report where a chunk sits in the text. This splitter counts each unit's
tiktoken tokens once, keeps spans exact, and guarantees every chunk fits the embedder's window.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ingest.loaders import Section
from rag.store.payload import passage_text
from rag.tables import column_bars, header_length

_PARAGRAPH = re.compile(r"\n\s*\n")
_LINE = re.compile(r"\n")
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+(?=\S)")
_WORD = re.compile(r"\s+")
_MIN_TABLE_ROWS = 3

TokenCounter = Callable[[list[str]], list[int]]


@dataclass
class Chunk:
    """text is the document's text from char_start to char_end, except in a table's later chunks: there it starts
    with the table's header row (which lies before char_start), then a line break, then that span."""

    text: str
    title: str | None
    page: int | None
    char_start: int
    char_end: int
    ocr: bool = False  # its page was read by OCR

    def embed_text(self) -> str:
        return passage_text(self.title, self.text)


@dataclass
class _Unit:
    start: int
    end: int
    tokens: int
    header: tuple[int, int] | None = None  # a table row's: the span of its table's header, repeated before it
    header_tokens: int = 0


Span = tuple[int, int]


class Chunker:
    def __init__(
        self,
        count_tokens: TokenCounter,
        chunk_tokens: int,
        overlap_tokens: int,
        fits_window: Callable[[str], bool] | None = None,
    ) -> None:
        if chunk_tokens < 16 or overlap_tokens >= chunk_tokens // 2:
            raise ValueError("chunk size must be >= 16 tokens and overlap under half of it")
        self.count_tokens = count_tokens
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.fits_window = fits_window or (lambda _text: True)

    def chunk_sections(self, sections: Iterable[Section]) -> Iterator[Chunk]:
        """Chunks of every section; spans are offsets in the document text (sections joined by a blank line)."""
        offset = 0
        for section in sections:
            for chunk in self.chunk_text(section.text, section.title, section.page, offset):
                chunk.ocr = section.ocr
                yield chunk
            offset += len(section.text) + 2

    def chunk_text(self, text: str, title: str | None, page: int | None, offset: int = 0) -> Iterator[Chunk]:
        budget = max(16, self.chunk_tokens - (self.count_tokens([title])[0] + 1 if title else 0))
        units = self._units(text, 0, len(text), budget, 0)
        for start, end, header in self._merge(units, budget):
            yield from self._fit(text, (start, end), header, title, page, offset, budget)

    def _fit(
        self,
        text: str,
        span: Span,
        header: Span | None,
        title: str | None,
        page: int | None,
        offset: int,
        budget: int,
    ) -> Iterator[Chunk]:
        """Split again with a smaller budget until the embedder's own tokenizer accepts the chunk."""
        start, end = span
        body = text[start:end]
        chunk = Chunk(
            f"{text[header[0] : header[1]]}\n{body}" if header else body,
            title,
            page,
            offset + start,
            offset + end,
        )
        if self.fits_window(chunk.embed_text()) or budget <= 16:
            yield chunk
            return
        smaller = max(16, budget * 2 // 3)
        # Inside a table the parts keep this chunk's header; their own first row is not one.
        units = self._units(text, start, end, smaller, 0, tables=header is None)
        for s, e, inner in self._merge(units, smaller, overlap=0):
            yield from self._fit(text, (s, e), header or inner, title, page, offset, smaller)

    def _units(
        self, text: str, start: int, end: int, budget: int, level: int, tables: bool = True
    ) -> list[_Unit]:
        """Pieces no longer than the budget: paragraphs, else lines, else sentences, else words. A table's rows
        (lines) after its header carry the header's span."""
        splitters = (_PARAGRAPH, _LINE, _SENTENCE, _WORD)
        if level >= len(splitters):
            return _cut_by_chars(text, start, end, budget, self.count_tokens)
        pieces = _split_spans(text, start, end, splitters[level])
        if not pieces and level == 0 and tables:
            whole = _strip(text, start, end)  # one paragraph: it may be a table
            pieces = [whole] if whole[1] > whole[0] else []
        if not pieces:
            return self._units(text, start, end, budget, level + 1, tables)
        counts = self.count_tokens([text[s:e] for s, e in pieces])
        units: list[_Unit] = []
        for (s, e), n in zip(pieces, counts, strict=True):
            if n <= budget:
                units.append(_Unit(s, e, n))
            elif tables and level == 0 and (header := _table_header(text, s, e)):
                units.extend(self._table_rows(text, (s, e), header, budget))
            else:
                units.extend(self._units(text, s, e, budget, level + 1, tables))
        return units

    def _table_rows(self, text: str, table: Span, header: Span, budget: int) -> list[_Unit]:
        """The table's lines as units, those after the header carrying it (unless the header alone would take
        over a third of a chunk: then the rows go as they are)."""
        header_tokens = self.count_tokens([text[header[0] : header[1]]])[0]
        repeated = header if header_tokens <= budget // 3 else None
        units = []
        row_budget = budget - header_tokens - 1 if repeated else budget
        for unit in self._units(text, table[0], table[1], row_budget, 1):
            if repeated and unit.start >= header[1]:
                unit.header, unit.header_tokens = repeated, header_tokens
            units.append(unit)
        return units

    def _merge(
        self, units: list[_Unit], budget: int, overlap: int | None = None
    ) -> Iterator[tuple[int, int, Span | None]]:
        """Greedy packing of consecutive units; the next chunk repeats the last units up to the overlap. A chunk
        that starts at a table's row leaves room for the table's header (which it will repeat) and names it."""
        overlap = self.overlap_tokens if overlap is None else overlap
        i = 0
        while i < len(units):
            header = units[i].header
            room = budget - (units[i].header_tokens + 1 if header else 0)
            j, used = i, 0
            while j < len(units) and used + units[j].tokens + 1 <= room:
                used += units[j].tokens + 1  # +1: the separator between units is a token too
                j += 1
            j = max(j, i + 1)
            yield units[i].start, units[j - 1].end, header
            if j >= len(units):
                return
            back, kept = j, 0
            while back - 1 > i and kept + units[back - 1].tokens <= overlap:
                back -= 1
                kept += units[back].tokens
            i = back


def _split_spans(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    cursor = start
    for match in pattern.finditer(text, start, end):
        if match.start() > cursor:
            spans.append(_strip(text, cursor, match.start()))
        cursor = match.end()
    if cursor < end:
        spans.append(_strip(text, cursor, end))
    spans = [(s, e) for s, e in spans if e > s]
    return spans if len(spans) > 1 else []


def _table_header(text: str, start: int, end: int) -> Span | None:
    """The span of a table's header (its first line, with Markdown's rule under it), or None when the paragraph is
    not a table: at least three lines, each with as many column bars as the first, which has some."""
    lines = _split_spans(text, start, end, _LINE)
    if len(lines) < _MIN_TABLE_ROWS:
        return None
    bars = [column_bars(text[s:e]) for s, e in lines]
    if not bars[0] or any(count != bars[0] for count in bars):
        return None
    return (lines[0][0], lines[header_length([text[s:e] for s, e in lines[:3]]) - 1][1])


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _cut_by_chars(text: str, start: int, end: int, budget: int, count: TokenCounter) -> list[_Unit]:
    """Last resort for a run of characters with no whitespace (a long URL, base64)."""
    units: list[_Unit] = []
    step = max(8, budget)
    for s in range(start, end, step):
        e = min(end, s + step)
        units.append(_Unit(s, e, count([text[s:e]])[0]))
    return units
