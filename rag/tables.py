"""Markdown pipe tables: how the loaders write a table's rows, and how the chunker and the evidence answer read them
back (its columns, its header)."""

from __future__ import annotations

import re
from collections.abc import Sequence

RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")  # Markdown's line under the header row
_BAR = re.compile(r"(?<!\\)\|")  # a column bar; an escaped one (\|) belongs to a cell's text


def pipe_row(cells: Sequence[str]) -> str:
    """One row; a bar inside a cell is escaped, so the row's own bars count its columns."""
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def column_bars(line: str) -> int:
    """The row's column bars (escaped ones not counted): the same number on every row of one table."""
    return len(_BAR.findall(line))


def cells(row: str) -> list[str]:
    return [cell.strip() for cell in _BAR.split(row.strip().strip("|"))]


def header_length(lines: Sequence[str]) -> int:
    """How many of a table's first lines are its header: the first row, and Markdown's rule under it when one is
    there and rows follow."""
    return 2 if len(lines) > 2 and RULE.match(lines[1].strip()) else 1
