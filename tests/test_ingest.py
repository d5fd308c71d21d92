from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

import ingest.job
import ingest.parsing
from ingest.job import IngestJob, IngestSummary
from rag.collection import Collection
from rag.config import Settings
from rag.embedder import LocalEmbedder
from rag.store import open_store
from rag.store.payload import DocumentRecord
from tests.conftest import RAG_BIN, REPO, cli_env
from tests.docs_factory import make_corpus, write_pdf


def run_ingest(settings: Settings, root: Path) -> IngestSummary:
    with Collection(settings, create=True) as collection:
        return IngestJob(collection).run(root, progress=False)


def snapshot(settings: Settings) -> dict[str, Any]:
    """Everything a search can see: document records and every chunk, keyed by source."""
    store = open_store(settings)
    try:
        docs = {r.source: (r.content_hash, r.chunks) for r in store.document_records()}
        chunks = sorted(
            (c["source"], c["chunk_index"], c["content_hash"], c["text"])
            for r in store.document_records()
            for c in store.chunks_of(r.doc_id)
        )
        total = store.count_chunks()
    finally:
        store.close()
    return {"docs": docs, "chunks": chunks, "total": total}


def test_every_format_is_ingested_with_its_payload(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder
) -> None:
    root = make_corpus(tmp_path / "corpus")
    summary = run_ingest(settings, root)
    assert summary.added == 7 and not summary.failed and not summary.skipped
    store = open_store(settings)
    try:
        records = {r.source: r for r in store.document_records()}
        assert set(records) == {
            "guide.md", "notes.txt", "manual.rst", "care.html", "report.pdf", "memo.docx", "sub/deeper/nested.md"
        }  # fmt: skip
        assert records["report.pdf"].pages == 2
        pdf_chunks = store.chunks_of(records["report.pdf"].doc_id)
        assert sorted(c["page"] for c in pdf_chunks) == [1, 2]
        html = store.chunks_of(records["care.html"].doc_id)
        assert {c["title"] for c in html} == {"Llama care", "Llama care › Shearing"}
        assert all("<" not in c["text"] for c in html)
        nested = store.chunks_of(records["sub/deeper/nested.md"].doc_id)[0]
        assert nested["dirs"] == ["sub", "sub/deeper"] and nested["file_type"] == "md"
        for key in (
            "doc_id",
            "title",
            "char_start",
            "char_end",
            "chunk_index",
            "content_hash",
            "ingested_at",
        ):
            assert key in nested
    finally:
        store.close()


def test_rerun_is_idempotent_and_embeds_nothing(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder
) -> None:
    root = make_corpus(tmp_path / "corpus")
    run_ingest(settings, root)
    before = snapshot(settings)
    again = run_ingest(settings, root)
    assert (again.added, again.updated, again.chunks, again.unchanged) == (0, 0, 0, 7)
    assert "nothing changed" in again.render()
    os.utime(root / "notes.txt")  # touched but not changed: hashed, still unchanged
    touched = run_ingest(settings, root)
    assert (touched.updated, touched.chunks, touched.unchanged) == (0, 0, 7)
    assert snapshot(settings) == before


def test_changed_file_replaces_chunks_and_removed_file_is_deleted(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder
) -> None:
    root = make_corpus(tmp_path / "corpus")
    run_ingest(settings, root)
    (root / "guide.md").write_text("# Alpaca guide\n\nAlpacas hum when they are curious.\n")
    (root / "notes.txt").unlink()
    summary = run_ingest(settings, root)
    assert (summary.updated, summary.deleted, summary.unchanged) == (1, 1, 5)
    state = snapshot(settings)
    assert "notes.txt" not in state["docs"]
    guide = [c for c in state["chunks"] if c[0] == "guide.md"]
    assert len(guide) == 1 and "hum" in guide[0][3]
    assert state["total"] == len(state["chunks"])  # no orphan or duplicate chunk anywhere


def test_bad_inputs_fail_alone_and_lose_nothing(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder
) -> None:
    root = make_corpus(tmp_path / "corpus")
    run_ingest(settings, root)
    before = snapshot(settings)
    (root / "report.pdf").write_bytes(b"%PDF-1.4 garbage" + bytes(range(256)) * 10)  # a good file goes bad
    (root / "binary.txt").write_bytes(bytes(range(256)) * 40)
    (root / "empty.md").write_text("")
    (root / "latin.txt").write_bytes("Un café à Paris, s'il vous plaît.".encode("latin-1"))
    (root / "image.png").write_bytes(b"\x89PNG\r\n")
    (root / "loop_a.txt").symlink_to(root / "loop_b.txt")
    (root / "loop_b.txt").symlink_to(root / "loop_a.txt")
    (root / "sub" / "back").symlink_to(root, target_is_directory=True)
    summary = run_ingest(settings, root)
    failed = dict(summary.failed)
    assert "PDF" in failed["report.pdf"]
    assert "binary" in failed["binary.txt"]
    assert "symlink loop" in failed["loop_a.txt"] and "symlink loop" in failed["loop_b.txt"]
    assert "symlink loop" in failed["sub/back"]
    assert "corrupt or unreadable image" in failed["image.png"]
    assert dict(summary.skipped) == {"empty.md": "empty file"}
    assert summary.added == 1  # latin.txt
    assert all("\n" not in reason for reason in failed.values())
    after = snapshot(settings)
    assert after["docs"]["report.pdf"] == before["docs"]["report.pdf"]  # the old good version is kept
    assert {k: v for k, v in after["docs"].items() if k != "latin.txt"} == before["docs"]
    latin = [c for c in after["chunks"] if c[0] == "latin.txt"]
    assert "café à Paris" in latin[0][3]


def test_cli_exit_codes_and_unreadable_file(tmp_path: Path) -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="rag-perm-"))  # under /tmp: reachable by the unprivileged user
    tmp_path.chmod(0o777)
    root = make_corpus(tmp_path / "corpus")
    secret = root / "secret.md"
    secret.write_text("# Secret\n\nnot for you\n")
    secret.chmod(0o000)
    data = tmp_path / "data"
    command = [RAG_BIN, "ingest", str(root), "--no-progress"]
    if os.geteuid() == 0:  # root reads anything: drop to nobody so the permission check is real
        for path in (tmp_path, root, *root.rglob("*")):
            if path != secret:
                path.chmod(0o777 if path.is_dir() else 0o666)
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    # torch: the unprivileged user cannot read root's ONNX model cache, and would export the model again
    env = cli_env(data) | {"HOME": str(tmp_path), "RAG_EMBED_BACKEND": "torch"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "FAILED  secret.md: permission denied" in result.stdout
    assert "added 7" in result.stdout
    secret.chmod(0o644)
    if os.geteuid() == 0:
        shutil.chown(secret, 65534, 65534)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "added 1" in result.stdout
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_an_unreadable_subfolder_keeps_its_documents(tmp_path: Path) -> None:
    """A folder that cannot be read is a failure to report, never a removal of what was ingested from it."""
    tmp_path = Path(tempfile.mkdtemp(prefix="rag-perm-"))  # under /tmp: reachable by the unprivileged user
    tmp_path.chmod(0o777)
    sub = tmp_path / "corpus" / "sub"
    sub.mkdir(parents=True)
    (sub / "one.txt").write_text("Alpacas hum when they are content.\n")
    (sub / "two.txt").write_text("Llamas spit when they are annoyed.\n")
    command = [RAG_BIN, "ingest", str(tmp_path / "corpus"), "--no-progress"]
    if os.geteuid() == 0:  # root reads anything: drop to nobody so the permission check is real
        for path in (tmp_path, *tmp_path.rglob("*")):
            path.chmod(0o777 if path.is_dir() else 0o666)
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    env = cli_env(tmp_path / "data") | {"HOME": str(tmp_path), "RAG_EMBED_BACKEND": "torch"}  # as above
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0 and "added 2" in first.stdout, first.stdout + first.stderr
    sub.chmod(0o000)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    sub.chmod(0o777)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "FAILED  sub: permission denied" in again.stdout and "deleted 0," in again.stdout, again.stdout
    docs = subprocess.run([RAG_BIN, "docs", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert sorted(d["source"] for d in json.loads(docs.stdout)) == ["sub/one.txt", "sub/two.txt"]
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_first_ingest_stopped_before_its_record_leaves_no_orphan_chunks(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped after a file's chunks were written but before its record: the next run reconciles them."""
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "keep.md").write_text("# Keep\n\nAlpacas hum when they are content.\n")
    (root / "big.txt").write_text("\n\n".join(f"Paragraph {i} about quokka habits. " * 20 for i in range(10)))

    def stopped(self: object, part: object, base: object) -> None:
        raise KeyboardInterrupt  # what SIGTERM does at that moment

    with monkeypatch.context() as patch:
        patch.setattr(ingest.job._Writer, "_write_record", stopped)
        with pytest.raises(KeyboardInterrupt):
            run_ingest(settings, root)
    interrupted = snapshot(settings)
    assert interrupted["total"] > 0  # chunks were written
    (root / "big.txt").unlink()
    summary = run_ingest(settings, root)
    after = snapshot(settings)
    assert summary.deleted == 1 and "big.txt" not in after["docs"], summary.render()
    assert {c[0] for c in after["chunks"]} == {"keep.md"} and after["total"] == len(after["chunks"])


def test_streamed_file_is_written_in_parts(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest.parsing, "PART_CHUNKS", 4)
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "long.txt").write_text(
        "\n\n".join(f"Paragraph {i}. " + "Words about llamas. " * 30 for i in range(20))
    )
    summary = run_ingest(settings, root)
    state = snapshot(settings)
    assert summary.chunks == state["total"] == state["docs"]["long.txt"][1] > 8
    assert [c[1] for c in state["chunks"]] == list(range(state["total"]))


def test_same_results_through_both_backends(
    tmp_path: Path, settings: Settings, server_settings: Settings, embedder: LocalEmbedder
) -> None:
    from rag.sparse import bm25_query

    root = make_corpus(tmp_path / "corpus")
    for s in (settings, server_settings):
        summary = run_ingest(s, root)
        assert summary.added == 7
    assert snapshot(settings) == snapshot(server_settings)
    query = "what do alpacas eat?"
    results = []
    for s in (settings, server_settings):
        store = open_store(s)
        try:
            dense = store.search_dense(embedder.embed_query(query), 5)
            sparse = store.search_sparse(bm25_query(query), 5)
            hybrid = [
                store.search_hybrid(embedder.embed_query(query), bm25_query(query), 5, sparse_weight=w)
                for w in (1.0, 0.2, 0.0)
            ]
            results.append(
                [
                    [(h.payload["source"], round(h.score, 4)) for h in dense],
                    [h.payload["source"] for h in sparse],
                    *[[(h.payload["source"], round(h.score, 6)) for h in hits] for hits in hybrid],
                ]
            )
        finally:
            store.close()
    assert results[0] == results[1]
    assert results[0][0][0][0] == "guide.md"
    dense_order, weight_zero = [s for s, _ in results[0][0]], [s for s, _ in results[0][4]]
    assert weight_zero == dense_order  # a BM25 weight of 0 leaves the dense order


def test_hybrid_scores_each_candidate_by_both_searches(
    tmp_path: Path, settings: Settings, server_settings: Settings, embedder: LocalEmbedder
) -> None:
    """A passage the dense search ranks high keeps its BM25 score though it is outside BM25's own top list: under
    rank fusion it counted for nothing there, which sank such passages on the reference-page questions."""
    from rag.sparse import bm25_query
    from rag.store.qdrant import convex_fusion

    root = make_corpus(tmp_path / "corpus")
    # herd.txt has the meaning and one of the words; menu.txt the words without the meaning
    (root / "herd.txt").write_text("Alpacas graze in herds on mostly grass.\n")
    (root / "menu.txt").write_text("Eat alpacas? Eat, eat, eat: the alpacas menu.\n")
    query, limit = "what do alpacas eat?", 3
    for s in (settings, server_settings):
        run_ingest(s, root)
        store = open_store(s)
        try:
            dense_vector, sparse_vector = embedder.embed_query(query), bm25_query(query)
            dense, lexical = store.search_dense(dense_vector, 100), store.search_sparse(sparse_vector, 100)
            cosine, bm25 = {h.id: h.dense_score for h in dense}, {h.id: h.score for h in lexical}
            top_dense, top_lexical = dense[:limit], lexical[:limit]
            outside = [h for h in top_dense if h.id not in {x.id for x in top_lexical} and bm25.get(h.id)]
            assert outside, "the corpus must hold a dense hit that BM25 scores but ranks below its top list"
            for h in top_lexical:
                h.dense_score = cosine[h.id]
            want = convex_fusion(top_dense, top_lexical, bm25, 0.2)[:limit]
            got = store.search_hybrid(dense_vector, sparse_vector, limit, sparse_weight=0.2)
            assert [h.id for h in got] == [h.id for h in want]
            assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-4)
        finally:
            store.close()


def test_locked_store_gives_one_line_message(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder
) -> None:
    root = make_corpus(tmp_path / "corpus")
    run_ingest(settings, root)
    holder = open_store(settings)
    try:
        env = cli_env(settings.data_dir)
        result = subprocess.run(
            [RAG_BIN, "docs", "--collection", "test"], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        holder.close()
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "in use by process" in result.stderr
    assert "Traceback" not in result.stderr


def test_pdf_with_many_pages_records_page_count(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder
) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    write_pdf(root / "book.pdf", [f"Chapter {i} is about animal number {i}." for i in range(1, 6)])
    run_ingest(settings, root)
    (record,) = snapshot_records(settings)
    assert record.pages == 5


def snapshot_records(settings: Settings) -> list[DocumentRecord]:
    store = open_store(settings)
    try:
        return store.document_records()
    finally:
        store.close()


# `rag ingest ...` in a fresh interpreter, then which model libraries that run imported.
LOAD_PROBE = (
    "import sys; from cli.main import main; code = main(sys.argv[1:]); "
    "print('models imported:', sorted({'torch', 'sentence_transformers', 'onnxruntime'} & set(sys.modules))); "
    "sys.exit(code)"
)


def probe_ingest(root: Path, data: Path, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", LOAD_PROBE, "ingest", str(root), "--no-progress"]
    return subprocess.run(
        command, env=cli_env(data) | env, cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_unchanged_rerun_loads_no_model(tmp_path: Path) -> None:
    root = make_corpus(tmp_path / "corpus")
    data = tmp_path / "data"
    first = probe_ingest(root, data)
    assert first.returncode == 0, first.stderr
    assert "'onnxruntime'" in first.stdout  # the probe sees a load (the default backend's runtime)
    assert "scanning" not in first.stderr and "chunks" not in first.stderr  # --no-progress shows none
    again = probe_ingest(root, data)
    assert again.returncode == 0, again.stderr
    assert "unchanged 7" in again.stdout and "models imported: []" in again.stdout
    assert again.stderr == ""  # --no-progress: not a word beyond the summary
    other = probe_ingest(root, data, RAG_EMBED_MODEL="some-other-embedder")
    assert other.returncode == 2
    assert "built with embedder 'packaged:all-MiniLM-L6-v2', not 'some-other-embedder'" in other.stderr
    assert "models imported: []" in other.stdout  # the mismatch is found from the name alone


def test_each_document_records_when_it_was_written(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest.job, "EMBED_GROUP_BATCHES", 1)
    settings = settings.model_copy(update={"embed_batch_size": 1})  # one chunk per write: one file each
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.md").write_text("# Alpacas\n\nAlpacas hum when they are curious.\n")
    (root / "b.md").write_text("# Llamas\n\nLlamas guard sheep.\n")

    def slow_first_file(done: int, total: int) -> None:
        if done == 1:
            time.sleep(1.1)  # ingested_at has whole seconds

    with Collection(settings, create=True) as collection:
        store = collection.store
        IngestJob(collection).run(root, progress=False, on_file=slow_first_file)
        records = store.document_records()
        chunk_times = {c["ingested_at"] for r in records for c in store.chunks_of(r.doc_id)}
    record_times = {r.ingested_at for r in records}
    assert len(records) == 2 and len(record_times) == 2
    assert chunk_times == record_times  # a document's chunks carry its own time


def test_a_reader_that_stops_early_is_not_an_error(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder
) -> None:
    """`rag docs --json | head -1`: the closed pipe ends the listing quietly, exit 0, not "error: Broken pipe"."""
    run_ingest(settings, make_corpus(tmp_path / "corpus"))
    reader_gone = subprocess.Popen(
        [RAG_BIN, "docs", "--json", "--collection", "test"],
        env=cli_env(settings.data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader_gone.stdout is not None and reader_gone.stderr is not None
    reader_gone.stdout.close()  # before the listing is written: its first write finds no reader
    assert reader_gone.wait(timeout=120) == 0
    assert reader_gone.stderr.read() == b""


def test_a_file_name_with_a_newline_stays_on_its_row_of_the_docs_table(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder
) -> None:
    from cli.commands import _docs_table
    from rag.collection import Collection

    root = tmp_path / "corpus"
    root.mkdir()
    (root / "two\nlines.md").write_text("# Odd name\n\nAlpacas hum when they are content.\n")
    (root / "plain.md").write_text("# Plain\n\nLlamas spit when they are annoyed.\n")
    run_ingest(settings, root)
    with Collection(settings) as collection:
        table = _docs_table(collection.documents()).splitlines()
    assert len(table) == 4, table  # header, two documents, total
    assert any(line.startswith("two\\nlines.md ") for line in table), table


def test_ingesting_a_missing_folder_creates_no_collection(tmp_path: Path) -> None:
    """It said "is not a folder" but left collections/<name>/.lock behind, a collection the UI then listed."""
    data = tmp_path / "data"
    result = subprocess.run(
        [RAG_BIN, "ingest", str(tmp_path / "missing"), "--collection", "new"],
        env=cli_env(data),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'missing'} is not a folder"
    assert not (data / "collections" / "new").exists()


@pytest.mark.parametrize("command", [["ask", "what?"], ["docs"], ["train-reranker", "--minutes", "1"]])
def test_a_missing_collection_is_one_line_and_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    data = tmp_path / "data"
    result = subprocess.run(
        [RAG_BIN, *command, "--collection", "nope"],
        env=cli_env(data),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: there is no collection 'nope' yet")
    assert not (data / "collections" / "nope").exists()
