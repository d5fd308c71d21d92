"""The chat pipeline: condense the follow-up, retrieve, rerank, refuse or prompt, stream, map citations."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from rag.citations import cited_numbers
from rag.config import Settings
from rag.embedder import Embedder, embedder_from_settings
from rag.errors import RagError
from rag.llm import LLMClient, Message, open_llm
from rag.prompt import REFUSAL, Passage, Prompt, build_prompt, is_refusal
from rag.rerank import Reranker, RerankStatus, reranker_from_settings
from rag.retrieval import Mode, Retriever
from rag.store import Hit, SearchFilter, VectorStore, open_store
from rag.tokens import count

log = logging.getLogger("rag.answer")

SNIPPET_CHARS = 300

CONDENSE_SYSTEM = (
    "Rewrite the user's last question so that it can be understood without the conversation: replace pronouns "
    "with what they refer to. Output only the rewritten question, nothing else."
)


@dataclass
class Source:
    n: int
    source: str
    page: int | None
    title: str | None
    score: float
    text: str
    doc_id: str
    cited_by: str = (
        "model"  # "model": the LLM wrote [n]; "similarity": attributed after the fact (see _attribute)
    )

    @classmethod
    def from_passage(cls, passage: Passage) -> Source:
        payload = passage.hit.payload
        return cls(
            n=passage.n,
            source=passage.source,
            page=passage.page,
            title=payload.get("title"),
            score=round(passage.hit.relevance, 4),
            text=str(payload.get("text", "")),
            doc_id=str(payload.get("doc_id", "")),
        )

    @property
    def snippet(self) -> str:
        text = " ".join(self.text.split())
        return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"


@dataclass
class Answer:
    question: str
    standalone_question: str
    answer: str = ""
    refused: bool = False
    sources: list[Source] = field(default_factory=list)
    invalid_citations: list[int] = field(default_factory=list)
    reranker: str = ""
    llm: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    context: list[Source] = field(default_factory=list)  # every passage the LLM saw
    context_dropped: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "standalone_question": self.standalone_question,
            "answer": self.answer,
            "refused": self.refused,
            "sources": [asdict(s) for s in self.sources],
            "invalid_citations": self.invalid_citations,
            "reranker": self.reranker,
            "llm": self.llm,
            "timings": self.timings,
            "context_dropped": self.context_dropped,
        }


@dataclass
class Token:
    text: str


@dataclass
class Status:
    """What the pipeline is doing now, before the answer's tokens come: for signs of life."""

    text: str


@dataclass
class Turn:
    role: str  # "user" or "assistant"
    content: str


class ChatPipeline:
    def __init__(
        self,
        settings: Settings,
        store: VectorStore,
        embedder: Embedder,
        llm: LLMClient | None,
        reranker: Reranker | None,
        rerank_status: RerankStatus,
    ) -> None:
        self.settings = settings
        self.store = store
        self.retriever = Retriever(store, embedder)
        self.llm = llm
        self.reranker = reranker
        self.rerank_status = rerank_status

    # ------------------------------------------------------------------ public

    def ask(self, question: str, history: list[Turn] | None = None, **options: Any) -> Answer:
        """The whole answer at once (the stream, drained)."""
        for event in self.stream(question, history, **options):
            if isinstance(event, Answer):
                return event
        raise AssertionError("the stream ended without an answer")

    def stream(
        self,
        question: str,
        history: list[Turn] | None = None,
        top_k: int | None = None,
        top_n: int | None = None,
        rerank: bool = True,
        flt: SearchFilter | None = None,
    ) -> Iterator[Status | Token | Answer]:
        """What it is doing, the answer's tokens as they come, then the finished Answer."""
        started = time.perf_counter()
        question = question.strip()
        if history and self.llm is not None:
            yield Status("rewriting the follow-up question…")
        standalone = self.condense(question, history or [])
        yield Status("searching the documents…")
        result = Answer(question, standalone, reranker=self._reranker_label(rerank))
        result.llm = asdict(self.llm.info) if self.llm else {}
        prompt = self._select(
            standalone, result, top_k or self.settings.top_k, top_n or self.settings.top_n, rerank, flt
        )
        if prompt is None:
            result.answer, result.refused = REFUSAL, True
            yield Token(REFUSAL)
        else:
            yield Status(self._generating())
            yield from self._generate(prompt, result)
        result.timings["total_ms"] = _ms(started)
        yield result

    def retrieve_ranked(
        self,
        query: str,
        top_k: int,
        top_n: int,
        mode: Mode = Mode.HYBRID,
        rerank: bool = True,
        flt: SearchFilter | None = None,
    ) -> tuple[list[Hit], list[Hit], dict[str, float]]:
        """First-stage candidates and the final ranking, without the LLM (for evaluation)."""
        retrieved = self.retriever.retrieve(query, top_k, mode, flt)
        candidates = [_copy(h) for h in retrieved.hits]
        timings = {"embed_ms": retrieved.embed_ms, "search_ms": retrieved.search_ms, "rerank_ms": 0.0}
        if rerank and self.reranker is not None:
            ranked, timings["rerank_ms"] = self.reranker.rerank(query, retrieved.hits, top_n)
        else:
            ranked = retrieved.hits[:top_n]
        return candidates, ranked, timings

    # ------------------------------------------------------------------ stages

    def condense(self, question: str, history: list[Turn]) -> str:
        """A follow-up rewritten with the history into a standalone question (the question itself if no history)."""
        turns = self._trim_history(history)
        if not turns or self.llm is None:
            return question
        transcript = "\n".join(f"{t.role.capitalize()}: {t.content}" for t in turns)
        messages: list[Message] = [
            {"role": "system", "content": CONDENSE_SYSTEM},
            {
                "role": "user",
                "content": f"Conversation:\n{transcript}\n\nLast question: {question}\n\nRewritten question:",
            },
        ]
        rewritten = self.llm.complete(messages, max_tokens=64).strip().strip('"').splitlines()
        candidate = rewritten[0].strip() if rewritten else ""
        last_user = next((t.content for t in reversed(turns) if t.role == "user"), "")
        if not _plausible_rewrite(candidate, question):
            # A small model may fail to rewrite; the last question keeps the retrieval on topic.
            return f"{last_user} {question}".strip()
        return candidate

    def _select(
        self, query: str, result: Answer, top_k: int, top_n: int, rerank: bool, flt: SearchFilter | None
    ) -> Prompt | None:
        _, ranked, timings = self.retrieve_ranked(query, top_k, top_n, Mode.HYBRID, rerank, flt)
        result.timings["retrieve_ms"] = round(timings["embed_ms"] + timings["search_ms"], 1)
        result.timings["rerank_ms"] = round(timings["rerank_ms"], 1)
        reranked = rerank and self.reranker is not None
        threshold = self.settings.rerank_threshold if reranked else self.settings.relevance_threshold
        relevant = [h for h in ranked if h.relevance >= threshold]
        if not relevant:
            best = max((h.relevance for h in ranked), default=0.0)
            log.info("refusing: best relevance %.3f is under the threshold %.3f", best, threshold)
            return None
        prompt = build_prompt(
            query, relevant, self.settings.llm_context_tokens, self.settings.llm_answer_tokens
        )
        result.context = [Source.from_passage(p) for p in prompt.passages]
        result.context_dropped = prompt.dropped
        if prompt.dropped:
            log.warning("%d passages did not fit the LLM's context window and were left out", prompt.dropped)
        return prompt

    def _generate(self, prompt: Prompt, result: Answer) -> Iterator[Token]:
        if self.llm is None:
            raise AssertionError("an answering pipeline needs an LLM")
        asked = time.perf_counter()
        parts: list[str] = []
        for piece in self.llm.stream(prompt.messages, self.settings.llm_answer_tokens):
            if not parts:
                result.timings["first_token_ms"] = _ms(asked)
            parts.append(piece)
            yield Token(piece)
        result.timings["generate_ms"] = _ms(asked)
        result.answer = "".join(parts).strip()
        self._map_citations(result, prompt.passages)

    def _map_citations(self, result: Answer, passages: list[Passage]) -> None:
        by_number = {p.n: p for p in passages}
        if is_refusal(result.answer):
            result.refused = True
            return
        cited = cited_numbers(result.answer)
        result.sources = [Source.from_passage(by_number[n]) for n in cited if n in by_number]
        result.invalid_citations = [n for n in cited if n not in by_number]
        if not result.sources:
            result.sources = self._attribute(result.answer, passages)

    def _attribute(self, answer: str, passages: list[Passage]) -> list[Source]:
        """Small models often cite nothing: name the passages that support the answer's sentences instead.

        Each sentence goes to its most similar passage (bi-encoder cosine) when that similarity reaches
        ATTRIBUTION_MIN. Such sources say `cited_by: similarity`, so nobody mistakes them for the model's own.
        """
        sentences = [s for s in _SENTENCE_END.split(answer) if len(_WORD.findall(s)) >= 3]
        if not sentences or not passages:
            return []
        embedder = self.retriever.embedder
        vectors = embedder.embed(sentences + [p.hit.payload.get("text", "") for p in passages])
        similarity = vectors[: len(sentences)] @ vectors[len(sentences) :].T
        chosen: list[int] = []
        for row in similarity:
            best = int(row.argmax())
            if row[best] >= ATTRIBUTION_MIN and best not in chosen:
                chosen.append(best)
        return [replace(Source.from_passage(passages[i]), cited_by="similarity") for i in chosen]

    # ------------------------------------------------------------------ helpers

    def _trim_history(self, history: list[Turn]) -> list[Turn]:
        kept: list[Turn] = []
        used = 0
        for turn in reversed(history):
            cost = count(turn.content)
            if used + cost > self.settings.history_tokens:
                break
            kept.append(turn)
            used += cost
        return list(reversed(kept))

    def _generating(self) -> str:
        if self.llm is None:
            return "generating the answer…"
        ahead = self.llm.queued()
        wait = f"; waiting for {ahead} other question{'s' if ahead > 1 else ''} first" if ahead else ""
        return f"generating the answer ({self.llm.info.describe()}){wait}…"

    def _reranker_label(self, rerank: bool) -> str:
        if not rerank:
            return "reranking is off: disabled for this request (--no-rerank)"
        return self.rerank_status.describe()


_WORD = re.compile(r"[A-Za-z0-9_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
ATTRIBUTION_MIN = 0.5


def _plausible_rewrite(candidate: str, question: str) -> bool:
    """A rewrite worth searching with: a single question-sized line, not an answer or an echo."""
    if not candidate or len(candidate) > max(300, 4 * len(question)):
        return False
    return (
        candidate.lower().strip(" ?.") != question.lower().strip(" ?.") and len(_WORD.findall(candidate)) >= 3
    )


def _copy(hit: Hit) -> Hit:
    return Hit(hit.id, hit.score, hit.payload, hit.dense_score, hit.rerank_score)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)


def open_pipeline(settings: Settings, collection: str | None = None, with_llm: bool = True) -> ChatPipeline:
    """Store, embedder, reranker (or why it is off) and LLM from settings; the collection must exist."""
    store = open_store(settings, collection, create=False)
    try:
        meta = store.collection_meta()
        embedder = embedder_from_settings(settings)
        if meta and meta.get("embedder") not in (None, embedder.name):
            raise RagError(
                f"this collection was built with embedder {meta['embedder']!r}; set RAG_EMBED_MODEL to it"
            )
        reranker, status = reranker_from_settings(settings)
        llm = open_llm(settings) if with_llm else None
    except BaseException:  # the store must not stay locked by a pipeline that never opened
        store.close()
        raise
    return ChatPipeline(settings, store, embedder, llm, reranker, status)
