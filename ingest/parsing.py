"""A document read, parsed and chunked into the parts the ingestion job's writer takes: in the job's parser thread,
in its worker processes (ingest/parse_pool.py) or in a Ray worker (ingest/ray_ingest.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from ingest.chunking import Chunk, Chunker
from ingest.formats import STREAMED, loader_for
from ingest.loaders import LoadError, Section
from ingest.ocr import OcrOptions
from ingest.progress import IngestProgress
from ingest.scan import FoundFile, os_error_reason
from rag.config import Settings
from rag.text import printable
from rag.tokens import count_tokens

PART_CHUNKS = 256  # a streamed document reaches the embedder in parts of this many chunks


@dataclass
class _Doc:
    found: FoundFile
    root: str  # the folder the document is recorded under, with source relative to it
    source: str
    doc_id: str
    content_hash: str
    is_update: bool


@dataclass
class _Part:
    doc: _Doc
    chunks: list[Chunk]
    first_index: int
    final: bool


@dataclass
class _Failed:
    doc: _Doc
    reason: str
    skipped: bool = False


class IngestCancelled(Exception):
    """Raised inside a parser when the job is cancelled; the writer takes no new file then, so nothing records it."""


class DocParser:
    """A document read, parsed and chunked into parts for the writer: in the job's parser thread, or in a worker
    process (ingest.parse_pool) or a Ray worker (ingest.ray_ingest), each of which builds its own from the settings."""

    def __init__(self, settings: Settings, embedder: Any, cancel: threading.Event | None = None) -> None:
        """embedder: whose tokenizer bounds a chunk (its count_tokens and max_tokens; it need not embed here)."""
        self.settings = settings
        self.cancel = cancel or threading.Event()
        encoding = settings.tokenizer_encoding
        self.chunker = Chunker(
            lambda texts: count_tokens(texts, encoding),
            settings.chunk_tokens,
            settings.chunk_overlap,
            fits_window=lambda text: embedder.count_tokens(text) <= embedder.max_tokens,
        )
        self.ocr = OcrOptions(
            settings.ocr,
            settings.ocr_page_seconds,
            settings.ocr_file_seconds,
            settings.ocr_min_chars,
            settings.ocr_language,
        )

    def parts(self, doc: _Doc, progress: IngestProgress) -> Iterator[_Part | _Failed]:
        path = doc.found.path
        source = printable(doc.found.source)

        def on_page(page: int, pages: int) -> None:
            if self.cancel.is_set():  # OCR of a long scan stops within a page, not at its end
                raise IngestCancelled
            progress.ocr_page(source, page, pages)

        loader = loader_for(path, replace(self.ocr, on_page=on_page))
        assert loader is not None
        try:
            sections: Iterator[Section] = loader(path)
            if path.suffix.lower() not in STREAMED:
                sections = iter(list(sections))  # parse whole first: a parse error must not touch the store
            chunks = self.chunker.chunk_sections(sections)
            batch: list[Chunk] = []
            index = 0
            for chunk in chunks:
                batch.append(chunk)
                if len(batch) >= PART_CHUNKS:
                    yield _Part(doc, batch, index, final=False)
                    index += len(batch)
                    batch = []
            if index == 0 and not batch:
                yield _Failed(doc, "no extractable text", skipped=True)
                return
            yield _Part(doc, batch, index, final=True)
        except LoadError as exc:
            yield _Failed(doc, str(exc))
        except OSError as exc:
            yield _Failed(doc, os_error_reason(exc))
        except UnicodeError as exc:
            yield _Failed(doc, f"cannot decode: {exc}")
        except Exception as exc:  # a parser bug on one file must not stop the others
            yield _Failed(
                doc, f"cannot parse: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
