"""The embedder's backends: ONNX exports of the packaged MiniLM against torch, and which backend a collection gets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.collection import Collection
from rag.config import PACKAGED_EMBEDDER, Settings
from rag.embedder import DEFAULT_BACKEND, get_embedder, resolve_model_path
from rag.errors import RagError
from tests.conftest import REPO

PASSAGES = [
    "The GIL lets one thread at a time execute Python bytecode.",
    "apt-get install fetches a package and the packages it depends on, then unpacks and configures them.",
    "Use a list comprehension to build a list from an iterable: [x * 2 for x in range(10)].",
    "def f(a, b=1, *args, **kwargs): default values are evaluated once, when the function is defined. " * 6,
]


@pytest.fixture(scope="module")
def cache() -> Path:
    """The models' default cache: exported once per machine, as the app does."""
    return Settings().model_cache


@pytest.mark.parametrize(("backend", "floor"), [("onnx", 0.9999), ("onnx-int8", 0.98)])
def test_onnx_vectors_match_torch_fp32(cache: Path, backend: str, floor: float) -> None:
    torch_fp32 = get_embedder(precision="float32", backend="torch")
    onnx = get_embedder(backend=backend, cache=cache)
    expected, got = torch_fp32.embed(PASSAGES), onnx.embed(PASSAGES)
    cosines = (expected * got).sum(axis=1)
    assert cosines.min() >= floor, cosines
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)  # normalized inside the graph
    assert (onnx.dimension, onnx.max_tokens) == (torch_fp32.dimension, torch_fp32.max_tokens)
    assert [onnx.count_tokens(p) for p in PASSAGES] == [torch_fp32.count_tokens(p) for p in PASSAGES]
    # Each passage is found by its own rewording, ranked as torch ranks it.
    query = get_embedder(backend=backend, cache=cache).embed(
        ["which Python lock lets one thread run at a time?"]
    )
    assert int(np.argmax(got @ query[0])) == int(np.argmax(expected @ query[0])) == 0


def test_serving_the_int8_model_imports_no_torch(tmp_path: Path, cache: Path) -> None:
    get_embedder(backend="onnx-int8", cache=cache)  # exported here first, so the child only loads it
    probe = (
        "import sys; from rag.config import Settings; from rag.embedder import embedder_from_settings; "
        "e = embedder_from_settings(Settings(embed_backend='onnx-int8')); print(len(e.embed_query('hello'))); "
        "print(sorted({'torch', 'sentence_transformers'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["384", "[]"]


def test_a_new_collection_records_its_backend(settings: Settings) -> None:
    with Collection(settings, create=True) as collection:
        collection.ensure_created()
        assert collection.embedder.backend == DEFAULT_BACKEND
        assert (collection.store.collection_meta() or {})["embed_backend"] == DEFAULT_BACKEND


def test_packaged_model_collections_take_any_measured_backend(settings: Settings) -> None:
    """The packaged model's backends were measured interchangeable, so a collection built by torch is searched
    with the default backend's queries, and an explicit torch keeps working on a new collection."""
    built_by_torch = settings.model_copy(update={"embed_backend": "torch"})
    with Collection(built_by_torch, create=True) as collection:
        collection.ensure_created()
    with Collection(settings) as collection:  # auto
        assert collection.embedder.backend == DEFAULT_BACKEND
    with Collection(settings.model_copy(update={"embed_backend": "onnx"})) as collection:
        assert collection.embedder.backend == "onnx"


def test_an_unmeasured_model_keeps_the_backend_that_built_it(tmp_path: Path, settings: Settings) -> None:
    folder = tmp_path / "my-minilm"
    shutil.copytree(resolve_model_path(PACKAGED_EMBEDDER), folder)
    mine = settings.model_copy(update={"embed_model": str(folder), "embed_backend": "torch"})
    with Collection(mine, create=True) as collection:
        collection.ensure_created()
    with Collection(mine.model_copy(update={"embed_backend": "auto"})) as collection:
        assert collection.embedder.backend == "torch"  # auto follows the collection, not the default
    with pytest.raises(
        RagError, match="embedded with the torch backend; queries from onnx-int8 were not measured"
    ):
        Collection(mine.model_copy(update={"embed_backend": "onnx-int8"}))


def test_weights_trained_again_get_a_new_export(tmp_path: Path, cache: Path) -> None:
    """The cache is keyed by the weights' files too: a folder whose model was retrained in place must not be served
    by the export of its old weights."""
    from rag.onnx_embedder import cache_folder

    folder = tmp_path / "model"
    shutil.copytree(resolve_model_path(PACKAGED_EMBEDDER), folder)
    before = cache_folder("mine", str(folder), cache)
    assert cache_folder("mine", str(folder), cache) == before  # stable while nothing changes
    weights = folder / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000_000))
    assert cache_folder("mine", str(folder), cache) != before
