"""Text shapes shared by answering and evaluation: words and sentences."""

from __future__ import annotations

import fnmatch
import re

WORD = re.compile(r"[A-Za-z0-9_]+")
# A sentence ends at . ! or ? followed by whitespace or the end, and takes any citations right after the
# punctuation with it ("... it works. [2] Next ..."): models put markers on both sides of the full stop.
_SENTENCE_END = re.compile(r"[.!?]+(?:\s*\[\d+(?:\s*,\s*\d+)*\])*(?=\s|$)")
_ABBREVIATION = re.compile(r"(?:\b(?i:e\.g|i\.e|etc|vs|cf|approx|Mr|Mrs|Ms|Dr)|\b[A-Z])\.$")


def split_sentences(text: str) -> list[str]:
    """Lines, then sentences ending in . ! or ? (with the citation markers that follow the punctuation).

    A full stop after a common abbreviation (e.g., i.e., etc., Dr.) or a capital initial does not end a sentence.
    """
    sentences: list[str] = []
    for line in text.splitlines():
        start = 0
        for match in _SENTENCE_END.finditer(line):
            if _ABBREVIATION.search(line[start : match.end()]):
                continue  # "e.g. foo" goes on; the citation that closes it must stay with its claim
            sentences.append(line[start : match.end()].strip())
            start = match.end()
        sentences.append(line[start:].strip())
    return [s for s in sentences if s]


def matches_glob(path: str, patterns: list[str]) -> bool:
    """Whether a relative path matches any of the glob patterns (ingest --exclude, training --exclude)."""
    return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)
