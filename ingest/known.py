"""What the collection holds already, by file path and by content: how an ingestion tells a new file from one a
parent or subfolder ingest recorded, a moved one, or a copy of a document that is still there.

A record names its file as root + source (source relative to the folder it was ingested from), so a file ingested
from `in` and from `in/sub` has two (root, source) pairs but one absolute path: that path is the key here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ingest.scan import FoundFile
from rag.collection import file_gone
from rag.store.base import document_id
from rag.store.payload import DocumentRecord


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def display_path(path: str, root: str) -> str:
    """A path as the ingest summary shows it: relative to the ingested folder when it lies inside it."""
    return path[len(root.rstrip("/")) + 1 :] if inside(path, root) and path != root else path


class KnownDocuments:
    def __init__(self, records: list[DocumentRecord]) -> None:
        self.by_path: dict[str, DocumentRecord] = {}
        # A second record of one path, left by versions that keyed documents by (root, source): deleted when
        # a folder holding the path is ingested.
        self.extra: list[DocumentRecord] = []
        for record in sorted(records, key=_kept_first):
            path = record.path
            if path in self.by_path:
                self.extra.append(record)
            else:
                self.by_path[path] = record
        self.by_hash: dict[str, list[DocumentRecord]] = {}
        for record in self.by_path.values():
            if record.content_hash:  # an interrupted write has none: it matches nothing
                self.by_hash.setdefault(record.content_hash, []).append(record)
        self.ids = {r.doc_id for r in records}
        # (content hash, file type) -> the path this run leaves holding that content
        self.held: dict[tuple[str, str], str] = {}
        self.claimed: set[str] = set()  # doc_ids moved by this run
        self.leaving: set[str] = set()  # doc_ids this run deletes: their files hold nothing any more

    def at(self, path: str) -> DocumentRecord | None:
        return self.by_path.get(path)

    def stale_under(self, root: str, found: list[FoundFile]) -> list[DocumentRecord]:
        """Records to delete with an ingestion of root: those of files under it the scan did not find (a folder
        it could not read hides its files: unknown, not missing), and second records of one path."""
        present = {str(f.path) for f in found}
        unreadable = [str(f.path) for f in found if f.error]
        missing = [
            record
            for path, record in self.by_path.items()
            if inside(path, root) and path not in present and not any(inside(path, u) for u in unreadable)
        ]
        return missing + [r for r in self.extra if inside(r.path, root)]

    def hold(self, digest: str, kind: str, path: str) -> None:
        self.held.setdefault((digest, kind), path)

    def holder(self, digest: str, kind: str) -> str | None:
        """A file that holds this content and file type as a document (the same bytes read as another type are
        other passages): one this run keeps or writes, or a recorded one still on disk with this content."""
        if (digest, kind) in self.held:
            return self.held[digest, kind]
        for record in self.by_hash.get(digest, []):
            if record.file_type != kind or record.doc_id in self.leaving:
                continue
            if _still_holds(record, digest):
                return record.path
        return None

    def take_gone(self, digest: str, kind: str) -> DocumentRecord | None:
        """A document with this content and file type whose file is gone, for a move; each is taken once."""
        for record in self.by_hash.get(digest, []):
            free = record.doc_id not in self.claimed and record.file_type == kind
            if free and file_gone(record.path):
                self.claimed.add(record.doc_id)
                return record
        return None

    def new_id(self, root: str, source: str) -> str:
        """The id of a new document: document_id(root, source), unless a document moved away from that path
        still has it (a move keeps its id, so its chunks' ids stay valid)."""
        doc_id, n = document_id(root, source), 0
        while doc_id in self.ids:
            n += 1
            doc_id = document_id(root, f"{source}\0{n}")
        self.ids.add(doc_id)
        return doc_id


def _kept_first(record: DocumentRecord) -> tuple[bool, int, str]:
    """Of two records of one path, the complete one, then the one of the outer folder (the longer source)."""
    return (record.incomplete, len(record.root), record.doc_id)


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _still_holds(record: DocumentRecord, digest: str) -> bool:
    """The recorded file is there with this content: as recorded, or hashed when only touched since."""
    path = record.path
    try:
        info = os.stat(path)
        if info.st_size == record.size and info.st_mtime_ns == record.mtime_ns:
            return True
        return file_hash(Path(path)) == digest
    except OSError:
        return False
