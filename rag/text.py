"""Text shapes shared by answering, evaluation and reports: words, sentences, printable names."""

from __future__ import annotations

import fnmatch
import re
import string

WORD = re.compile(r"[A-Za-z0-9_]+")
CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")  # [1] and [1, 2]; rag.citations says which ones count
# A sentence ends at . ! or ? followed by whitespace or the end, and takes any citations right after the
# punctuation with it ("... it works. [2] Next ..."): models put markers on both sides of the full stop.
_SENTENCE_END = re.compile(r"[.!?]+(?:\s*\[\d+(?:\s*,\s*\d+)*\])*(?=\s|$)")
_ABBREVIATION = re.compile(r"(?:\b(?i:e\.g|i\.e|a\.k\.a|etc|vs|cf|approx|Mr|Mrs|Ms|Dr)|\b[A-Z])\.$")


def split_sentences(text: str) -> list[str]:
    """Lines, then sentences ending in . ! or ? (with the citation markers that follow the punctuation).

    A full stop after a common abbreviation (e.g., i.e., a.k.a., etc., Dr.) or a capital initial does not end a sentence.
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


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
# Kept small on purpose: only words that carry no claim, so that a sentence's content words are its claim.
_STOPWORD_TEXT = """
a an the and or but if then so of to in on at by for with from as into about than that this these those
it its is are was were be been being do does did has have had can could will would should may might must
i you he she we they me him her us them my your our their there here what which who whom how when where
why not no yes also just only very such more most other some any each all both either neither eg ie etc
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def normalize_tokens(text: str) -> list[str]:
    """SQuAD normalization: lowercase, drop punctuation and the articles a/an/the, split on whitespace."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split()


def content_words(text: str) -> set[str]:
    """Distinct normalized tokens of text minus citation markers ([n], [n, m]) and STOPWORDS."""
    return set(normalize_tokens(CITATION.sub(" ", text))) - STOPWORDS


def first_line(text: str, limit: int = 200) -> str:
    """An error message's first line, cut to limit: what a one-line report has room for."""
    return text.strip().splitlines()[0][:limit] if text.strip() else ""


def printable(text: str) -> str:
    """A file name on one line of a table or summary: a newline or other control character is shown escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)
