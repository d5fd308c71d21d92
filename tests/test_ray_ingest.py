"""`rag ingest --ray` on a local Ray cluster (`ray start --head` on 127.0.0.1 with two CPUs: two worker processes),
against a plain `rag ingest` of the same folder: the same documents, chunk ids, payloads and vectors; an unchanged
rerun changes nothing; a changed file is updated and a deleted one removed, as in a plain run.

Both runs embed with RAG_EMBED_BACKEND=onnx (fp32): the default int8 model quantizes each batch's activations
with one scale, so a chunk's vector moves with its batch-mates (up to 0.03 in a coordinate, cosine 0.986, measured
2026-12-04 on the Debian FAQ), and Ray's batches are not the plain run's. fp32 vectors do not depend on them.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.collection import Collection
from rag.config import Settings
from tests.conftest import RAG_BIN, cli_env, free_port
from tests.docs_factory import make_corpus

pytestmark = pytest.mark.slow  # a Ray cluster starts (about 10 s) and both runs embed

RAY_BIN = str(Path(sys.executable).with_name("ray"))
ENV = {"RAG_EMBED_BACKEND": "onnx", "RAG_CHUNK_TOKENS": "48", "RAG_CHUNK_OVERLAP": "8"}
# Token authentication, with a token of its own: the same whether or not the machine has a ~/.ray/auth_token.
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head node on loopback; stopped after (`ray stop` stops every Ray on the machine: CI runs none other)."""
    port = free_port()
    start = [RAY_BIN, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2"]
    start += ["--include-dashboard=false", "--disable-usage-stats"]
    started = subprocess.run(start, env=os.environ | RAY_ENV, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(
            [RAY_BIN, "stop", "--force"], env=os.environ | RAY_ENV, capture_output=True, timeout=120
        )


def _folder(root: Path) -> Path:
    """Every format, a file long enough to reach the writer in two parts (over 256 chunks), and a broken PDF."""
    docs = make_corpus(root / "docs")
    sentences = [
        f"Note {i}: the herd of alpacas number {i} grazes by lake {i % 17} in spring." for i in range(1200)
    ]
    (docs / "long.txt").write_text("\n".join(sentences) + "\n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a PDF at all")
    return docs


def _ingest(data: Path, collection: str, docs: Path, *extra: str) -> dict[str, Any]:
    env = cli_env(data) | ENV | RAY_ENV | {"RAG_COLLECTION": collection}
    run = subprocess.run(
        [RAG_BIN, "ingest", str(docs), "--json", "--no-progress", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode in (0, 1), run.stderr[-3000:]  # 1: a file failed (the broken PDF)
    summary: dict[str, Any] = json.loads(run.stdout)
    return summary


def _contents(data: Path, collection: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Records by doc id, chunk payloads by point id, vectors by point id; when-ingested left out."""
    with Collection(Settings(data_dir=data, collection=collection, embed_backend="onnx")) as opened:
        store = opened.store
        records = {r.doc_id: r.to_payload() for r in store.document_records()}
        chunks, vectors = {}, {}
        for doc_id in records:
            for payload in store.chunks_of(doc_id):
                chunks[f"{doc_id}:{payload['chunk_index']}"] = payload
            vectors.update({k: np.asarray(v) for k, v in store.chunk_vectors(doc_id).items()})
    for payload in [*records.values(), *chunks.values()]:
        payload.pop("ingested_at", None)
    return records, chunks, vectors


def _same(data: Path) -> tuple[int, int]:
    """The two collections hold the same documents, chunks and vectors; (documents, chunks)."""
    plain_records, plain_chunks, plain_vectors = _contents(data, "plain")
    ray_records, ray_chunks, ray_vectors = _contents(data, "onray")
    assert ray_records == plain_records
    assert ray_chunks == plain_chunks
    assert ray_vectors.keys() == plain_vectors.keys() and len(plain_vectors) == len(plain_chunks)
    worst = max(float(np.abs(ray_vectors[k] - plain_vectors[k]).max()) for k in plain_vectors)
    assert worst < 1e-3, worst
    return len(plain_records), len(plain_chunks)


def test_ray_ingestion_matches_a_plain_run(tmp_path: Path, cluster: str) -> None:
    data, docs = tmp_path / "data", _folder(tmp_path)
    plain = _ingest(data, "plain", docs)
    on_ray = _ingest(data, "onray", docs, "--ray", cluster, "--ray-workers", "2")
    for key in ("added", "chunks_written", "failed_files", "skipped_files"):
        assert on_ray[key] == plain[key], key
    assert plain["added"] >= 8 and [f["source"] for f in plain["failed_files"]] == ["broken.pdf"]
    documents, chunks = _same(data)
    assert documents == plain["added"] and chunks > 256 + 8

    again = _ingest(data, "onray", docs, "--ray", cluster)
    done = (again["added"], again["updated"], again["deleted"], again["chunks_written"])
    assert done == (0, 0, 0, 0), again
    assert again["unchanged"] == plain["added"]

    (docs / "notes.txt").unlink()
    (docs / "guide.md").write_text("# Guide\n\nAlpacas hum when they are curious.\n")
    changed = {
        name: _ingest(data, name, docs, *extra)
        for name, extra in (("plain", ()), ("onray", ("--ray", cluster)))
    }
    assert changed["onray"]["updated"] == changed["plain"]["updated"] == 1
    assert changed["onray"]["deleted"] == changed["plain"]["deleted"] == 1
    assert _same(data)[0] == documents - 1


def test_a_wrong_ray_address_is_one_clear_line(tmp_path: Path) -> None:
    docs = make_corpus(tmp_path / "docs")
    env = cli_env(tmp_path / "data") | ENV
    run = subprocess.run(
        [RAG_BIN, "ingest", str(docs), "--ray", f"127.0.0.1:{free_port()}", "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run
    assert "cannot reach the Ray cluster" in run.stderr and len(run.stderr.strip().splitlines()) == 1, (
        run.stderr
    )
    assert not (tmp_path / "data" / "collections" / "default").exists()
