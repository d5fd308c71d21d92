"""Rated answers as a QA set for `rag eval`: a team's own thumbs become its regression test.

A thumbs-up answer becomes a question whose gold sources are the ones the answer cited (a refusal given a thumbs-up,
an unanswerable question); a thumbs-down keeps the question as answerable with no gold yet (`needs_gold`: what a
person fills in), and what was wrong with it (the answer given, the passages, the note) beside it. Extra fields are
ignored by the QA loader (evals/qa.py), so the file is both the dev set and the record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evals.qa import GoldRef, QAItem
from service.conversations import ConversationStore, Rated


def qa_record(rated: Rated) -> dict[str, Any]:
    answer = rated.answer
    refused = bool(answer.get("refused"))
    cited = [_gold(s) for s in answer.get("sources", [])]
    liked = rated.rating > 0
    cited_n = {s.get("n") for s in answer.get("sources", [])}
    item = QAItem(
        id=f"feedback-{rated.message_id}",
        question=rated.question,
        answer=answer.get("answer") if liked and not refused else None,
        sources=list(dict.fromkeys(cited)) if liked and not refused else [],
        answerable=not (liked and refused),
    )
    return item.to_json() | {
        "rating": rated.rating,
        "note": rated.note,
        # a thumbs-up on a reply that cites nothing and is no refusal (a failure said in the chat) is no gold either
        "needs_gold": not liked or (not refused and not cited),
        "given_answer": answer.get("answer", ""),
        "searched_for": answer.get("standalone_question", rated.question),
        "passages": [
            {
                "n": s.get("n"),
                "source": str(_gold(s)),
                "cited": s.get("n") in cited_n,
                "text": s.get("text", ""),
            }
            for s in answer.get("context") or answer.get("sources", [])
        ],
        "collection": rated.collection,
        "conversation": rated.conversation_id,
        "rated_at": rated.rated_at,
    }


def export_feedback(
    store: ConversationStore, path: Path, collection: str | None = None
) -> list[dict[str, Any]]:
    """Every rated answer (of the collection, if given) written to path as JSONL; the records."""
    records = [qa_record(r) for r in store.rated(collection) if r.question.strip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return records


def _gold(source: dict[str, Any]) -> GoldRef:
    return GoldRef(str(source.get("source", "")), source.get("page") or None)
