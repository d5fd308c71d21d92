"""The saved-conversation store on a real SQLite file: owners kept apart, migrations, a bad file, feedback export."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from evals.qa import load_qa
from service import appdb, conversations
from service.appdb import MIGRATIONS
from service.conversations import (
    ConversationNotFound,
    ConversationStore,
    ConversationStoreError,
)
from service.feedback import export_feedback

ANSWER = {
    "answer": "Alpacas eat grass and hay. [1]",
    "refused": False,
    "standalone_question": "What do alpacas eat?",
    "sources": [{"n": 1, "source": "guide.md", "page": None, "text": "Alpacas eat grass and hay."}],
    "context": [
        {"n": 1, "source": "guide.md", "page": None, "text": "Alpacas eat grass and hay."},
        {"n": 2, "source": "report.pdf", "page": 2, "text": "Page two talks about the Andes condor."},
    ],
}


def test_conversations_are_per_owner_newest_first_and_found_by_the_start_of_their_id(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "app.db")
    first = store.create("", "docs", "What do alpacas eat?")
    store.add_turn("", first, "What do alpacas eat?", "Grass. [1]")
    second = store.create("", "docs", "  Where   do vicunas live?  " + "x" * 100)
    theirs = store.create("bob", "docs", "Bob's question")
    assert [c.id for c in store.conversations("")] == [second, first]
    assert (
        store.conversations("")[0].title.startswith("Where do vicunas live? xxx")
        and len(store.conversations("")[0].title) == conversations.TITLE_CHARS
    )
    store.add_turn("", second, "Where do vicunas live?", "In the Andes. [1]")
    assert [c.id for c in store.conversations("")] == [second, first]  # continued last: listed first
    store.add_turn("", first, "And llamas?", "Hay. [1]")
    assert [c.id for c in store.conversations("")] == [first, second]
    assert [m.content for m in store.messages("", first[:6])] == [
        "What do alpacas eat?",
        "Grass. [1]",
        "And llamas?",
        "Hay. [1]",
    ]
    assert [c.id for c in store.conversations("bob")] == [theirs]
    with pytest.raises(ConversationNotFound):
        store.messages("bob", first)  # another login's conversation is not found, not shown
    with pytest.raises(ConversationNotFound):
        store.get("", "")
    store.rename("", first, "  Alpaca   food ")
    assert store.get("", first).title == "Alpaca food"
    store.delete("", first)
    assert [c.id for c in store.conversations("")] == [second]
    with sqlite3.connect(tmp_path / "app.db") as db:  # its messages went with it
        assert db.execute("SELECT count(*) FROM messages WHERE conversation_id = ?", (first,)).fetchone() == (
            0,
        )


def test_a_database_from_before_feedback_is_migrated_and_keeps_its_conversations(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:  # what the first version of the schema left
        db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
        db.execute("INSERT INTO conversations VALUES ('c1', '', 'docs', 'Old one', 't0', 't0')")
        db.execute(
            "INSERT INTO messages (conversation_id, role, content, created_at) VALUES ('c1', 'assistant', 'A', 't0')"
        )
    store = ConversationStore(path)
    assert [c.title for c in store.conversations("")] == ["Old one"]
    store.rate("", store.messages("", "c1")[0].id, -1, "old but wrong")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)


def test_a_corrupt_locked_or_newer_database_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not a database " * 100)
    with pytest.raises(ConversationStoreError, match="file is not a database"):
        ConversationStore(corrupt).conversations("")
    assert corrupt.read_bytes() == b"not a database " * 100  # left as it was, for its owner to look at

    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(ConversationStoreError, match="newer version of this app"):
        ConversationStore(newer).conversations("")

    monkeypatch.setattr(appdb, "LOCK_WAIT_S", 0.2)
    locked = ConversationStore(tmp_path / "locked.db")
    conversation = locked.create("", "docs", "Q?")
    holder = sqlite3.connect(tmp_path / "locked.db")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ConversationStoreError, match="locked"):
            locked.add_turn("", conversation, "Q?", "A.")
    finally:
        holder.rollback()
        holder.close()
    locked.add_turn("", conversation, "Q?", "A.")  # free again: works
    assert len(locked.messages("", conversation)) == 2


def test_rated_answers_export_as_a_qa_file_rag_eval_reads(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "app.db")
    conversation = store.create("", "docs", "What do alpacas eat?")
    liked = store.add_turn("", conversation, "What do alpacas eat?", ANSWER["answer"], ANSWER)
    refused = {**ANSWER, "answer": "The documents do not contain the answer.", "refused": True, "sources": []}
    disliked = store.add_turn("", conversation, "Where do alpacas sleep?", refused["answer"], refused)
    store.add_turn("", conversation, "Not rated?", "No.", ANSWER)
    store.rate("", liked, -1, "first impression")
    store.rate("", liked, 1)  # rating again replaces the rating and the note
    store.rate("", disliked, -1, "the guide says they sleep in barns")
    with pytest.raises(ConversationNotFound):
        store.rate("bob", liked, 1)  # not bob's answer
    other = store.create("", "elsewhere", "Q?")
    store.rate("", store.add_turn("", other, "Q?", "A.", ANSWER), 1)

    records = export_feedback(store, tmp_path / "out" / "feedback.jsonl", "docs")
    items = {i.id: i for i in load_qa(tmp_path / "out" / "feedback.jsonl")}
    assert [r["rating"] for r in records] == [1, -1]  # the other collection's is not in this export
    good, bad = items[f"feedback-{liked}"], items[f"feedback-{disliked}"]
    assert (good.question, [str(s) for s in good.sources], good.answer) == (
        "What do alpacas eat?",
        ["guide.md"],
        ANSWER["answer"],
    )
    assert bad.answerable and not bad.sources and bad.answer is None
    assert records[0]["note"] == "" and not records[0]["needs_gold"]
    assert records[1]["note"] == "the guide says they sleep in barns" and records[1]["needs_gold"]
    assert [p["source"] for p in records[1]["passages"]] == ["guide.md", "report.pdf#page=2"]
    assert records[1]["searched_for"] == "What do alpacas eat?"


def test_a_turn_in_a_conversation_deleted_in_another_tab_starts_a_new_one(tmp_path: Path) -> None:
    from service.accounts import OPEN
    from ui.conversations import ConversationPanel

    store = ConversationStore(tmp_path / "app.db")
    panel = ConversationPanel(store, lambda _user: OPEN)
    first, listed, note = panel.save_turn("", "", "docs", ("Q1?", "A1."), None, "")
    assert note == "" and [c.id for c in store.conversations("")] == [first]
    store.delete("", first)  # the other tab
    second, listed, note = panel.save_turn("", first, "docs", ("Q2?", "A2."), None, "")
    assert second != first and note == ""
    assert [(c.title, c.messages) for c in store.conversations("")] == [("Q2?", 2)]
    assert listed["value"] == second and listed["choices"] == [("Q2?", second)]
