"""Citation markers: `[n]` and `[n, m]` in an answer's prose, never inside inline code or fenced code blocks."""

from __future__ import annotations

import re

CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
# A fenced block runs to its closing fence (or the end, while it is still streaming); inline code to its backtick.
_CODE = re.compile(
    r"^[ \t]*(`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]*\1[ \t]*$|\Z)|`[^`\n]+`", re.MULTILINE | re.DOTALL
)


def without_code(text: str) -> str:
    """The text with code blocks and inline code blanked out: `$array[1]` is an index, not a citation."""
    return _CODE.sub(" ", text)


def cited_numbers(text: str) -> list[int]:
    """Every cited passage number in prose, in order of first appearance."""
    seen: list[int] = []
    for match in CITATION.finditer(without_code(text)):
        for part in match.group(1).split(","):
            n = int(part)
            if n not in seen:
                seen.append(n)
    return seen
