"""Is each sentence of an answer supported by the passages it cites? The same test `rag eval` scores as groundedness.

A sentence's content words are its distinct normalized tokens minus citation markers and stopwords; it is
supported when some passage it cites (or, for an uncited sentence in the app, any passage) holds at least
`threshold` of them. Sentences without content words (a bare "[1]") are not checked.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from rag.citations import cited_numbers
from rag.text import content_words, normalize_tokens, split_sentences

SUPPORT_THRESHOLD = 0.5
_CITATION_LINE = re.compile(r"^\[\d+(?:,\s*\d+)*\]$")


@dataclass(frozen=True)
class SentenceCheck:
    text: str
    cites: list[int]
    supported: bool

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def check_sentences(
    answer: str,
    passages: dict[int, str],
    threshold: float = SUPPORT_THRESHOLD,
    uncited_against_all: bool = True,
) -> list[SentenceCheck]:
    """Each content sentence of the answer, its citations, and whether its passages support it."""
    tokens = {n: set(normalize_tokens(text)) for n, text in passages.items()}
    checks: list[SentenceCheck] = []
    for sentence in claims(answer):
        words = content_words(sentence)
        if not words:
            continue
        cites = cited_numbers(sentence)
        against = [n for n in cites if n in tokens] if cites or not uncited_against_all else list(tokens)
        supported = any(len(words & tokens[n]) / len(words) >= threshold for n in against)
        checks.append(SentenceCheck(sentence, cites, supported))
    return checks


def claims(answer: str) -> list[str]:
    """The answer's sentences, except that a block whose citation stands on the line under it (a quoted code block,
    a table's header and rows) is one claim, with that citation: its lines are not sentences of their own."""
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", answer):
        lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
        if len(lines) > 1 and _CITATION_LINE.match(lines[-1]):
            out.append(" ".join(lines))
        else:
            out.extend(split_sentences(paragraph))
    return out
