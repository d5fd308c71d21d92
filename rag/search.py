"""Search a collection the way chat and eval both do: hybrid first stage, cross-encoder rerank, relevance threshold."""

from __future__ import annotations

from dataclasses import dataclass, field

from rag.collection import Collection
from rag.config import Settings
from rag.errors import RagError
from rag.rerank import Reranker, RerankStatus, reranker_from_settings
from rag.retrieval import Mode, Retriever
from rag.store import Hit, SearchFilter


@dataclass(frozen=True)
class SearchTimings:
    """Where one search's time went, in ms."""

    embed_ms: float = 0.0
    search_ms: float = 0.0
    rerank_ms: float = 0.0

    def __add__(self, other: SearchTimings) -> SearchTimings:
        """Both searches' time: a turn that searched twice took both."""
        return SearchTimings(
            self.embed_ms + other.embed_ms, self.search_ms + other.search_ms, self.rerank_ms + other.rerank_ms
        )


@dataclass
class Ranking:
    candidates: list[Hit]  # the first stage's order, before any reranking
    ranked: list[Hit]  # the final order, cut to top_n
    threshold: float  # relevance under which a passage does not answer (the reranker's scale when it ran)
    timings: SearchTimings = field(default_factory=SearchTimings)
    # When reranked and no passage reaches the reranker's threshold: the passages the bi-encoder finds at least this
    # close are relevant (None: the reranker alone decides)
    dense_threshold: float | None = None

    @property
    def relevant(self) -> list[Hit]:
        return self.relevant_among(self.ranked)

    def relevant_among(self, hits: list[Hit]) -> list[Hit]:
        """The hits that answer: those at the threshold; failing any, those the bi-encoder finds close enough.
        The reranker's own passages are kept when it has some: adding the bi-encoder's too lowered evidence token
        F1 on the Python FAQ from 0.524 to 0.493."""
        scored = [h for h in hits if h.relevance >= self.threshold]
        if scored or self.dense_threshold is None:
            return scored
        limit = self.dense_threshold
        return [h for h in hits if h.dense_score is not None and h.dense_score >= limit]

    @property
    def best_relevance(self) -> float:
        return max((h.relevance for h in self.ranked), default=0.0)


class Searcher:
    def __init__(
        self,
        collection: Collection,
        reranker: Reranker | None,
        rerank_status: RerankStatus,
        settings: Settings | None = None,
    ) -> None:
        """settings: the collection's unless given (top-k, top-n and the thresholds come from it)."""
        self.collection = collection
        self.settings = settings or collection.settings
        self.retriever = Retriever(collection.store, collection.embedder, self.settings.bm25_weight)
        self.reranker = reranker
        self.rerank_status = rerank_status

    @classmethod
    def for_collection(cls, collection: Collection) -> Searcher:
        """With the configured cross-encoder, or without it and the reason it is off."""
        return cls(collection, *reranker_from_settings(collection.settings, collection.name))

    def search(
        self,
        query: str,
        top_k: int | None = None,
        top_n: int | None = None,
        mode: Mode = Mode.HYBRID,
        rerank: bool = True,
        flt: SearchFilter | None = None,
    ) -> Ranking:
        for name, value in (("top_k", top_k), ("top_n", top_n)):
            if value is not None and value < 1:
                raise RagError(f"{name} must be at least 1, not {value}")
        top_k, top_n = top_k or self.settings.top_k, top_n or self.settings.top_n
        retrieved = self.retriever.retrieve(query, top_k, mode, flt)
        candidates = [_copy(h) for h in retrieved.hits]
        reranker = self.reranker if rerank else None
        rerank_ms = 0.0
        if reranker is not None:
            shortlist = retrieved.hits[: self.settings.rerank_candidates]
            ranked, rerank_ms = reranker.rerank(query, shortlist, top_n)
        else:
            ranked = retrieved.hits[:top_n]
        timings = SearchTimings(retrieved.embed_ms, retrieved.search_ms, rerank_ms)
        reranked = reranker is not None
        either = reranked and not self.settings.rerank_alone_refuses
        dense_threshold = self.settings.relevance_threshold if either else None
        return Ranking(candidates, ranked, self.threshold(reranked), timings, dense_threshold)

    def threshold(self, rerank: bool) -> float:
        """The relevance under which a passage does not answer: the reranker's when it runs, else the dense one."""
        if rerank and self.reranker is not None:
            return self.reranker.threshold
        return self.settings.relevance_threshold

    def reranker_label(self, rerank: bool) -> str:
        if not rerank:
            return "reranking is off: disabled for this request (--no-rerank)"
        return self.rerank_status.describe()


def _copy(hit: Hit) -> Hit:
    return Hit(hit.id, hit.score, hit.payload, hit.dense_score, hit.rerank_score)
