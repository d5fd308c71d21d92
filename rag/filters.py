"""Search filters as people give them (document names, file types, a folder, ingestion dates) made into the
store's SearchFilter, which Qdrant applies through its payload indexes during the search, not after it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from rag.errors import BadFilter
from rag.store import SearchFilter
from rag.store.payload import DocumentRecord

__all__ = ["BadFilter", "FilterRequest", "search_filter"]


@dataclass(frozen=True)
class FilterRequest:
    """documents: source paths or document ids; types: file types (pdf, md...); path: a folder or file prefix;
    ingested_since / ingested_until: dates (YYYY-MM-DD, whole days, UTC) or ISO 8601 instants, both inclusive."""

    documents: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    path: str | None = None
    ingested_since: str | None = None
    ingested_until: str | None = None

    def is_empty(self) -> bool:
        return not (self.documents or self.types or self.path or self.ingested_since or self.ingested_until)


def search_filter(request: FilterRequest, documents: list[DocumentRecord]) -> SearchFilter | None:
    """The store's filter for the request over the collection's documents; None when it filters nothing."""
    if request.is_empty():
        return None
    since = _instant(request.ingested_since, "ingested_since", end_of_day=False)
    until = _instant(request.ingested_until, "ingested_until", end_of_day=True)
    if since and until and since >= until:
        raise BadFilter(
            f"ingested_since {request.ingested_since} is after ingested_until {request.ingested_until}"
        )
    return SearchFilter(
        path_prefix=(request.path or "").strip().strip("/") or None,
        file_types=[t.strip().lower().lstrip(".") for t in request.types if t.strip()],
        doc_ids=_document_ids(request.documents, documents),
        ingested_from=since,
        ingested_until=until,
    )


def _document_ids(wanted: list[str], documents: list[DocumentRecord]) -> list[str]:
    by_name = {d.source: d.doc_id for d in documents} | {d.doc_id: d.doc_id for d in documents}
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise BadFilter(
            f"no document {unknown[0]!r} in this collection (give its path as `rag docs` lists it)"
        )
    return list(dict.fromkeys(by_name[name] for name in wanted))


def _instant(text: str | None, name: str, end_of_day: bool) -> str | None:
    """An ISO 8601 instant in UTC; a bare date is the start of that day, or for an inclusive end, of the next."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return (start + timedelta(days=1) if end_of_day else start).isoformat()
        moment = datetime.fromisoformat(text)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if end_of_day:  # an inclusive instant; the store's bound is exclusive
            moment += timedelta(microseconds=1)
        return moment.astimezone(UTC).isoformat()
    except ValueError:
        raise BadFilter(f"{name} {text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    except OverflowError:  # 9999-12-31 as an inclusive end, year 1 in another time zone
        raise BadFilter(f"{name} {text!r} is outside the dates this app can compare") from None
