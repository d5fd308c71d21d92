"""What the UI does, without Gradio: collections and their chat, uploads, ingestion, deletion, status."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from ingest.job import IngestJob, IngestSummary
from ingest.loaders import loader_for
from rag.answer import ChatPipeline, open_chat
from rag.collection import Collection
from rag.config import Settings
from rag.errors import RagError
from rag.llm import describe_llm
from rag.rerank import describe_reranker, retrain_advice
from rag.store import check_collection_name, list_collections
from training.collection_reranker import Outcome, mine_for_training, train_collection_reranker, uninstall
from training.reranker import MiningOptions


@dataclass
class Upload:
    saved: list[str]
    rejected: list[tuple[str, str]]


class RagService:
    """Shared by every browser session of one app process; safe to call from Gradio's worker threads.

    Each collection is opened once and kept; its chat pipeline (which starts the LLM) only when a question comes,
    so documents can be listed, uploaded and deleted whatever the LLM's state.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._collections: dict[str, Collection] = {}
        self._chats: dict[str, ChatPipeline] = {}
        self._lock = threading.Lock()
        self._chat_lock = threading.Lock()
        self._ingest_locks: dict[str, threading.Lock] = {}
        self._train_locks: dict[str, threading.Lock] = {}

    def collection(self, name: str, create: bool = False) -> Collection:
        """The named collection, opened on first use; a missing one raises unless create, a held store too."""
        check_collection_name(name)  # before anything is opened or created: "" is not "the default one"
        with self._lock:
            found = self._collections.get(name)
            if found is None:
                found = Collection(self.settings, name, create=create)
                self._collections[name] = found
            return found

    def pipeline(self, collection: str) -> ChatPipeline:
        """The collection's chat pipeline, opened on first question."""
        opened = self.collection(collection)
        with self._chat_lock:
            chat = self._chats.get(collection)
            if chat is None:
                chat = open_chat(opened)
                self._chats[collection] = chat
            return chat

    def collections(self) -> list[str]:
        """Collections that exist, plus the configured one (chat there says how to fill it)."""
        try:
            found = list_collections(self.settings)
        except Exception as exc:  # a Qdrant server that cannot be reached fails in many types
            raise RagError(f"cannot list the collections: {exc}") from exc
        with self._lock:
            found += list(self._collections)
        return sorted({*found, self.settings.collection})

    def create_collection(self, name: str) -> str:
        """An empty collection, ready for uploads: the only way the UI creates one (besides ingesting)."""
        name = check_collection_name((name or "").strip())
        if name in list_collections(self.settings):
            raise RagError(f"collection {name!r} already exists")
        self.collection(name, create=True).ensure_created()
        return name

    def train_reranker(
        self, collection: str, minutes: float, on_step: Callable[[int, float], None] | None = None
    ) -> Outcome:
        """Train the collection's reranker in this process (the store is read while mining only); once installed,
        the next question loads it."""
        if not minutes > 0:
            raise RagError(f"the training time budget must be above 0 minutes, not {minutes}")
        opened = self.collection(collection)
        lock = self._train_locks.setdefault(collection, threading.Lock())
        if not lock.acquire(blocking=False):
            raise RagError("a reranker for this collection is already being trained; wait for it to finish")
        try:
            mined = mine_for_training(opened, MiningOptions())
            settings = self.settings.model_copy(update={"collection": collection})
            outcome = train_collection_reranker(settings, mined, minutes, on_step=on_step)
        finally:
            lock.release()
        if outcome.replaced:
            with self._chat_lock:
                self._chats.pop(collection, None)
        return outcome

    def uninstall_reranker(self, collection: str) -> str:
        """Take the collection's reranker out of use; the next question ranks with the first stage."""
        settings = self.settings.model_copy(update={"collection": check_collection_name(collection)})
        lock = self._train_locks.setdefault(collection, threading.Lock())
        if not lock.acquire(blocking=False):
            raise RagError("a reranker for this collection is being trained; wait for it to finish")
        try:
            message = uninstall(settings)
        finally:
            lock.release()
        with self._chat_lock:
            self._chats.pop(collection, None)
        return message

    def close(self) -> None:
        with self._lock:
            for collection in self._collections.values():
                collection.close()
            self._collections.clear()
            self._chats.clear()

    def uploads_dir(self, collection: str) -> Path:
        return self.settings.data_dir / "uploads" / check_collection_name(collection)

    def save_uploads(self, collection: str, files: list[str]) -> Upload:
        """Copy uploaded files (zips unpacked, safely) into the collection's upload folder."""
        target = self.uploads_dir(collection)
        target.mkdir(parents=True, exist_ok=True)
        saved: list[str] = []
        rejected: list[tuple[str, str]] = []
        for name in files:
            path = Path(name)
            try:
                if path.suffix.lower() == ".zip":
                    unpacked = _unzip(path, _inside(target, path.stem), self._zip_limits())
                    saved += unpacked.saved
                    rejected += unpacked.rejected
                elif loader_for(path) is None:
                    rejected.append((path.name, f"unsupported file type {path.suffix or '(none)'}"))
                else:
                    shutil.copyfile(path, _inside(target, path.name))
                    saved.append(path.name)
            except UploadRefused as exc:
                rejected.append((path.name, str(exc)))
            except zipfile.BadZipFile as exc:
                rejected.append((path.name, f"bad zip: {exc}"))
            except (OSError, ValueError) as exc:
                rejected.append((path.name, f"cannot save it: {_reason(exc)}"))
        return Upload(saved, rejected)

    def _zip_limits(self) -> ZipLimits:
        return ZipLimits(
            self.settings.upload_max_bytes,
            self.settings.upload_max_files,
            self.settings.data_dir / ".incoming",
        )

    def ingest_uploads(
        self, collection: str, on_file: Callable[[int, int], None] | None = None
    ) -> IngestSummary:
        """Ingest the upload folder in this process, through the collection's open store (created if new)."""
        opened = self.collection(collection, create=True)
        lock = self._ingest_locks.setdefault(collection, threading.Lock())
        if not lock.acquire(blocking=False):
            raise RagError("an ingestion of this collection is already running; wait for it to finish")
        try:
            return IngestJob(opened).run(self.uploads_dir(collection), progress=False, on_file=on_file)
        finally:
            lock.release()

    def documents(self, collection: str) -> list[dict[str, Any]]:
        return self.collection(collection).documents()

    def delete_document(self, collection: str, doc_id: str) -> str:
        """Delete a document's chunks; an uploaded file goes too, so a re-ingest does not bring it back."""
        record = self.collection(collection).delete_document(doc_id)
        uploads = self.uploads_dir(collection).resolve()
        if Path(str(record.get("root"))).resolve() == uploads:
            (uploads / str(record["source"])).unlink(missing_ok=True)
        return str(record["source"])

    def status(self, collection: str) -> dict[str, str]:
        reranker = describe_reranker(self.settings, collection)
        opened = self._collections.get(collection)
        advice = (
            retrain_advice(self.settings, collection, opened.store.document_records()) if opened else None
        )
        if advice:
            reranker += f"; {advice}"
        llm = describe_llm(self.settings)
        where = "embedded llama.cpp server" if llm["embedded"] else llm["host"]
        store = (
            f"Qdrant server {self.settings.qdrant_url}"
            if self.settings.qdrant_url
            else "qdrant-edge (embedded)"
        )
        return {
            "embedder": self.settings.embed_model,
            "reranker": reranker,
            "llm": f"{llm['model']} @ {where}",
            "store": f"{store}, collection {collection!r}",
        }


NAME_MAX_BYTES = 255  # a file name's limit on Linux, macOS and Windows file systems


class UploadRefused(ValueError):
    """An upload over a limit: the message says which, and that nothing of it was kept."""


@dataclass(frozen=True)
class ZipLimits:
    max_bytes: int
    max_files: int
    work_root: Path  # where a zip is unpacked before its files are moved into place

    def too_big(self) -> UploadRefused:
        return UploadRefused(
            f"expands to more than {self.max_bytes / 2**20:g} MB (RAG_UPLOAD_MAX_MB); nothing was saved"
        )


def _inside(folder: Path, name: str) -> Path:
    """folder/name, refused unless it resolves to a path strictly inside folder: a zip named `...zip` has the stem
    `..`, which would unpack into the folder above (another collection's uploads)."""
    root = folder.resolve()
    path = (folder / name).resolve()
    if name in ("", ".", "..") or path == root or not path.is_relative_to(root):
        raise UploadRefused(f"its name {name!r} would leave the upload folder; nothing was saved")
    if len(os.fsencode(path.name)) > NAME_MAX_BYTES:
        raise UploadRefused(f"its name is longer than {NAME_MAX_BYTES} bytes; nothing was saved")
    return path


def _reason(exc: BaseException) -> str:
    return (getattr(exc, "strerror", None) or str(exc)).lower()


def _unzip(path: Path, target: Path, limits: ZipLimits) -> Upload:
    """Unpack the zip's supported documents into target, all or nothing: into a work folder first, counting the
    bytes really written (a member's declared size can lie), then moved into place. Members that would leave
    target, or that no loader reads, are listed as rejected."""
    with zipfile.ZipFile(path) as archive:
        files = [m for m in archive.infolist() if not m.is_dir()]
        if len(files) > limits.max_files:
            raise UploadRefused(
                f"holds more than {limits.max_files} files (RAG_UPLOAD_MAX_FILES); nothing was saved"
            )
        rejected = [
            (f"{path.name}: {m.filename}", why) for m in files if (why := _member_problem(m.filename))
        ]
        wanted = [m for m in files if not _member_problem(m.filename)]
        if unread := [m for m in wanted if loader_for(Path(_member_path(m.filename).name)) is None]:
            rejected.append((path.name, _unsupported(unread)))
            wanted = [m for m in wanted if m not in unread]
        if sum(m.file_size for m in wanted) > limits.max_bytes:
            raise limits.too_big()
        if not wanted:
            raise ValueError("no supported document inside")
        limits.work_root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=limits.work_root))
        try:
            _extract(archive, wanted, work, limits)
            saved = [_move_into(work, _member_path(m.filename), target) for m in wanted]
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return Upload(saved, rejected)


def _member_path(filename: str) -> PurePosixPath:
    """A member's path with Windows separators read as separators: `..\\..\\evil.md` is a parent path too."""
    return PurePosixPath(filename.replace("\\", "/"))


def _member_problem(filename: str) -> str:
    """Why a zip member is not kept, or "": absolute or parent paths would escape the upload folder."""
    name = _member_path(filename)
    if name.is_absolute() or ".." in name.parts or PureWindowsPath(filename).drive:
        return "its path leaves the zip's folder; not saved"
    if any(len(os.fsencode(part)) > NAME_MAX_BYTES for part in name.parts):
        return f"a name in its path is longer than {NAME_MAX_BYTES} bytes; not saved"
    return ""


def _unsupported(members: list[zipfile.ZipInfo]) -> str:
    """One line for a zip's files no loader reads (a project's 500 images are not 500 lines)."""
    suffixes = Counter(_member_path(m.filename).suffix or "(none)" for m in members)
    kinds = ", ".join(f"{suffix} ×{n}" for suffix, n in suffixes.most_common(5))
    return f"{len(members)} file(s) of unsupported types not saved ({kinds})"


def _extract(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], work: Path, limits: ZipLimits) -> None:
    written = 0
    for member in members:
        destination = work / Path(*_member_path(member.filename).parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as src, destination.open("wb") as dst:
            while block := src.read(1 << 20):
                written += len(block)
                if written > limits.max_bytes:
                    raise limits.too_big()
                dst.write(block)


def _move_into(work: Path, name: PurePosixPath, target: Path) -> str:
    destination = target / Path(*name.parts)
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(work / Path(*name.parts), destination)
    return str(destination.relative_to(target.parent))
