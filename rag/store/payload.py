"""The chunk payload: what ingestion writes with each chunk and everything else reads, in one typed place."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rag.store.base import KIND_CHUNK


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
_OPTIONAL = ("title", "page", "char_start", "char_end", "kind")


def _optional(payload: dict[str, Any]) -> dict[str, Any]:
    return {name: payload[name] for name in _OPTIONAL if name in payload}
