"""What `rag ingest` shows while it works: chunks embedded batch by batch, files done, nothing when off."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest

from ingest.job import ingest_folder
from rag.config import Settings
from rag.embedder import LocalEmbedder
from tests.docs_factory import make_corpus


def test_embed_reports_each_batch_and_keeps_the_order(embedder: LocalEmbedder) -> None:
    small_batches = copy.copy(embedder)  # the same loaded model, two texts a batch
    small_batches.batch_size = 2
    texts = [f"Note {i}: the llama " + "eats grass and hums " * (7 - i) for i in range(7)]
    texts.reverse()  # shortest first, so the callback path has to reorder
    batches: list[int] = []
    vectors = small_batches.embed(texts, on_batch=batches.append)
    assert batches == [2, 2, 2, 1]
    np.testing.assert_allclose(vectors, small_batches.embed(texts), atol=1e-3)
    assert [int(np.argmax(vectors @ v)) for v in small_batches.embed(texts)] == list(range(len(texts)))


def test_progress_counts_chunks_and_files(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_corpus(tmp_path / "corpus").resolve()
    summary = ingest_folder(settings, root, progress=True)
    err = capsys.readouterr().err
    assert err.startswith(f"scanning {root}…\n7 files to ingest (0 unchanged); loading the embedder…\n")
    counts = re.findall(r"(\d+)/(\d+) \[", err)
    assert counts and counts[-1] == (str(summary.chunks), str(summary.chunks))
    assert "chunks/s" in err and "files 7/7" in err

    again = ingest_folder(settings, root, progress=True)
    assert again.unchanged == 7
    assert capsys.readouterr().err == f"scanning {root}…\n0 files to ingest (7 unchanged)\n"


def test_into_a_log_the_notes_and_a_line_a_minute_replace_the_bar(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """stderr is not a terminal here (pytest captures it): a run sent to a log used to print nothing at all."""
    import ingest.progress

    monkeypatch.setattr(ingest.progress, "LOG_EVERY_S", 0.0)  # every batch due, as if each took a minute
    root = make_corpus(tmp_path / "corpus").resolve()
    summary = ingest_folder(settings, root)
    err = capsys.readouterr().err
    assert err.startswith(f"scanning {root}…\n7 files to ingest (0 unchanged); loading the embedder…\n")
    assert "\r" not in err and "chunks/s" not in err  # no bar
    lines = re.findall(r"embedded (\d+) of (\d+) chunks found so far, files \d+/7", err)
    assert lines and int(lines[-1][0]) <= summary.chunks
    ingest_folder(settings, root, progress=False)
    assert capsys.readouterr().err == ""
