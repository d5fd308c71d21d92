from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import rag  # noqa: F401  (sets the offline environment before anything loads a model)
from rag.config import Settings
from rag.embedder import Embedder, get_embedder

REPO = Path(__file__).resolve().parent.parent
RAG_BIN = str(Path(sys.executable).parent / "rag")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return get_embedder()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", collection="test")


@pytest.fixture
def server_settings(tmp_path: Path) -> Settings:
    """The server code path (QDRANT_URL) through qdrant-client's local mode."""
    return Settings(data_dir=tmp_path / "data", collection="test", qdrant_url=f"path:{tmp_path / 'qdrant'}")


def cli_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RAG_DATA_DIR"] = str(data_dir)
    env.pop("QDRANT_URL", None)
    return env
