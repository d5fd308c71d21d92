"""The evidence-first answer: the passages' own sentences that answer the question, each with its [n].

It needs no generator, so it is right whenever retrieval is: every sentence is quoted from the passage it cites.
Units are sentences, except that a code block stays whole and a table's row is quoted under its header row; each
is scored against the question by the bi-encoder, with a bonus for the passage's rank, and a row that holds a cell
the question names (the ticket, the product code) is preferred: the bi-encoder hardly tells "T-1050" from "T-1197".
The bi-encoder scores sentences even when a cross-encoder ranked the passages: on the Python FAQ with the trained reranker, token F1 0.427 with the cross-encoder scoring sentences,
0.514 with the bi-encoder (it was trained on whole passages, and scored most sentences of the top five 0.99).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag import tables
from rag.text import CITATION, WORD, split_sentences

MAX_UNITS = 3  # sentences (or code blocks) quoted at most
MARGIN = 0.12  # a unit is kept only within this of the best one's score: the answer, not the neighbourhood
UNFINISHED_PENALTY = 2 * MARGIN  # for a unit that does not end like a sentence (see select)
# Per place: the ranked order carries what a sentence's own score does not. Token F1 by bonus (2026-11-28, answered
# questions): 0.03 / 0.1 / 0.2 / 1.0 gave Debian FAQ 0.408 / 0.461 / 0.449 / 0.449, Python FAQ 0.399 / 0.477 /
# 0.498 / 0.496, Python FAQ with the trained reranker 0.517 / 0.513 / 0.514 / 0.512: 0.2 is best on average.
RANK_BONUS = 0.2
# Over the rank bonus of the five passages and any cosine gap: a row whose cell the question names is the answer.
NAMED_CELL_BONUS = 1.0

Scorer = Callable[[str, Sequence[str]], np.ndarray]  # question, units -> one score per unit, higher is better

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
_CODE_LINE = re.compile(r"^(?: {4}|\t|>>> |\.\.\. |\$ )")
_TABLE_LINE = re.compile(r"^\|.*\|$")


@dataclass(frozen=True)
class Unit:
    n: int  # the passage's number, as cited
    rank: int  # the passage's place in the ranking, 0 first
    position: int  # the unit's place inside its passage
    text: str
    code: bool = False
    header: str = ""  # a table row's: the table's header row (and Markdown's rule), quoted above it

    def scored_text(self) -> str:
        return f"{self.header}\n{self.text}" if self.header else self.text

    def cells(self) -> list[str]:
        return tables.cells(self.text) if self.header else []


def units_of(text: str, n: int, rank: int) -> list[Unit]:
    """A passage cut into sentences, with each code block (fenced, indented or an interpreter session) whole and
    each table row (under its header row) on its own."""
    units: list[Unit] = []
    for block, code in _blocks(text):
        for part, table in [(block, False)] if code else _table_runs(block):
            if table:
                header, rows = _header_and_rows(part)
                units.extend(Unit(n, rank, len(units) + i, row, header=header) for i, row in enumerate(rows))
                continue
            for piece in [part.strip("\n")] if code else _sentences(part):
                if code or len(WORD.findall(piece)) >= 3:
                    units.append(Unit(n, rank, len(units), piece, code))
    return units


def _table_runs(prose: str) -> list[tuple[str, bool]]:
    """Runs of table lines (two or more "| ... |" lines with as many bars each) and runs of other lines, in order."""
    runs: list[tuple[list[str], bool]] = []
    for line in prose.splitlines():
        row = bool(_TABLE_LINE.match(line.strip()))
        if not runs or runs[-1][1] != row:
            runs.append(([], row))
        runs[-1][0].append(line.strip() if row else line)
    out = []
    for lines, row in runs:
        table = row and len(lines) >= 2 and len({tables.column_bars(line) for line in lines}) == 1
        out.append(("\n".join(lines), table))
    return out


def _header_and_rows(table: str) -> tuple[str, list[str]]:
    """The header row (with Markdown's rule under it, when there is one) and the data rows."""
    lines = table.splitlines()
    cut = tables.header_length(lines)
    return "\n".join(lines[:cut]), lines[cut:]


def _sentences(prose: str) -> list[str]:
    """Sentences of each paragraph, its lines joined first: text and PDF lines break mid-sentence."""
    paragraphs = re.split(r"\n\s*\n", prose)
    return [s for p in paragraphs for s in split_sentences(" ".join(p.split()))]


def _blocks(text: str) -> list[tuple[str, bool]]:
    """Runs of prose and runs of code lines, in order."""
    blocks: list[tuple[list[str], bool]] = []
    fence: str | None = None
    for line in text.splitlines():
        opening = _FENCE.match(line)
        if fence is not None:
            blocks[-1][0].append(line)
            fence = None if opening and opening.group(1)[0] == fence else fence
            continue
        code = (
            bool(opening)
            or bool(_CODE_LINE.match(line))
            or (bool(blocks) and blocks[-1][1] and not line.strip())
        )
        if opening:
            fence = opening.group(1)[0]
        if not blocks or blocks[-1][1] != code:
            blocks.append(([], code))
        blocks[-1][0].append(line)
    return [("\n".join(lines), code) for lines, code in blocks if "".join(lines).strip()]


def select(question: str, passages: Sequence[tuple[int, str]], scorer: Scorer) -> list[Unit]:
    """The units that answer best: at most MAX_UNITS, within MARGIN of the best, in passage then document order."""
    units = [u for rank, (n, text) in enumerate(passages) for u in units_of(text, n, rank)]
    if not units:  # no sentence of three words anywhere (a table, a list of names): the best passage, whole
        return [Unit(passages[0][0], 0, 0, passages[0][1].strip())] if passages else []
    scores = np.asarray(scorer(question, [u.scored_text() for u in units]), dtype=np.float32)
    scores -= RANK_BONUS * np.asarray([u.rank for u in units], dtype=np.float32)
    named = [_names_a_cell(question, u) for u in units]
    scores += NAMED_CELL_BONUS * np.asarray(named, dtype=np.float32)
    # A question in the passage (a FAQ's own heading) is the most similar to the question and answers nothing.
    scores[[i for i, u in enumerate(units) if u.text.rstrip().endswith("?")]] = -np.inf
    # A line of headings or a table of contents ("2.1 Which ... 2.2 How ...") is similar but says nothing; so is
    # the sentence a chunk boundary cut off. A unit that does not end like a sentence must win by a wide margin.
    # A table row is no sentence either: it wins over prose only when it holds what the question names.
    scores[[i for i, u in enumerate(units) if not (u.code or named[i] or _ends_like_a_sentence(u.text))]] -= (
        UNFINISHED_PENALTY
    )
    best = float(scores.max())
    order = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] >= best - MARGIN][:MAX_UNITS]
    return sorted((units[i] for i in _with_introduced_code(order, units)), key=lambda u: (u.rank, u.position))


def _names_a_cell(question: str, unit: Unit) -> bool:
    """Whether the question names one of the row's cells, as a word of its own, by something that names one thing:
    a cell with a digit ("T-1050") or several words, or a proper noun (capitalized in the question, not as its
    first word). A common word ("task", "Type") in a cell names nothing in particular."""
    for cell in unit.cells():
        if len(cell) < 2:
            continue
        for match in re.finditer(rf"(?<!\w){re.escape(cell)}(?!\w)", question, re.IGNORECASE):
            proper = match.start() > 0 and match.group()[0].isupper()
            if proper or any(c.isdigit() for c in cell) or len(cell.split()) > 1:
                return True
    return False


def _ends_like_a_sentence(text: str) -> bool:
    return bool(re.search(r"[.!?:;)\"'”’]$", text.rstrip()))


def _with_introduced_code(chosen: list[int], units: list[Unit]) -> list[int]:
    """A chosen sentence that introduces code ("like this:") brings the code block that follows it."""
    extra = [
        i + 1
        for i in chosen
        if units[i].text.rstrip().endswith(":")
        and i + 1 < len(units)
        and units[i + 1].code
        and units[i + 1].n == units[i].n
    ]
    return list(dict.fromkeys(chosen + extra))


def render(units: Sequence[Unit]) -> str:
    """One paragraph per passage; every sentence ends with its [n], a code block is followed by it."""
    paragraphs: list[list[str]] = []
    last: Unit | None = None
    for unit in units:
        if unit.header:  # rows of one table share one header: a small table, then its [n]
            if last is not None and last.n == unit.n and last.header == unit.header:
                paragraphs[-1][-1] = paragraphs[-1][-1].replace(f"\n[{unit.n}]", f"\n{unit.text}\n[{unit.n}]")
            else:
                paragraphs.append([f"{unit.header}\n{unit.text}\n[{unit.n}]"])
            last = unit
            continue
        cited = f"{unit.text}\n[{unit.n}]" if unit.code else f"{_own_brackets(unit.text)} [{unit.n}]"
        if last is not None and last.n == unit.n and not (last.code or unit.code or last.header):
            paragraphs[-1].append(cited)
        else:
            paragraphs.append([cited])
        last = unit
    return "\n\n".join(" ".join(p) for p in paragraphs)


_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _own_brackets(text: str) -> str:
    """A document's own footnote marks ("archives[5]") as superscripts, so no reader takes them for our [n]."""
    return CITATION.sub(lambda m: m.group(1).replace(" ", "").translate(_SUPERSCRIPT), text)


def bi_encoder_scorer(embed: Callable[[list[str]], np.ndarray]) -> Scorer:
    """Cosine of the question with each unit (normalized embeddings)."""

    def score(question: str, units: Sequence[str]) -> np.ndarray:
        vectors = embed([question, *units])
        return np.asarray(vectors[1:] @ vectors[0])

    return score
