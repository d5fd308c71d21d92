"""A document is its file's content at one path: moving, re-rooting or copying a folder never makes a second one."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ingest.job import IngestJob, IngestSummary
from rag.collection import Collection
from rag.config import Settings
from rag.embedder import LocalEmbedder
from rag.sparse import bm25_document, bm25_query
from rag.store import PointData, open_store
from rag.store.base import chunk_id, document_id
from rag.store.payload import ChunkPayload
from tests.conftest import RAG_BIN, cli_env

DOCS = {
    "alpacas.md": "# Alpacas\n\nAlpacas hum when they are curious about {topic}.\n",
    "llamas.md": "# Llamas\n\nLlamas guard sheep from foxes and {topic}.\n",
    "sub/quokkas.md": "# Quokkas\n\nQuokkas live on Rottnest Island near {topic}.\n",
}


def write_docs(folder: Path, topic: str = "the fence") -> Path:
    """Three small Markdown documents, one in a subfolder; `topic` makes one folder's content differ from another's."""
    for name, text in DOCS.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(topic=topic))
    return folder


def run_ingest(settings: Settings, root: Path) -> IngestSummary:
    with Collection(settings, create=True) as collection:
        return IngestJob(collection).run(root, progress=False)


def state(settings: Settings) -> dict[str, Any]:
    """Each document by its full path, and every chunk with what shows whether it was written again."""
    store = open_store(settings)
    try:
        records = store.document_records()
        docs = {f"{r.root}/{r.source}": (r.doc_id, r.content_hash, r.chunks) for r in records}
        chunks = sorted(
            (c["root"], c["source"], c["chunk_index"], c["text"], c["ingested_at"])
            for r in records
            for c in store.chunks_of(r.doc_id)
        )
        return {"docs": docs, "chunks": chunks, "total": store.count_chunks()}
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["settings", "server_settings"], ids=["edge", "server"])
def test_a_moved_folder_is_the_same_documents_at_their_new_path_without_embedding(
    tmp_path: Path, embedder: LocalEmbedder, backend: str, request: pytest.FixtureRequest
) -> None:
    # The chunks' path is set by a filter, which each engine translates on its own.
    settings: Settings = request.getfixturevalue(backend)
    root = write_docs(tmp_path / "in" / "ds")
    assert run_ingest(settings, root).added == 3
    before = state(settings)
    moved = root.rename(tmp_path / "in" / "ds_moved")
    with Collection(settings) as collection:
        summary = IngestJob(collection).run(moved, progress=False)
        assert not collection.embedder.loaded, "a moved file was embedded again"
    assert (summary.added, summary.deleted, summary.chunks) == (0, 0, 0), summary.render()
    assert summary.moved == 3 and "moved 3" in summary.render()
    after = state(settings)
    assert sorted(after["docs"]) == [f"{moved}/{name}" for name in sorted(DOCS)]
    assert sorted(after["docs"].values()) == sorted(before["docs"].values())  # same ids, same content
    assert after["total"] == before["total"] == len(after["chunks"])
    assert [c[2:] for c in after["chunks"]] == [c[2:] for c in before["chunks"]]  # not rewritten: same time
    assert {c[0] for c in after["chunks"]} == {str(moved)}
    assert_each_passage_once(settings, embedder, "Where do quokkas live?", moved)


def assert_each_passage_once(settings: Settings, embedder: LocalEmbedder, question: str, root: Path) -> None:
    store = open_store(settings)
    try:
        hits = store.search_hybrid(embedder.embed_query(question), bm25_query(question), limit=20)
    finally:
        store.close()
    texts = [h.payload["text"] for h in hits]
    assert len(texts) == len(set(texts)) == len(DOCS), texts
    assert {h.payload["root"] for h in hits} == {str(root)}
    assert hits[0].payload["source"] == "sub/quokkas.md"


@pytest.mark.parametrize("order", [("in", "in/sub"), ("in/sub", "in")], ids=["sub-after", "parent-after"])
def test_a_folder_and_its_subfolder_ingested_in_turn_hold_each_file_once(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder, order: tuple[str, str]
) -> None:
    write_docs(tmp_path / "in")
    first, second = (tmp_path / name for name in order)
    run_ingest(settings, first)
    summary = run_ingest(settings, second)
    assert summary.deleted == 0 and summary.unchanged == 1, summary.render()
    assert summary.added == (0 if second.name == "sub" else 2), summary.render()
    after = state(settings)
    assert sorted(after["docs"]) == sorted(f"{tmp_path / 'in'}/{name}" for name in DOCS)
    assert after["total"] == len(after["chunks"]) == len({c[3] for c in after["chunks"]})


def test_a_file_recorded_twice_by_an_earlier_version_is_left_once_by_the_next_ingest(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder
) -> None:
    root = write_docs(tmp_path / "in")
    run_ingest(settings, root)
    before = state(settings)
    record_again_under(settings, embedder, root, "sub")  # what ingesting in/sub did before paths were the key
    assert len(state(settings)["docs"]) == 3 and state(settings)["total"] == before["total"] + 1
    summary = run_ingest(settings, root / "sub")
    assert (summary.added, summary.deleted, summary.unchanged) == (0, 1, 1), summary.render()
    assert state(settings) == before


def record_again_under(settings: Settings, embedder: LocalEmbedder, root: Path, sub: str) -> None:
    """Each document under root/sub written a second time as the old version did: keyed by root/sub and the
    path below it, its own doc_id, record and chunks."""
    store = open_store(settings)
    try:
        for record in [r for r in store.document_records() if r.source.startswith(f"{sub}/")]:
            source = record.source.removeprefix(f"{sub}/")
            # dirs as path_fields makes them for a file at most one folder below sub, as the test's files are
            paths = {"root": f"{root}/{sub}", "source": source, "dirs": source.split("/")[:-1]}
            doc_id = document_id(paths["root"], paths["source"])
            chunks = [{**c, **paths, "doc_id": doc_id} for c in store.chunks_of(record.doc_id)]
            passages = [ChunkPayload.from_payload(c).passage() for c in chunks]
            points = [
                PointData(
                    chunk_id(doc_id, c["content_hash"], c["chunk_index"]),
                    c,
                    list(map(float, v)),
                    bm25_document(p),
                )
                for c, v, p in zip(chunks, embedder.embed(passages), passages, strict=True)
            ]
            store.upsert([*points, PointData(doc_id, {**record.to_payload(), **paths, "doc_id": doc_id})])
    finally:
        store.close()


def test_a_subfolder_ingest_updates_and_deletes_the_files_the_parent_ingest_recorded(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder
) -> None:
    root = write_docs(tmp_path / "in")
    (root / "sub" / "wombats.md").write_text("# Wombats\n\nWombats dig burrows.\n")
    run_ingest(settings, root)
    (root / "sub" / "quokkas.md").write_text("# Quokkas\n\nQuokkas smile for photographs.\n")
    (root / "sub" / "wombats.md").unlink()
    summary = run_ingest(settings, root / "sub")
    assert (summary.added, summary.updated, summary.deleted) == (0, 1, 1), summary.render()
    after = state(settings)
    assert sorted(after["docs"]) == sorted(f"{root}/{name}" for name in DOCS)
    assert any("photographs" in c[3] for c in after["chunks"])
    assert after["total"] == len(after["chunks"]) == 3


def test_the_same_content_at_two_live_paths_is_one_document_and_reported(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder
) -> None:
    root = write_docs(tmp_path / "in")
    (root / "twin").mkdir()
    shutil.copy2(root / "llamas.md", root / "twin" / "llamas.md")  # two copies in a first ingest
    first = run_ingest(settings, root)
    assert first.added == 3 and first.skipped == [("twin/llamas.md", "same content as llamas.md")]
    assert "skipped twin/llamas.md: same content as llamas.md" in first.render()
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy2(root / "alpacas.md", other / "alpacas.md")  # a copy outside the ingested folder
    outside = run_ingest(settings, other)
    assert outside.added == 0 and outside.skipped == [("alpacas.md", f"same content as {root}/alpacas.md")]
    assert len(state(settings)["docs"]) == 3
    (root / "llamas.md").unlink()  # the copy takes over: a move, not a new embedding
    after = run_ingest(settings, root)
    assert (after.added, after.moved, after.deleted, after.chunks) == (0, 1, 0, 0), after.render()
    assert f"{root}/twin/llamas.md" in state(settings)["docs"] and len(state(settings)["docs"]) == 3


def test_a_move_stopped_before_its_record_is_finished_by_the_next_run(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the chunks got the new path but before the record did: the next run moves it again."""
    root = write_docs(tmp_path / "ds")
    run_ingest(settings, root)
    moved = root.rename(tmp_path / "ds_moved")

    def stopped(*args: object) -> None:
        raise KeyboardInterrupt  # what SIGTERM does at that moment

    with monkeypatch.context() as patch:
        patch.setattr(IngestJob, "_record_move", stopped)
        with pytest.raises(KeyboardInterrupt):
            run_ingest(settings, moved)
    summary = run_ingest(settings, moved)
    assert (summary.added, summary.moved, summary.chunks) == (0, 3, 0), summary.render()
    after = state(settings)
    assert sorted(after["docs"]) == [f"{moved}/{name}" for name in sorted(DOCS)]
    assert after["total"] == len(after["chunks"]) and {c[0] for c in after["chunks"]} == {str(moved)}
    assert_each_passage_once(settings, embedder, "Where do quokkas live?", moved)


def rag(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RAG_BIN, *args, "--collection", "test"], env=env, capture_output=True, text=True, timeout=300
    )


def test_rag_docs_prune_lists_documents_whose_files_are_gone_then_removes_them_with_yes(
    tmp_path: Path, settings: Settings
) -> None:
    keep = write_docs(tmp_path / "keep")
    gone = write_docs(tmp_path / "gone", topic="the river")
    env = cli_env(settings.data_dir)
    for folder in (keep, gone):
        ingested = rag(env, "ingest", str(folder), "--no-progress")
        assert ingested.returncode == 0 and "added 3" in ingested.stdout, ingested.stdout + ingested.stderr
    shutil.rmtree(gone)
    dry = rag(env, "docs", "--prune")
    assert dry.returncode == 0, dry.stderr
    listed = [line.strip() for line in dry.stdout.splitlines() if line.startswith("  ")]
    assert listed == [f"{gone}/{name}" for name in sorted(DOCS)], dry.stdout
    assert "nothing removed" in dry.stdout and "rag docs --prune --yes" in dry.stdout
    assert len(json.loads(rag(env, "docs", "--json").stdout)) == 6
    removed = rag(env, "docs", "--prune", "--yes")
    assert removed.returncode == 0 and "removed 3 documents" in removed.stdout, (
        removed.stdout + removed.stderr
    )
    docs = json.loads(rag(env, "docs", "--json").stdout)
    assert sorted((d["root"], d["source"]) for d in docs) == [(str(keep), name) for name in sorted(DOCS)]
    assert sum(d["chunks"] for d in docs) == state(settings)["total"]  # the points went with the records
    again = rag(env, "docs", "--prune", "--yes")
    assert again.returncode == 0 and "nothing to remove" in again.stdout, again.stdout


def test_the_ui_removes_documents_whose_files_are_gone_after_a_confirm_step(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder
) -> None:
    from ui.app import ChatApp

    gone = write_docs(tmp_path / "gone")
    run_ingest(settings, gone)
    run_ingest(settings, write_docs(tmp_path / "keep", topic="the river"))
    shutil.rmtree(gone)
    app = ChatApp(settings)
    try:
        row, question, _ = app.confirm_prune("test")
        assert row["visible"] and "3 documents" in question and "quokkas.md" in question
        assert len(app.service.documents("test")) == 6  # asking removes nothing
        message, rows, _ = app.prune("test")
        assert "Removed 3 documents" in message and len(rows) == 3
        assert {r[0] for r in rows} == set(DOCS)
        row, _, message = app.confirm_prune("test")
        assert not row["visible"] and "nothing to remove" in message
    finally:
        app.service.close()
