"""The chat pipeline: condense the follow-up, search, refuse or prompt, stream, map citations.

Each stage returns its result; the Answer is put together once, at the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from rag import evidence
from rag.citations import attribute, cited_numbers
from rag.collection import Collection
from rag.config import AnswerMode
from rag.conversation import (
    TurnQuery,
    opens_with_ellipsis,
    plan_turn,
    stems,
    topic_words,
    valid_rewrite,
)
from rag.errors import RagError
from rag.grammar import citation_grammar
from rag.llm import LLMClient, Message, open_llm
from rag.prompt import ECHO_STOPS, REFUSAL, Passage, Prompt, build_prompt, is_refusal
from rag.question import check_question
from rag.search import Ranking, Searcher
from rag.store import Hit, SearchFilter
from rag.support import SentenceCheck, check_sentences
from rag.tokens import count

log = logging.getLogger("rag.answer")

SNIPPET_CHARS = 300
# A follow-up searched with its topic's words is answered from passages that hold one of its own words, or are at
# least this close to the question alone (docs/guide.md, "Conversations")
OWN_WORDS_FLOOR = 0.3
RRF_K = 60  # reciprocal rank fusion's usual constant (Cormack et al., 2009), as Qdrant's own fusion uses

SUMMARY_LABEL = "**The model's summary** (it may be wrong; the quotes above are the documents' own words): "

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
    # "model": the LLM wrote [n]; "quoted": the evidence answer quotes it; "similarity": attributed after the fact;
    # "unsupported": the LLM cited it, but no sentence citing it is supported by it
    cited_by: str = "model"
    ocr: bool = False  # the passage was read by OCR from a scan or an image: its words may be misread
    chunk_index: int | None = None  # which of the document's chunks: where a citation opens it

    @classmethod
    def from_passage(cls, passage: Passage) -> Source:
        chunk = passage.hit.chunk
        return cls(
            n=passage.n,
            source=chunk.source,
            page=chunk.page,
            title=chunk.title,
            score=round(passage.hit.relevance, 4),
            text=chunk.text,
            doc_id=chunk.doc_id,
            ocr=chunk.ocr,
            chunk_index=chunk.chunk_index,
        )

    def location(self) -> str:
        """ ", page 2 (OCR)": where in the document, after its name."""
        return (f", page {self.page}" if self.page else "") + (" (OCR)" if self.ocr else "")

    @property
    def snippet(self) -> str:
        text = " ".join(self.text.split())
        return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"


@dataclass
class AnswerTimings:
    """Where an answer's time went, in ms; None for a stage that did not run (no LLM for evidence or a refusal)."""

    retrieve_ms: float = 0.0  # embedding and the first stage
    rerank_ms: float = 0.0
    first_token_ms: float | None = None  # the first piece of the answer, evidence or the model's
    generate_ms: float | None = None  # the model's whole answer
    total_ms: float | None = None

    def as_json(self) -> dict[str, float]:
        return {name: value for name, value in asdict(self).items() if value is not None}


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
    timings: AnswerTimings = field(default_factory=AnswerTimings)
    context: list[Source] = field(default_factory=list)  # every passage the LLM saw
    context_dropped: int = 0
    sentences: list[SentenceCheck] = field(default_factory=list)  # the answer's (or summary's) support check
    history_used: str = (
        ""  # why the search took words from the conversation ("" when it searched the question)
    )

    @property
    def searched_for(self) -> str:
        """What the search read when it was not the question as asked (a follow-up with its topic's words)."""
        return self.standalone_question if self.standalone_question != self.question else ""

    @property
    def unsupported(self) -> list[str]:
        return [c.text for c in self.sentences if not c.supported]

    def as_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "standalone_question": self.standalone_question,
            "history_used": self.history_used,
            "answer": self.answer,
            "refused": self.refused,
            "sources": [asdict(s) for s in self.sources],
            "invalid_citations": self.invalid_citations,
            "reranker": self.reranker,
            "llm": self.llm,
            "timings": self.timings.as_json(),
            "context_dropped": self.context_dropped,
            "sentences": [c.as_json() for c in self.sentences],
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
    """Answers questions from a Searcher's passages with an LLM (None: refusals and search only)."""

    def __init__(self, searcher: Searcher, llm: LLMClient | None) -> None:
        self.searcher = searcher
        self.settings = searcher.settings
        self.llm = llm

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
        mode: str | None = None,
    ) -> Iterator[Status | Token | Answer]:
        """What it is doing, the answer's tokens as they come, then the finished Answer."""
        started = time.perf_counter()
        question = question.strip()
        self._check_length(question)
        yield Status("searching the documents…")
        plan, ranking = self.retrieve(question, history or [], top_k, top_n, rerank, flt)
        standalone = plan.searched
        answer = Answer(question, standalone, reranker=self.searcher.reranker_label(rerank))
        answer.history_used = plan.reason
        answer.llm = asdict(self.llm.info) if self.llm else {}
        answer.timings = _search_timings(ranking)
        prompt = self._prompt(standalone, ranking)
        if prompt is None:
            answer.answer, answer.refused = REFUSAL, True
            yield Token(REFUSAL)
        else:
            chosen = AnswerMode(mode or self.settings.answer_mode)
            yield from self._answer(answer, standalone, prompt, chosen, started)
        answer.timings.total_ms = _ms(started)
        yield answer

    def _answer(
        self, answer: Answer, query: str, prompt: Prompt, mode: AnswerMode, started: float
    ) -> Generator[Status | Token, None, None]:
        """Evidence, the model's answer, or both (evidence first, then the model's summary, labelled)."""
        answer.context = [Source.from_passage(p) for p in prompt.passages]
        answer.context_dropped = prompt.dropped
        quoted = ""
        if mode in (AnswerMode.EVIDENCE, AnswerMode.BOTH):
            quoted = self._evidence(query, prompt, answer)
            answer.timings.first_token_ms = _ms(started)
            yield Token(quoted)
        if mode == AnswerMode.EVIDENCE:
            answer.answer = quoted
            answer.sentences = check_sentences(quoted, _texts(prompt))
            return
        if quoted:
            yield Token(f"\n\n{SUMMARY_LABEL}")
        yield Status(self._generating())
        prompt = self._for_model(prompt)
        if not quoted:  # the passages the answer was drawn from: all of them once evidence quoted any
            answer.context = [Source.from_passage(p) for p in prompt.passages]
        text = yield from self._generate(prompt, answer.timings)
        answer.sentences = check_sentences(text, _texts(prompt))
        if quoted:
            answer.answer = f"{quoted}\n\n{SUMMARY_LABEL}{text}"
            answer.sources += _unsupported_marked(self._cited(text, prompt, answer), answer.sentences)
        else:
            answer.answer = text
            self._fill(answer, text, prompt)

    def _evidence(self, query: str, prompt: Prompt, answer: Answer) -> str:
        """The passages' sentences that answer the query, each cited: right by construction when retrieval is."""
        scorer = evidence.bi_encoder_scorer(self.searcher.collection.embedder.embed)
        chosen = evidence.select(query, list(_texts(prompt).items()), scorer)
        quoted = sorted({u.n for u in chosen})
        by_number = {p.n: p for p in prompt.passages}
        answer.sources = [replace(Source.from_passage(by_number[n]), cited_by="quoted") for n in quoted]
        return evidence.render(chosen)

    # ------------------------------------------------------------------ stages

    def retrieve(
        self,
        question: str,
        history: list[Turn],
        top_k: int | None = None,
        top_n: int | None = None,
        rerank: bool = True,
        flt: SearchFilter | None = None,
    ) -> tuple[TurnQuery, Ranking]:
        """The turn's search (rag.conversation) and its ranking.

        The question is searched alone first. Only a follow-up (a pronoun, an ellipsis, too few words of its own)
        is searched again with the words of its topic (or as the model's validated rewrite, when
        RAG_HISTORY_REWRITE is on): where its own words find nothing relevant, or where it opens with an ellipsis
        ("what about dictionaries?"), and then the two searches are fused, so the conversation never takes away
        what the question finds by itself.
        """
        alone = self.searcher.search(question, top_k, top_n, rerank=rerank, flt=flt)
        if alone.relevant and not opens_with_ellipsis(question):
            return TurnQuery(question, question), alone
        plan = self._plan(question, history)
        if plan.searched == question:
            return TurnQuery(question, question), alone
        ranking = _with_timings_of(
            self.searcher.search(plan.searched, top_k, top_n, rerank=rerank, flt=flt), alone
        )
        if not self._on_topic(question, ranking):
            if alone.relevant:
                return TurnQuery(question, question), alone
            # The turn's own words decide whether it is on topic, not the earlier turn's: "Who won it in 1998?"
            # after a question on packages finds package passages only through the words it borrowed.
            log.info(
                "refusing %r: none of the passages its topic's words found holds its own words", question
            )
            return plan, replace(ranking, ranked=[])
        if alone.relevant:
            return replace(plan, reason=f"{plan.reason}; fused with the question alone"), _fused(
                alone, ranking
            )
        return plan, ranking

    def _on_topic(self, question: str, ranking: Ranking) -> bool:
        """Whether the question's own words reach one of the passages its topic's words found: a passage holds one
        of them, or is at least OWN_WORDS_FLOOR close to the question alone. A question with no word of its own
        ("why is that?") follows its topic."""
        own = stems(topic_words(question))
        relevant = ranking.relevant
        if not own or not relevant:
            return True  # nothing of its own to judge by, or nothing to answer from: refused already
        if any(own & stems(topic_words(h.chunk.text)) for h in relevant):
            return True
        vectors = self.searcher.collection.embedder.embed([question, *(h.chunk.text for h in relevant)])
        return float(np.max(vectors[1:] @ vectors[0])) >= OWN_WORDS_FLOOR

    def _plan(self, question: str, history: list[Turn]) -> TurnQuery:
        """plan_turn's search, or the model's rewrite in its place when asked for and valid."""
        turns = self._trim_history(history)
        plan = plan_turn(question, answered_questions(turns))
        if not plan.context or self.llm is None or not self.settings.history_rewrite:
            return plan
        rewrite = self._rewrite(question, turns).strip().strip('"').strip()
        problem = valid_rewrite(rewrite, question, "\n".join(t.content for t in turns))
        if problem:
            log.info(
                "the model's rewrite %r is not searched (%s); the topic's words are", rewrite[:120], problem
            )
            return plan
        return TurnQuery(question, rewrite, "", f"{plan.reason}; rewritten by the model")

    def _rewrite(self, question: str, turns: list[Turn]) -> str:
        transcript = "\n".join(f"{t.role.capitalize()}: {t.content}" for t in turns)
        messages: list[Message] = [
            {"role": "system", "content": CONDENSE_SYSTEM},
            {
                "role": "user",
                "content": f"Conversation:\n{transcript}\n\nLast question: {question}\n\nRewritten question:",
            },
        ]
        return self.llm.complete(messages, max_tokens=64).strip() if self.llm else ""

    def _check_length(self, question: str) -> None:
        check_question(question, self.settings)

    def _prompt(self, query: str, ranking: Ranking) -> Prompt | None:
        """The prompt over the relevant passages, or None: nothing is relevant enough, refuse."""
        relevant = ranking.relevant
        if not relevant:
            log.info(
                "refusing: best relevance %.3f is under the threshold %.3f%s",
                ranking.best_relevance,
                ranking.threshold,
                ""
                if ranking.dense_threshold is None
                else f", and no passage's dense similarity reaches {ranking.dense_threshold:.3f}",
            )
            return None
        prompt = build_prompt(
            query, relevant, self.settings.llm_context_tokens, self.settings.llm_answer_tokens
        )
        if prompt.dropped:
            log.warning("%d passages did not fit the LLM's context window and were left out", prompt.dropped)
        return prompt

    def _generate(self, prompt: Prompt, timings: AnswerTimings) -> Generator[Token, None, str]:
        """Stream the LLM's tokens; return the whole text. Timings get the model's time, and its first token's
        unless evidence came first."""
        if self.llm is None:
            raise RagError("this pipeline has no LLM: open it with one to answer questions")
        asked = time.perf_counter()
        parts: list[str] = []
        small = prompt.few_shot
        grammar = citation_grammar(len(prompt.passages)) if small and self.settings.llm_cite_grammar else None
        stream = self.llm.stream(
            prompt.messages,
            self.settings.llm_answer_tokens,
            stop=ECHO_STOPS if small else None,
            grammar=grammar,
        )
        for piece in stream:
            if not parts and timings.first_token_ms is None:
                timings.first_token_ms = _ms(asked)
            parts.append(piece)
            yield Token(piece)
        timings.generate_ms = _ms(asked)
        return "".join(parts).strip()

    def _for_model(self, prompt: Prompt) -> Prompt:
        """The small-model prompt for the embedded model (or when set): few-shot, fewer passages, stops."""
        profile = self.settings.llm_prompt
        embedded = self.llm is not None and self.llm.embedded
        if profile == "small" or (profile == "auto" and embedded):
            return prompt.for_small_model(self.settings.small_prompt_passages)
        return prompt

    def _cited(self, text: str, prompt: Prompt, answer: Answer) -> list[Source]:
        """The passages the model's text cites; the numbers it made up go to invalid_citations."""
        by_number = {p.n: p for p in prompt.passages}
        cited = cited_numbers(text)
        answer.invalid_citations = [n for n in cited if n not in by_number]
        return [Source.from_passage(by_number[n]) for n in cited if n in by_number]

    def _fill(self, answer: Answer, text: str, prompt: Prompt) -> None:
        """What the model's answer cites (or is attributed to), and whether it refused."""
        if is_refusal(text):
            answer.refused = True
            answer.sentences = []  # the refusal claims nothing to check
            return
        answer.sources = _unsupported_marked(self._cited(text, prompt, answer), answer.sentences)
        if not answer.sources:
            texts = list(_texts(prompt).values())  # in passage order, as attribute's indexes are
            chosen = attribute(text, texts, self.searcher.collection.embedder)
            answer.sources = [
                replace(Source.from_passage(prompt.passages[i]), cited_by="similarity") for i in chosen
            ]

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


def answered_questions(turns: list[Turn]) -> list[tuple[str, bool]]:
    """The user's questions in order, each with whether the reply to it answered (a refusal or an error did not)."""
    pairs: list[tuple[str, bool]] = []
    for i, turn in enumerate(turns):
        if turn.role == "user":
            after = turns[i + 1] if i + 1 < len(turns) else None
            reply = after.content.strip(" \n_*") if after is not None and after.role == "assistant" else ""
            pairs.append((turn.content, bool(reply) and not is_refusal(reply) and not reply.startswith("⚠")))
    return pairs


def _texts(prompt: Prompt) -> dict[int, str]:
    return {p.n: p.hit.chunk.text for p in prompt.passages}


def _unsupported_marked(sources: list[Source], checks: list[SentenceCheck]) -> list[Source]:
    """A passage cited only by sentences it does not support is not presented as a citation of the answer."""
    backed = {n for c in checks if c.supported for n in c.cites}
    return [s if s.n in backed else replace(s, cited_by="unsupported") for s in sources]


def _fused(alone: Ranking, expanded: Ranking, k: int = RRF_K) -> Ranking:
    """Both rankings' passages in one order by reciprocal rank fusion: a passage both find comes first, and the
    question's own best passages stay near the top (expanding alone moved "Pre-Depends" from 1st to 3rd)."""
    score: dict[str, float] = {}
    hits: dict[str, Hit] = {}
    for ranked in (alone.ranked, expanded.ranked):
        for rank, hit in enumerate(ranked, start=1):
            score[hit.id] = score.get(hit.id, 0.0) + 1.0 / (k + rank)
            hits.setdefault(hit.id, hit)
    order = sorted(score, key=lambda hit_id: -score[hit_id])  # sorted() is stable: ties keep alone's order
    return replace(expanded, ranked=[hits[i] for i in order][: max(len(alone.ranked), len(expanded.ranked))])


def _with_timings_of(kept: Ranking, other: Ranking) -> Ranking:
    """kept, with the other search's time added: the turn took both."""
    return replace(kept, timings=kept.timings + other.timings)


def _search_timings(ranking: Ranking) -> AnswerTimings:
    searched = ranking.timings
    return AnswerTimings(round(searched.embed_ms + searched.search_ms, 1), round(searched.rerank_ms, 1))


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)


def open_chat(collection: Collection, with_llm: bool = True) -> ChatPipeline:
    """The chat pipeline of an open collection: its searcher (with the configured reranker) and the LLM.

    with_llm=False: evidence answers and refusals only (no model server is started).
    """
    collection.embedder.load()  # now, not inside the first question's search time
    llm = open_llm(collection.settings) if with_llm else None
    return ChatPipeline(Searcher.for_collection(collection), llm)
