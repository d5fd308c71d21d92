"""Whether a trained reranker helps questions unlike the ones it learned from, before it is installed.

A reranker trained on a collection's headings learns headings, which the first stage already finds (0.979 on the
Python docs); judged on held-out headings it looked better and was installed, and then halved recall on real
questions (issue 28). So the gate holds out whole documents, never trains on them, and asks about them in other
families of questions than headings:

- keywords: a chunk's most salient terms that are not in its headings (what people type into a search box);
- links: the sentence around a link to a held-out page, with the link's text cut out: the author says the linked
  page answers it, in words that page need not contain (the kind of question whose answer is a reference page).
  The page the sentence is quoted from is left out of the candidates (it holds the sentence word for word).

Each question is ranked as the pipeline ranks it: the first stage's candidates (dense alone, and hybrid), and the
reranker over the first `RAG_RERANK_CANDIDATES` hybrid ones. A model is installed only when, on every family with
enough questions, its document MRR@10 beats the better first stage by more than that family's noise: the lower end
of a paired bootstrap 95% interval of the gain is above zero.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from rag.retrieval import Mode, Retriever
from rag.store import Hit
from rag.store.payload import ChunkPayload
from training.links import link_queries
from training.reranker import keyword_queries

HELD_OUT_DOCUMENTS = 0.15  # share of the documents never trained on, asked about by the gate
FAMILY_QUESTIONS = 60  # questions per family at most (each costs RAG_RERANK_CANDIDATES cross-encoder pairs)
MIN_FAMILY = 10  # a family with fewer questions says nothing either way
RESAMPLES = 2000  # bootstrap resamples for a family's interval
K = 10  # MRR@10, as `rag eval` scores retrieval

Scorer = Callable[[str, list[str]], list[float]]  # a model's score of each passage for a query


@dataclass
class Probe:
    """One held-out question and what the first stage found for it."""

    query: str
    answer_doc: str
    passages: list[str]  # the hybrid candidates the pipeline reranks, in the first stage's order
    hybrid_docs: list[str]  # the document of each of them
    dense_docs: list[str]  # the documents of as many of the dense search's best chunks


@dataclass
class FamilyResult:
    family: str
    questions: int
    dense: float
    hybrid: float
    new: float  # hybrid candidates reranked by the new model
    current: float | None  # ... by the collection's installed model, if any
    first_stage: str  # the better of dense and hybrid on this family
    gain: float  # new minus the better first stage
    low: float  # paired bootstrap 95% interval of the gain
    high: float

    def line(self) -> str:
        if self.questions < MIN_FAMILY:
            return f"{self.family}: {self.questions} questions from unseen documents, too few to measure"
        current = f", installed {self.current:.3f}" if self.current is not None else ""
        return (
            f"{self.family} ({self.questions} questions from unseen documents): MRR@10 dense {self.dense:.3f}, "
            f"hybrid {self.hybrid:.3f}, new {self.new:.3f}{current}; gain over {self.first_stage} "
            f"{self.gain:+.3f} (95% interval {self.low:+.3f} to {self.high:+.3f})"
        )


def split_documents(doc_ids: Sequence[str], rng: random.Random) -> tuple[set[str], set[str]]:
    """(documents to train on, documents held out for the gate); nothing is held out from fewer than 4."""
    docs = sorted(set(doc_ids))
    if len(docs) < 4:
        return set(docs), set()
    rng.shuffle(docs)
    held = max(2, round(len(docs) * HELD_OUT_DOCUMENTS))
    return set(docs[held:]), set(docs[:held])


def mine_families(
    retriever: Retriever, chunks: list[ChunkPayload], held: set[str], candidates: int, rng: random.Random
) -> dict[str, list[Probe]]:
    """The gate's questions about the held-out documents, by family, with their first-stage candidates."""
    held_chunks = [c for c in chunks if c.doc_id in held]
    keywords = [(q, c.doc_id, None) for q, c in keyword_queries(held_chunks, FAMILY_QUESTIONS, rng)]
    doc_of = {c.source: c.doc_id for c in chunks}
    links = [
        (link.query, doc_of[link.target], doc_of[link.source])
        for link in link_queries(chunks, 100_000, rng)  # every link, spread over targets; then the held ones
        if doc_of.get(link.target) in held
    ][:FAMILY_QUESTIONS]
    return {
        "keywords": [_probe(retriever, *question, candidates) for question in keywords],
        "links": [_probe(retriever, *question, candidates) for question in links],
    }


def _probe(
    retriever: Retriever, query: str, answer_doc: str, quoted_in: str | None, candidates: int
) -> Probe:
    def kept(hits: list[Hit], limit: int) -> list[Hit]:
        return [h for h in hits if h.chunk.doc_id != quoted_in][:limit]

    extra = 20 if quoted_in else 0  # room for the quoting page's chunks, which are dropped
    hybrid = kept(retriever.retrieve(query, candidates + extra, Mode.HYBRID).hits, candidates)
    dense = kept(retriever.retrieve(query, candidates + extra, Mode.DENSE).hits, candidates)
    return Probe(
        query,
        answer_doc,
        [h.chunk.passage() for h in hybrid],
        [h.chunk.doc_id for h in hybrid],
        [h.chunk.doc_id for h in dense],
    )


def reciprocal_rank(docs: Sequence[str], answer: str) -> float:
    """1 / the answer's rank among the first K distinct documents (a document's later chunks do not count), as
    `rag eval` scores retrieval; 0 when it is not among them."""
    distinct = list(dict.fromkeys(docs))[:K]
    return next((1 / rank for rank, doc in enumerate(distinct, 1) if doc == answer), 0.0)


def reranked_docs(probe: Probe, scores: Sequence[float]) -> list[str]:
    order = sorted(range(len(probe.passages)), key=lambda i: -scores[i])
    return [probe.hybrid_docs[i] for i in order]


def probe_scores(score: Scorer, probes: list[Probe]) -> list[list[float]]:
    return [score(p.query, p.passages) if p.passages else [] for p in probes]


def judge_family(
    family: str,
    probes: list[Probe],
    new: list[list[float]],
    current: list[list[float]] | None,
    seed: int = 0,
) -> FamilyResult:
    """The family's MRR@10 per ranking and the new model's gain over the better first stage, with its interval."""
    dense = [reciprocal_rank(p.dense_docs, p.answer_doc) for p in probes]
    hybrid = [reciprocal_rank(p.hybrid_docs, p.answer_doc) for p in probes]
    mine = [reciprocal_rank(reranked_docs(p, s), p.answer_doc) for p, s in zip(probes, new, strict=True)]
    best_name, best = ("dense", dense) if _mean(dense) >= _mean(hybrid) else ("hybrid", hybrid)
    gains = [a - b for a, b in zip(mine, best, strict=True)]
    low, high = bootstrap_interval(gains, random.Random(seed))
    installed = None
    if current is not None:
        ranks = [
            reciprocal_rank(reranked_docs(p, s), p.answer_doc) for p, s in zip(probes, current, strict=True)
        ]
        installed = _mean(ranks)
    return FamilyResult(
        family,
        len(probes),
        _mean(dense),
        _mean(hybrid),
        _mean(mine),
        installed,
        best_name,
        round(_mean(mine) - _mean(best), 4),
        low,
        high,
    )


def bootstrap_interval(values: list[float], rng: random.Random, level: float = 0.95) -> tuple[float, float]:
    """The paired bootstrap interval of the mean of per-question differences."""
    if not values:
        return 0.0, 0.0
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(RESAMPLES))
    tail = (1 - level) / 2
    low = means[math.floor(tail * (RESAMPLES - 1))]
    high = means[math.ceil((1 - tail) * (RESAMPLES - 1))]
    return round(low, 4), round(high, 4)


def verdict(results: list[FamilyResult]) -> str | None:
    """Why the new model must not be installed, or None when it helps every family measured."""
    measured = [r for r in results if r.questions >= MIN_FAMILY]
    if not measured:
        sizes = ", ".join(f"{r.family} {r.questions}" for r in results)
        return (
            f"too few questions about documents it never saw ({sizes}; {MIN_FAMILY} needed in a family) to show "
            "that it helps questions unlike its training headings"
        )
    for r in measured:
        if r.gain < 0:
            return f"it ranks {r.family} questions worse than the first stage ({r.line()})"
    for r in measured:
        if r.low <= 0:
            return f"its gain on {r.family} questions is within the noise ({r.line()})"
    current = [r.current for r in measured]
    if all(c is not None for c in current):
        now = _mean([c for c in current if c is not None])
        new = _mean([r.new for r in measured])
        if now > new:
            return f"the installed reranker ranks these questions better (mean MRR@10 {now:.3f} > {new:.3f})"
    return None


def as_card(results: list[FamilyResult]) -> dict[str, dict[str, object]]:
    return {r.family: {k: v for k, v in asdict(r).items() if k != "family"} for r in results}


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0
