"""QA sets for `rag eval`: one JSON object per line.

Fields: `question` (required, non-empty string), `id` (string, default "q<line number>"), `answer` (reference
answer, string or null), `sources` (gold: paths relative to the docs root, "path" or "path#page=N" with N the
physical 1-based PDF page), `answerable` (bool, default true; false for questions the documents cannot answer,
which then carry no sources). Blank lines are ignored; unknown fields are ignored so sets can carry notes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PAGE_FRAGMENT = re.compile(r"page=([1-9]\d*)")


class QAFormatError(ValueError):
    """A malformed QA file; the message names the file and the 1-based line."""


@dataclass(frozen=True)
class GoldRef:
    source: str
    page: int | None = None

    @classmethod
    def parse(cls, text: str) -> GoldRef:
        """ "path" or "path#page=N"; raises ValueError on anything else."""
        path, hash_, fragment = text.rpartition("#") if "#" in text else (text, "", "")
        if hash_:
            match = _PAGE_FRAGMENT.fullmatch(fragment)
            if not match:
                raise ValueError(f"bad source fragment {text!r}: expected 'path#page=N' with N >= 1")
            page: int | None = int(match.group(1))
        else:
            page = None
        if not path.strip():
            raise ValueError(f"empty source path in {text!r}")
        if path.startswith("/") or re.match(r"[A-Za-z]:[\\/]", path):
            raise ValueError(f"source {text!r} must be relative to the docs root")
        return cls(path, page)

    def __str__(self) -> str:
        return self.source if self.page is None else f"{self.source}#page={self.page}"


@dataclass
class QAItem:
    id: str
    question: str
    answer: str | None = None
    sources: list[GoldRef] = field(default_factory=list)
    answerable: bool = True

    def gold_docs(self) -> set[str]:
        return {ref.source for ref in self.sources}

    def gold_pages(self) -> set[tuple[str, int | None]]:
        return {(ref.source, ref.page) for ref in self.sources}

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"id": self.id, "question": self.question}
        if self.answer is not None:
            record["answer"] = self.answer
        if self.sources:
            record["sources"] = [str(ref) for ref in self.sources]
        record["answerable"] = self.answerable
        return record


def _parse_item(record: Any, lineno: int) -> QAItem:
    """One decoded line; raises ValueError with the bare problem (the caller adds file and line)."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("'question' must be a non-empty string")
    item_id = record.get("id", f"q{lineno}")
    if not isinstance(item_id, str) or not item_id.strip():
        raise ValueError("'id' must be a non-empty string")
    answer = record.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise ValueError("'answer' must be a string or null")
    answerable = record.get("answerable", True)
    if not isinstance(answerable, bool):
        raise ValueError("'answerable' must be true or false")
    raw_sources = record.get("sources", [])
    if raw_sources is None:
        raw_sources = []
    if not isinstance(raw_sources, list) or not all(isinstance(s, str) for s in raw_sources):
        raise ValueError("'sources' must be a list of strings")
    sources = list(dict.fromkeys(GoldRef.parse(s) for s in raw_sources))
    if sources and not answerable:
        # gold sources on an unanswerable question would silently count in retrieval metrics
        raise ValueError("an unanswerable question ('answerable': false) cannot have sources")
    return QAItem(item_id.strip(), question.strip(), answer, sources, answerable)


def load_qa(path: str | Path) -> list[QAItem]:
    """Every item of a JSONL QA file, in file order; raises QAFormatError at the first malformed line."""
    path = Path(path)
    items: list[QAItem] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as lines:
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise QAFormatError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
            try:
                item = _parse_item(record, lineno)
            except ValueError as exc:
                raise QAFormatError(f"{where}: {exc}") from None
            if item.id in seen:
                raise QAFormatError(f"{where}: duplicate id {item.id!r} (first on line {seen[item.id]})")
            seen[item.id] = lineno
            items.append(item)
    return items


def write_qa(path: str | Path, items: Iterable[QAItem]) -> None:
    """Write items as JSONL that load_qa reads back unchanged."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for item in items:
            out.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
