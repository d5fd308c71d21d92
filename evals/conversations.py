"""`rag eval` on conversations: each turn asked with the conversation so far, against the same turn asked alone
as written out in full (the ceiling a perfect rewrite would reach).

A conversation set has one conversation a line: {"id": ..., "turns": [TURN, ...]}, a TURN being {"question": what the
user types, "kind": first | switch | follow_up | off_topic | return, "standalone": the question written out so that
it needs no conversation, "sources": gold, "answer": reference, "answerable": bool}. Turns are asked in order; the
history is the pipeline's own answers, as a user would have seen them.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals import metrics
from evals.qa import GoldRef, QAFormatError
from rag.answer import Answer, ChatPipeline, Turn
from rag.store import Hit

KINDS = ("first", "switch", "follow_up", "off_topic", "return")
RANKED = 10  # recall@5 and MRR@10 read the first 10 passages of the turn's search


@dataclass(frozen=True)
class ConversationTurn:
    question: str
    kind: str
    standalone: str
    sources: tuple[GoldRef, ...]
    answer: str | None
    answerable: bool
    section: str | None = None  # the heading of the gold section, where the set names it

    def gold_docs(self) -> set[str]:
        return {ref.source for ref in self.sources}


@dataclass(frozen=True)
class Conversation:
    id: str
    turns: tuple[ConversationTurn, ...]


def is_conversation_file(path: Path) -> bool:
    """Whether the file's first record has turns (a conversation set) rather than a question (a QA set)."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return False  # load_qa reports it with its line
                return isinstance(record, dict) and "turns" in record
    return False


def load_conversations(path: Path) -> list[Conversation]:
    """Every conversation of the file; QAFormatError names the line and the turn of the first problem."""
    conversations: list[Conversation] = []
    with path.open(encoding="utf-8") as lines:
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                conversations.append(_conversation(json.loads(line), lineno))
            except (json.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
                raise QAFormatError(f"{path.name} line {lineno}: {exc}") from None
    return conversations


def _conversation(record: dict[str, Any], lineno: int) -> Conversation:
    turns = record.get("turns")
    if not isinstance(turns, list) or not turns:
        raise ValueError("'turns' must be a non-empty list")
    return Conversation(
        str(record.get("id", f"c{lineno}")), tuple(_turn(t, i) for i, t in enumerate(turns, 1))
    )


def _turn(record: dict[str, Any], n: int) -> ConversationTurn:
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"turn {n}: 'question' must be a non-empty string")
    kind = record.get("kind")
    if kind not in KINDS:
        raise ValueError(f"turn {n}: 'kind' must be one of {', '.join(KINDS)}, not {kind!r}")
    answerable = record.get("answerable", True)
    sources = tuple(GoldRef.parse(s) for s in record.get("sources") or [])
    if answerable and not sources:
        raise ValueError(f"turn {n}: an answerable turn needs its gold 'sources'")
    return ConversationTurn(
        question.strip(),
        kind,
        str(record.get("standalone") or question).strip(),
        sources,
        record.get("answer"),
        bool(answerable),
        record.get("section") or None,
    )


class ConversationEvaluator:
    def __init__(self, pipeline: ChatPipeline, out: Path) -> None:
        self.pipeline = pipeline
        self.searcher = pipeline.searcher
        self.out = out

    def run(self, conversations: list[Conversation], source: Path) -> dict[str, Any]:
        from tqdm import tqdm

        started = time.perf_counter()
        rows: list[dict[str, Any]] = []
        self.out.mkdir(parents=True, exist_ok=True)
        total = sum(len(c.turns) for c in conversations)
        with (
            (self.out / "results.jsonl").open("w") as out,
            tqdm(total=total, desc="turns", unit="turn") as bar,
        ):
            for conversation in conversations:
                history: list[Turn] = []
                for n, turn in enumerate(conversation.turns, 1):
                    row, answer = self._row(conversation.id, n, turn, history)
                    rows.append(row)
                    out.write(json.dumps(row) + "\n")
                    history += [Turn("user", turn.question), Turn("assistant", answer.answer)]
                    bar.update()
        return {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "qa": str(source),
            "conversations": len(conversations),
            "turns": len(rows),
            "collection": self.searcher.collection.store.description,
            "reranker": self.searcher.rerank_status.describe(),
            "answer_mode": self.pipeline.settings.answer_mode,
            "by_kind": summarize_turns(rows),
            "seconds": round(time.perf_counter() - started, 1),
        }

    def _row(
        self, conversation: str, n: int, turn: ConversationTurn, history: list[Turn]
    ) -> tuple[dict[str, Any], Answer]:
        """The turn in its conversation and its standalone form alone: what was searched, the scores of both."""
        answer = self.pipeline.ask(turn.question, history)
        ceiling = self.pipeline.ask(turn.standalone)
        row = {
            "conversation": conversation,
            "turn": n,
            "kind": turn.kind,
            "question": turn.question,
            "standalone": turn.standalone,
            "searched": answer.standalone_question,
            "history_used": answer.history_used,
            "answerable": turn.answerable,
            "gold": sorted(turn.gold_docs()),
            "turn_scores": self._scores(turn, answer, self._ranked(turn.question, history)),
            "ceiling_scores": self._scores(turn, ceiling, self._ranked(turn.standalone, [])),
            "answer": answer.answer,
        }
        return row, answer

    def _ranked(self, question: str, history: list[Turn]) -> list[Hit]:
        """The search the pipeline ran for the question (it is deterministic), down to RANKED passages."""
        return self.pipeline.retrieve(question, history, top_n=RANKED)[1].ranked

    @staticmethod
    def _scores(turn: ConversationTurn, answer: Answer, ranked: list[Hit]) -> dict[str, Any]:
        scores: dict[str, Any] = {"refused": answer.refused}
        if turn.answerable:
            docs = metrics.doc_keys((h.chunk.source, h.chunk.page) for h in ranked)
            scores["recall@5"] = metrics.recall_at_k(docs, turn.gold_docs(), 5)
            scores["mrr@10"] = metrics.mrr_at_k(docs, turn.gold_docs(), 10)
            if turn.section:
                sections = list(dict.fromkeys(section_of(h) for h in ranked))
                scores["section_recall@5"] = metrics.recall_at_k(sections, {_heading(turn.section)}, 5)
                scores["section_mrr@10"] = metrics.mrr_at_k(sections, {_heading(turn.section)}, 10)
            # a refused answerable turn quoted nothing: it scores 0, so a false refusal costs F1 too
            scores["token_f1"] = (
                0.0 if answer.refused or not turn.answer else metrics.token_f1(answer.answer, turn.answer)
            )
        return scores


_SECTION_NUMBER = re.compile(r"^\s*\d+(?:\.\d+)*\.?\s+")  # "7.8. What is..." is the section "What is..."


def _heading(text: str) -> str:
    return " ".join(_SECTION_NUMBER.sub("", text).lower().split())


def section_of(hit: Hit) -> str:
    """The passage's own section: the last heading of its title path ("Chapter 7 › 7.8. What is…"), unnumbered."""
    return _heading((hit.chunk.title or "").split(" › ")[-1])


def summarize_turns(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per turn kind: the turn's scores against the ceiling's, and their ratio for recall@5 and MRR@10."""
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_kind[row["kind"]].append(row)
    summary: dict[str, dict[str, Any]] = {}
    for kind in [k for k in KINDS if k in by_kind]:
        kind_rows = by_kind[kind]
        answerable = [r for r in kind_rows if r["answerable"]]
        unanswerable = [r for r in kind_rows if not r["answerable"]]
        entry: dict[str, Any] = {"turns": len(kind_rows)}
        for key in ("recall@5", "mrr@10", "section_recall@5", "section_mrr@10", "token_f1"):
            turn, ceiling = _mean(answerable, "turn_scores", key), _mean(answerable, "ceiling_scores", key)
            entry[key] = {"turn": turn, "ceiling": ceiling, "ratio": _ratio(turn, ceiling)}
        if answerable:
            entry["false_refusals"] = {
                "turn": sum(r["turn_scores"]["refused"] for r in answerable),
                "ceiling": sum(r["ceiling_scores"]["refused"] for r in answerable),
                "of": len(answerable),
            }
        if unanswerable:
            entry["refused"] = {
                "turn": _share([r["turn_scores"]["refused"] for r in unanswerable]),
                "ceiling": _share([r["ceiling_scores"]["refused"] for r in unanswerable]),
                "of": len(unanswerable),
            }
        summary[kind] = entry
    return summary


def _mean(rows: list[dict[str, Any]], side: str, key: str) -> float | None:
    values = [r[side][key] for r in rows if key in r[side]]
    return round(sum(values) / len(values), 4) if values else None


def _ratio(turn: float | None, ceiling: float | None) -> float | None:
    if turn is None or not ceiling:
        return None
    return round(turn / ceiling, 3)


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 3) if flags else None


def report_lines(summary: dict[str, Any]) -> list[str]:
    """report.md: one row per turn kind, the turn beside its ceiling."""
    lines = [
        f"# Conversations — {summary['qa']}",
        "",
        f"{summary['date']}, {summary['conversations']} conversations, {summary['turns']} turns, "
        f"{summary['collection']}; reranker: {summary['reranker']}; answers: {summary['answer_mode']}.",
        "",
        "Each cell: the turn asked in its conversation / the same turn written out and asked alone (the ceiling).",
        "",
        "Recall@5 and MRR@10 at document level, then at section level (the gold section among the passages' own"
        " headings) where the set names sections.",
        "",
        "| kind | turns | recall@5 | ratio | MRR@10 | ratio | section R@5 | ratio | section MRR@10 | ratio"
        " | token F1 | false refusals | off-topic refused |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, entry in summary["by_kind"].items():
        false = entry.get("false_refusals")
        refused = entry.get("refused")
        ranks = " | ".join(
            f"{_pair(entry[key])} | {_fmt(entry[key]['ratio'])}"
            for key in ("recall@5", "mrr@10", "section_recall@5", "section_mrr@10")
        )
        lines.append(
            f"| {kind} | {entry['turns']} | {ranks} | {_pair(entry['token_f1'])} | "
            + (f"{false['turn']} / {false['ceiling']} of {false['of']}" if false else "")
            + " | "
            + (f"{_fmt(refused['turn'])} / {_fmt(refused['ceiling'])} of {refused['of']}" if refused else "")
            + " |"
        )
    return lines


def _pair(entry: dict[str, Any]) -> str:
    return f"{_fmt(entry['turn'])} / {_fmt(entry['ceiling'])}"


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("" if value is None else str(value))
