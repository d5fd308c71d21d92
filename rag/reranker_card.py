"""A collection's own cross-encoder: `rag train-reranker` writes it with a `reranker.json` card beside the weights.

The card says what the model is (base, layers, max length, backend), the refusal threshold calibrated when it was
trained, and how it did on the held-out mined questions. Chat, eval and the UI find it by the collection's name.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.store.payload import DocumentRecord

CARD = "reranker.json"


@dataclass
class RerankerCard:
    base_model: str
    layers: int
    max_length: int
    backend: str
    threshold: float  # on the model's 0-1 score, best balanced accuracy at training time
    trained_at: str
    training: dict[str, Any] = field(default_factory=dict)  # steps, seconds, groups, minutes, loss
    held_out: dict[str, Any] = field(
        default_factory=dict
    )  # acc@1 on held-out mined groups, calibration rates
    documents: dict[str, str] = field(default_factory=dict)  # doc_id: content hash, as trained on

    def changed_share(self, records: list[DocumentRecord]) -> float | None:
        """The share of documents added, changed or removed since training (None: the card predates the record)."""
        if not self.documents:
            return None
        now = document_hashes(records)
        changed = sum(1 for doc, digest in now.items() if self.documents.get(doc) != digest)
        removed = sum(1 for doc in self.documents if doc not in now)
        return (changed + removed) / max(1, len(self.documents))

    def save(self, folder: Path) -> None:
        (folder / CARD).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> RerankerCard | None:
        path = folder / CARD
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def document_hashes(records: list[DocumentRecord]) -> dict[str, str]:
    """A collection's document records as doc_id: content hash, what a card remembers of what it was trained on."""
    return {r.doc_id: r.content_hash for r in records}


def collection_reranker_dir(settings: Settings, collection: str | None = None) -> Path:
    """Where a collection's trained reranker lives: beside its store, removed with it."""
    return settings.collection_dir(collection) / "reranker"
