"""Citation markers: `[n]` and `[n, m]` in an answer's prose, never inside inline code or fenced code blocks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from rag.text import CITATION, WORD, split_sentences

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


ATTRIBUTION_MIN = 0.5


class _Embeds(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def attribute(answer: str, passages: list[str], embedder: _Embeds) -> list[int]:
    """Small models often cite nothing: the passages (indexes, in order of first use) that the answer's
    sentences are most similar to, by bi-encoder cosine of at least ATTRIBUTION_MIN.

    They are reported as attributed by similarity, never as the model's own citations.
    """
    sentences = [s for s in split_sentences(answer) if len(WORD.findall(s)) >= 3]
    if not sentences or not passages:
        return []
    vectors = embedder.embed(sentences + passages)
    similarity = vectors[: len(sentences)] @ vectors[len(sentences) :].T
    chosen: list[int] = []
    for row in similarity:
        best = int(row.argmax())
        if row[best] >= ATTRIBUTION_MIN and best not in chosen:
            chosen.append(best)
    return chosen
