"""Search filters (documents, types, folders, ingestion dates) applied by Qdrant itself, embedded and server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import qdrant_edge as qe

from rag.collection import Collection
from rag.config import Settings
from rag.filters import BadFilter, FilterRequest, search_filter
from rag.retrieval import Retriever
from rag.store import open_store
from tests.docs_factory import make_corpus
from tests.test_ingest import run_ingest


def _sources(settings: Settings, request: FilterRequest, query: str = "animals") -> set[str]:
    with Collection(settings) as collection:
        flt = search_filter(request, collection.documents())
        hits = Retriever(collection.store, collection.embedder).retrieve(query, 60, flt=flt).hits
        return {h.chunk.source for h in hits}


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_filters_by_document_type_folder_and_ingestion_date(
    tmp_path: Path, settings: Settings, server_settings: Settings, backend: str
) -> None:
    chosen = settings if backend == "edge" else server_settings
    root = make_corpus(tmp_path / "corpus")
    run_ingest(chosen, root)
    time.sleep(1.1)  # ingestion times are kept to the second
    (root / "notes.txt").write_text("The capybara is the largest living rodent; it swims well.\n")
    run_ingest(chosen, root)
    with Collection(chosen) as collection:
        docs = {d.source: d for d in collection.documents()}
    changed_at = docs["notes.txt"].ingested_at
    assert all(d.ingested_at < changed_at for name, d in docs.items() if name != "notes.txt")

    everything = _sources(chosen, FilterRequest())
    assert len(everything) == 7
    assert _sources(chosen, FilterRequest(documents=["memo.docx"])) == {"memo.docx"}
    by_id = FilterRequest(documents=[docs["guide.md"].doc_id, "report.pdf"])
    assert _sources(chosen, by_id) == {"guide.md", "report.pdf"}
    assert _sources(chosen, FilterRequest(types=["PDF", ".md"])) == {
        "report.pdf",
        "guide.md",
        "sub/deeper/nested.md",
    }
    assert _sources(chosen, FilterRequest(path="sub/")) == {"sub/deeper/nested.md"}
    assert _sources(chosen, FilterRequest(ingested_since=changed_at)) == {"notes.txt"}
    # inclusive; the first run's last second, since a slow run (the server backend in CI) spans more than one
    first_run_ended = max(d.ingested_at for name, d in docs.items() if name != "notes.txt")
    before = FilterRequest(ingested_until=first_run_ended)
    assert _sources(chosen, before) == everything - {"notes.txt"}
    today = changed_at[:10]
    assert _sources(chosen, FilterRequest(ingested_since=today, ingested_until=today)) == everything
    assert _sources(chosen, FilterRequest(ingested_until="2000-01-01")) == set()
    both = FilterRequest(types=["txt", "md"], ingested_since=changed_at)
    assert _sources(chosen, both) == {"notes.txt"}


def test_a_filter_that_cannot_apply_says_why_in_one_line(settings: Settings, tmp_path: Path) -> None:
    run_ingest(settings, make_corpus(tmp_path / "corpus"))
    with Collection(settings) as collection:
        documents = collection.documents()
    with pytest.raises(BadFilter, match="no document 'nope.md' in this collection"):
        search_filter(FilterRequest(documents=["nope.md"]), documents)
    with pytest.raises(BadFilter, match="ingested_since 'last week' is not a date"):
        search_filter(FilterRequest(ingested_since="last week"), documents)
    with pytest.raises(BadFilter, match="outside the dates"):  # was an OverflowError: a 500, not a 400
        search_filter(FilterRequest(ingested_until="9999-12-31"), documents)
    with pytest.raises(BadFilter, match="is after"):
        search_filter(FilterRequest(ingested_since="2026-12-05", ingested_until="2026-12-04"), documents)
    assert search_filter(FilterRequest(), documents) is None


def _points(settings: Settings) -> int:
    with Collection(settings) as collection:
        documents = collection.documents()
    return sum(d.chunks for d in documents) + len(documents)


def _date_index(settings: Settings, drop: bool = False) -> Any:
    """The edge shard's index on ingested_at (None if it has none); drop: remove it first, as a collection made
    before this index existed lacks it."""
    store = open_store(settings)
    try:
        shard = store.engine.shard  # type: ignore[attr-defined]
        if drop:
            shard.update(qe.UpdateOperation.delete_field_index("ingested_at"))
        return shard.info().payload_schema.get("ingested_at")
    finally:
        store.close()


def test_a_new_collection_indexes_ingestion_dates(settings: Settings, tmp_path: Path) -> None:
    """The date filter runs on a payload index, as the keyword ones do, not on a scan of every payload."""
    run_ingest(settings, make_corpus(tmp_path / "corpus"))
    index = _date_index(settings)
    assert index.data_type == qe.PayloadSchemaType.Datetime
    assert index.points == _points(settings)  # every chunk and document record holds it


def test_a_collection_made_before_date_indexes_gets_one_when_opened(
    settings: Settings, tmp_path: Path
) -> None:
    run_ingest(settings, make_corpus(tmp_path / "corpus"))
    assert _date_index(settings, drop=True) is None
    assert _date_index(settings).data_type == qe.PayloadSchemaType.Datetime
