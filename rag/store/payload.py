"""The chunk payload: what ingestion writes with each chunk and everything else reads, in one typed place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import PurePosixPath
from typing import Any

from rag.store.schema import KIND_CHUNK, KIND_DOC

# What a document listing shows (`rag docs --json`, the API, the UI's table), besides `incomplete`.
LISTED_FIELDS = (
    "doc_id",
    "source",
    "root",
    "file_type",
    "chunks",
    "pages",
    "ocr_pages",
    "ingested_at",
    "title",
    "size",
)


@dataclass(frozen=True)
class ChunkPayload:
    doc_id: str
    root: str
    source: str  # the path relative to root, with '/'
    dirs: list[str]  # every folder above source ("a", "a/b"), for path-prefix filters
    file_type: str
    content_hash: str
    ingested_at: str
    chunk_index: int
    text: str
    title: str | None = None
    page: int | None = None  # 1-based physical page, for paged formats
    char_start: int = 0
    char_end: int = 0
    ocr: bool = False  # read by OCR from a scanned page or an image
    kind: str = KIND_CHUNK

    def passage(self) -> str:
        return passage_text(self.title, self.text)

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ChunkPayload:
        """A stored chunk's payload; a missing field is an error here, not a silent None further on."""
        try:
            return cls(**{name: payload[name] for name in _REQUIRED}, **_optional(payload))
        except KeyError as exc:
            raise ValueError(f"a stored chunk lacks the payload field {exc.args[0]!r}") from None


@dataclass(frozen=True)
class DocumentRecord:
    """A document's own point, beside its chunks: written by ingestion, read to tell changed, moved and gone files.

    A provisional record (written before the first chunk) has no content hash and size -1, so it matches nothing
    and the next run ingests the file again; `incomplete` marks it."""

    doc_id: str
    root: str
    source: str  # the path relative to root, with '/'
    dirs: list[str] = field(default_factory=list)
    file_type: str = ""
    content_hash: str = ""
    ingested_at: str = ""
    size: int = -1
    mtime_ns: int = -1
    chunks: int = 0
    pages: int | None = None
    ocr_pages: int = 0  # pages (or images) whose text came from OCR
    title: str | None = None
    incomplete: bool = False
    kind: str = KIND_DOC

    @property
    def path(self) -> str:
        """The document's file as an absolute path: the one key that names a file whichever folder it was
        ingested from."""
        return str(PurePosixPath(self.root, self.source))

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> DocumentRecord:
        """A stored record; fields older versions did not write take their defaults, unknown ones are ignored."""
        try:
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in payload.items() if k in known and v is not None})
        except TypeError as exc:
            raise ValueError(f"a stored document record is malformed: {exc}") from None

    def listing(self) -> dict[str, Any]:
        """What a document listing shows of it."""
        return {**{name: getattr(self, name) for name in LISTED_FIELDS}, "incomplete": self.incomplete}


def passage_text(title: str | None, text: str) -> str:
    """What the bi-encoder, BM25 and the cross-encoder read: the section title gives the text its context."""
    return f"{title}\n{text}" if title else text


_REQUIRED = (
    "doc_id",
    "root",
    "source",
    "dirs",
    "file_type",
    "content_hash",
    "ingested_at",
    "chunk_index",
    "text",
)
_OPTIONAL = ("title", "page", "char_start", "char_end", "ocr", "kind")


def _optional(payload: dict[str, Any]) -> dict[str, Any]:
    return {name: payload[name] for name in _OPTIONAL if name in payload}
