"""Retrieval and answer metrics for `rag eval`: pure functions, no I/O.

Retrieval metrics take a ranked list of keys and the set of gold keys of one question. A key is a document
(its relative `source` path) or a page (`(source, page)`, page None for unpaged formats). Retrieval returns
chunks, so the same document or page usually appears several times in a ranking: every retrieval metric first
drops repeated keys, keeping the first (best-ranked) occurrence, and then cuts at k. A document retrieved as
chunks 1, 2 and 5 thus counts once, at rank 1, and the next distinct document moves up to rank 2; `k` counts
distinct keys, not chunks. `doc_keys` and `page_keys` turn a ranked list of (source, page) hits into such keys.

The per-question values are averaged by the caller; questions without gold keys (unanswerable ones, or
answerable ones with no `sources`) should be skipped rather than averaged in as 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import TypeVar

from rag.citations import cited_numbers
from rag.support import check_sentences
from rag.text import STOPWORDS, content_words, normalize_tokens, split_sentences  # noqa: F401  (this module's API)

Key = TypeVar("Key", bound=Hashable)
Hit = tuple[str, int | None]  # (source, page) of one retrieved chunk

# --- retrieval -------------------------------------------------------------------------------------------


def dedupe(ranked: Iterable[Key]) -> list[Key]:
    """The keys in rank order with repeats removed, each kept at its first (best) rank."""
    return list(dict.fromkeys(ranked))


def doc_keys(hits: Iterable[Hit]) -> list[str]:
    """Document-level ranking: each hit's source, deduped keeping the first occurrence."""
    return list(dict.fromkeys(source for source, _page in hits))


def page_keys(hits: Iterable[Hit]) -> list[tuple[str, int | None]]:
    """Page-level ranking: each hit's (source, page), deduped keeping the first occurrence."""
    return list(dict.fromkeys((source, page) for source, page in hits))


def _top_k(ranked: Sequence[Key], k: int) -> list[Key]:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return dedupe(ranked)[:k]


def recall_at_k(ranked: Sequence[Key], gold: AbstractSet[Key], k: int) -> float:
    """|gold ∩ first k distinct keys| / |gold|; 0.0 when gold is empty (callers skip such questions)."""
    if not gold:
        return 0.0
    return sum(1 for key in _top_k(ranked, k) if key in gold) / len(gold)


def mrr_at_k(ranked: Sequence[Key], gold: AbstractSet[Key], k: int) -> float:
    """Reciprocal rank of the first gold key among the first k distinct keys: 1/rank, or 0.0 if none.

    This is one question's reciprocal rank; the mean over questions is the MRR.
    """
    for rank, key in enumerate(_top_k(ranked, k), start=1):
        if key in gold:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[Key], gold: AbstractSet[Key], k: int) -> float:
    """Normalized DCG with binary relevance over the first k distinct keys.

    DCG = sum of 1/log2(rank + 1) over the ranks (1-based) holding a gold key; the ideal DCG puts
    min(|gold|, k) gold keys at ranks 1, 2, ...; nDCG = DCG / ideal DCG, 0.0 when gold is empty.
    """
    if not gold:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 1) for rank, key in enumerate(_top_k(ranked, k), start=1) if key in gold)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold), k) + 1))
    return dcg / ideal


# --- answers ---------------------------------------------------------------------------------------------


def token_f1(pred: str, ref: str) -> float:
    """SQuAD token F1 between the normalized tokens of pred and ref (multiset overlap).

    If either side has no tokens, 1.0 when both are empty and 0.0 otherwise.
    """
    pred_tokens, ref_tokens = normalize_tokens(pred), normalize_tokens(ref)
    if not pred_tokens or not ref_tokens:
        return float(pred_tokens == ref_tokens)
    common = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if not common:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(pred: str, ref: str) -> float:
    """ROUGE-L F1: with L the longest common subsequence of the normalized tokens, P = L/|pred|,
    R = L/|ref| and the score 2PR/(P+R). If either side has no tokens, 1.0 when both are empty else 0.0.
    """
    pred_tokens, ref_tokens = normalize_tokens(pred), normalize_tokens(ref)
    if not pred_tokens or not ref_tokens:
        return float(pred_tokens == ref_tokens)
    lcs = _lcs_length(pred_tokens, ref_tokens)
    if not lcs:
        return 0.0
    precision, recall = lcs / len(pred_tokens), lcs / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def citations(sentence: str) -> set[int]:
    """The passage numbers cited in a sentence: [1] and [1, 2] forms, outside code (as the app reads them)."""
    return set(cited_numbers(sentence))


def groundedness(answer: str, cited_texts: dict[int, str], threshold: float = 0.5) -> float | None:
    """Share of the answer's content sentences that their own citations support.

    The answer is split into sentences: at line breaks and after . ! or ? followed by whitespace, a sentence
    keeping the citation markers that directly follow its final punctuation; a block whose citation stands alone
    on the line under it (a quoted code block or table) is one sentence with that citation (rag.support.claims). A sentence's content words are
    its distinct SQuAD-normalized tokens (lowercase, no punctuation, no a/an/the) minus citation markers
    ([n], [n, m]) and a small stopword list; sentences without content words (e.g. a bare "[1]") are ignored.
    A content sentence is supported if it cites at least one passage [n] present in `cited_texts` whose
    normalized tokens contain at least `threshold` (0.5) of the sentence's content words; a sentence without
    citations, or citing only unknown numbers, is unsupported. The score is supported sentences / content
    sentences, or None when the answer has no content sentence (e.g. a refusal reduced to nothing).
    """
    checks = check_sentences(answer, cited_texts, threshold, uncited_against_all=False)
    return sum(c.supported for c in checks) / len(checks) if checks else None


# --- aggregates ------------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of non-empty sorted values, linearly interpolated like numpy's default."""
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, mean, p50 and p95 (linear interpolation) of values, e.g. latencies; None statistics when empty."""
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p95": None}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
    }


def refusal_metrics(items: Iterable[tuple[bool, bool]]) -> dict[str, float | int | None]:
    """Refusal behaviour from (answerable, refused) pairs, one per question.

    refusal_accuracy: share of unanswerable questions that were refused (higher is better);
    false_refusal_rate: share of answerable questions that were refused (lower is better);
    either is None when there are no questions of its kind. Counts come along.
    """
    pairs = list(items)
    refused_unanswerable = sum(1 for answerable, refused in pairs if not answerable and refused)
    refused_answerable = sum(1 for answerable, refused in pairs if answerable and refused)
    unanswerable = sum(1 for answerable, _refused in pairs if not answerable)
    answerable = len(pairs) - unanswerable
    return {
        "unanswerable": unanswerable,
        "refused_unanswerable": refused_unanswerable,
        "refusal_accuracy": refused_unanswerable / unanswerable if unanswerable else None,
        "answerable": answerable,
        "refused_answerable": refused_answerable,
        "false_refusal_rate": refused_answerable / answerable if answerable else None,
    }
