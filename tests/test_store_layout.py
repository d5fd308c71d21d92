"""Collections on disk and with int8 copies (RAG_STORE_ON_DISK, RAG_STORE_QUANTIZATION), on both Qdrant engines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from ingest.job import ingest_folder
from rag.collection import Collection
from rag.config import Settings
from rag.sparse import bm25_query

FILES = {
    "gil.txt": "The global interpreter lock lets one thread at a time run Python bytecode.",
    "apt.txt": "apt-get install downloads a Debian package with its dependencies and configures them.",
    "tea.txt": "Green tea is steeped at 80 degrees for two minutes; black tea takes boiling water.",
}


def corpus(root: Path) -> Path:
    root.mkdir()
    for name, text in FILES.items():
        (root / name).write_text(text)
    return root


def top_source(settings: Settings, question: str) -> str:
    with Collection(settings) as collection:
        vector = collection.embedder.embed_query(question)
        hits = collection.store.search_hybrid(vector, bm25_query(question), 3)
    return hits[0].chunk.source


@pytest.fixture(params=["edge", "server"])
def big_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    url = None if request.param == "edge" else f"path:{tmp_path / 'qdrant'}"
    return Settings(
        data_dir=tmp_path / "data",
        collection="big",
        qdrant_url=url,
        store_on_disk=True,
        store_quantization="int8",
        store_hnsw_m=24,
        store_hnsw_ef_construct=100,
    )


def test_an_on_disk_int8_collection_is_created_so_and_searched(
    tmp_path: Path, big_settings: Settings
) -> None:
    summary = ingest_folder(big_settings, corpus(tmp_path / "docs"), progress=False)
    assert summary.chunks == 3 and not summary.failed
    assert layout_of(big_settings) == made(big_settings, on_disk=True, int8=True)
    assert top_source(big_settings, "which lock stops threads running Python at once?") == "gil.txt"
    assert top_source(big_settings, "how hot should the water be for green tea?") == "tea.txt"
    # The layout is the collection's: opened later without the settings, it stays as it was made.
    plain = big_settings.model_copy(
        update={
            "store_on_disk": False,
            "store_quantization": "none",
            "store_hnsw_m": 16,
            "store_hnsw_ef_construct": 128,
        }
    )
    assert top_source(plain, "installing a package with its dependencies") == "apt.txt"
    assert layout_of(plain) == made(big_settings, on_disk=True, int8=True)


def test_the_default_layout_keeps_vectors_in_ram_without_int8(tmp_path: Path, settings: Settings) -> None:
    ingest_folder(settings, corpus(tmp_path / "docs"), progress=False)
    assert layout_of(settings) == made(settings, on_disk=False, int8=False)


def made(settings: Settings, on_disk: bool, int8: bool) -> dict[str, object]:
    """What layout_of can see: qdrant-client's local mode keeps a collection's vector parameters but drops its
    quantization and HNSW configs (it searches by brute force), so there only on_disk is checked."""
    if settings.qdrant_url:
        return {"vectors_on_disk": on_disk}
    graph = [settings.store_hnsw_m, settings.store_hnsw_ef_construct]
    return {"vectors_on_disk": on_disk, "int8": int8, "hnsw": graph}


def layout_of(settings: Settings) -> dict[str, object]:
    """What the engine itself recorded for the collection's dense vector."""
    if settings.qdrant_url is None:
        config = json.loads(
            (settings.collection_dir(settings.collection) / "shard" / "edge_config.json").read_text()
        )
        dense = config["vectors"]["dense"]
        return {
            "vectors_on_disk": dense.get("memory") == "cold",
            "int8": "scalar" in (dense.get("quantization_config") or {}),
            "hnsw": [config["hnsw_config"]["m"], config["hnsw_config"]["ef_construct"]],
        }
    client = QdrantClient(path=settings.qdrant_url.removeprefix("path:"))
    try:
        info = client.get_collection(settings.collection).config
    finally:
        client.close()
    vectors = info.params.vectors
    assert isinstance(vectors, dict)
    return {"vectors_on_disk": bool(vectors["dense"].on_disk)}
