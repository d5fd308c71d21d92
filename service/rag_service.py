"""What the UI and the API do, without Gradio or HTTP: collections and their chat, uploads, ingestion, deletion,
training, status."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from ingest.job import IngestJob, IngestSummary
from rag.answer import ChatPipeline, open_chat
from rag.collection import Collection
from rag.config import Settings
from rag.errors import CollectionExists, RagError
from rag.filters import FilterRequest, search_filter
from rag.llm import describe_llm
from rag.rerank import describe_reranker, retrain_advice
from rag.store import SearchFilter, check_collection_name, list_collections
from rag.store.payload import DocumentRecord
from service.access import Credentials
from service.accounts import OPEN, Accounts, NotLoggedIn, Principal
from service.appdb import FILE_NAME, AppDatabase, looks_like_sqlite
from service.conversations import ConversationStore
from service.jobs import Job, JobQueue, JobState
from service.uploads import Upload, ZipLimits, save_uploads
from service.watch import FolderWatcher, parse_watch
from training.collection_reranker import Outcome, mine_for_training, train_collection_reranker, uninstall
from training.reranker import MiningOptions

log = logging.getLogger("rag.service")


class RagService:
    """Shared by every browser session and API request of one app process; safe to call from worker threads.

    Each collection is opened once and kept; its chat pipeline (which starts the LLM) only when a question comes,
    so documents can be listed, uploaded and deleted whatever the LLM's state.
    """

    def __init__(self, settings: Settings, job_progress: bool | None = False) -> None:
        """job_progress: what ingestion jobs show on stderr (False: nothing; None: a bar on a terminal)."""
        self.settings = settings
        self._collections: dict[str, Collection] = {}
        self._chats: dict[str, ChatPipeline] = {}
        self._lock = threading.Lock()
        self._chat_lock = threading.Lock()
        self._train_locks: dict[str, threading.Lock] = {}
        self._job_progress = job_progress
        self._job_listeners: list[Callable[[Job], None]] = []
        self.jobs = JobQueue(self._run_job, self._job_finished)
        self.database = AppDatabase(settings.data_dir / FILE_NAME)
        self.conversations = ConversationStore(self.database)
        self.accounts = Accounts(self.database)
        # Whether logins are the users' is decided once, at start: `rag users add` takes effect at the next one.
        self._accounts_error: str | None = None
        self.accounts_on = self._accounts_exist()
        self._watcher: FolderWatcher | None = None
        self._watched: dict[Path, list[str]] = {}  # folder -> the collections it feeds

    def _accounts_exist(self) -> bool:
        """Whether users exist. A file that is not a database at all holds none: said, and the app runs as with no
        users (the chat unsaved). A database that cannot be read now (locked, from a newer version, damaged) may
        hold users: the web server will not start on it (`credentials`)."""
        try:
            return self.accounts.exist()
        except RagError as exc:
            if looks_like_sqlite(self.database.path):
                self._accounts_error = f"{exc}: cannot tell who may log in, so the server does not start"
                return True
            log.warning("%s: running as with no users", exc)
            return False

    def credentials(self, user: str | None = None, password: str | None = None) -> Credentials:
        """What the web server asks of a request: the users' logins and keys, or else the one key or login."""
        if self._accounts_error:
            raise RagError(self._accounts_error)
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else None
        accounts = self.accounts if self.accounts_on else None
        return Credentials.of(key, user, password, accounts, self.settings.session_hours)

    def principal(self, user: str | None) -> Principal:
        """Who a UI request's login is, with their roles as they are now; everyone without users."""
        if not self.accounts_on:
            return OPEN
        found = self.accounts.principal(user) if user else None
        if found is None:
            raise NotLoggedIn("this login no longer exists: log in again")
        return found

    def visible_collections(self, principal: Principal) -> list[str]:
        """The collections this user may read (an admin: all, and the configured one)."""
        return principal.visible(self.collections())

    def audit(
        self,
        actor: str,
        action: str,
        collection: str | None = None,
        target: str | None = None,
        detail: str = "",
    ) -> None:
        """A line in the audit log; a log that cannot be written is a warning, not a failed action."""
        try:
            self.accounts.record(actor or "(no users)", action, collection, target, detail)
        except RagError as exc:
            log.warning("not audited (%s %s %s): %s", actor, action, collection, exc)

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

    def create_collection(self, name: str, actor: str = "") -> str:
        """An empty collection, ready for uploads: the only way the UI creates one (besides ingesting)."""
        name = check_collection_name((name or "").strip())
        if name in list_collections(self.settings):
            raise CollectionExists(f"collection {name!r} already exists")
        self.collection(name, create=True).ensure_created()
        self.audit(actor, "create collection", name)
        return name

    def train_reranker(
        self,
        collection: str,
        minutes: float,
        on_step: Callable[[int, float], None] | None = None,
        actor: str = "",
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
        self.audit(
            actor, "train reranker", collection, detail=f"{minutes:g} min; installed: {outcome.replaced}"
        )
        if outcome.replaced:
            with self._chat_lock:
                self._chats.pop(collection, None)
        return outcome

    def uninstall_reranker(self, collection: str, actor: str = "") -> str:
        """Take the collection's reranker out of use; the next question ranks with the first stage."""
        settings = self.settings.model_copy(update={"collection": check_collection_name(collection)})
        lock = self._train_locks.setdefault(collection, threading.Lock())
        if not lock.acquire(blocking=False):
            raise RagError("a reranker for this collection is being trained; wait for it to finish")
        try:
            message = uninstall(settings)
        finally:
            lock.release()
        self.audit(actor, "uninstall reranker", collection)
        with self._chat_lock:
            self._chats.pop(collection, None)
        return message

    def close(self) -> None:
        """Stop watching, cancel the ingestion jobs (what they finished stays), close the stores."""
        if self._watcher is not None:
            self._watcher.stop()
        self.jobs.close()
        with self._lock:
            for collection in self._collections.values():
                collection.close()
            self._collections.clear()
            self._chats.clear()

    def uploads_dir(self, collection: str) -> Path:
        return self.settings.data_dir / "uploads" / check_collection_name(collection)

    def save_uploads(self, collection: str, files: list[str], actor: str = "") -> Upload:
        """Copy uploaded files (zips unpacked, safely) into the collection's upload folder."""
        limits = ZipLimits(
            self.settings.upload_max_bytes,
            self.settings.upload_max_files,
            self.settings.data_dir / ".incoming",
        )
        saved = save_uploads(files, self.uploads_dir(collection), limits)
        if saved.saved:  # a refused upload changed nothing
            names = ", ".join(saved.saved[:20]) + (
                f" and {len(saved.saved) - 20} more" if len(saved.saved) > 20 else ""
            )
            detail = f"{len(saved.saved)} saved, {len(saved.rejected)} rejected"
            self.audit(actor, "upload", collection, names, detail)
        return saved

    def ingest_uploads(self, collection: str) -> Job:
        """Queue an ingestion of the collection's upload folder; it runs in the background (one job at a time per
        collection), and the job reports its progress and can be cancelled."""
        folder = self.uploads_dir(collection)  # checks the name first
        return self.jobs.submit(collection, folder, "upload")

    def ingest_uploads_now(self, collection: str) -> IngestSummary:
        """The same job, waited for: a script's call that wants the summary."""
        job = self.ingest_uploads(collection)
        job.done.wait()
        if job.state is JobState.FAILED or job.summary is None:
            raise RagError(job.error or "the ingestion was cancelled before it started")
        return job.summary

    def watch(
        self, folders: list[tuple[str, Path]], on_job: Callable[[Job], None] | None = None
    ) -> list[Job]:
        """Keep these folders in sync with their collections: watched first (a change from then on is seen), then
        each is ingested now (changes made while nothing watched), and again after every change under it. on_job
        hears of each job that ends."""
        if on_job is not None:
            self._job_listeners.append(on_job)
        resolved = [(check_collection_name(name), folder.expanduser().resolve()) for name, folder in folders]
        for name, folder in resolved:
            self._watched.setdefault(folder, [])
            if name not in self._watched[folder]:
                self._watched[folder].append(name)
        self._watcher = FolderWatcher(list(self._watched), self._folder_changed, [self.settings.data_dir])
        self._watcher.start()
        return [self.jobs.submit(name, folder, "watch") for name, folder in resolved]

    def watch_configured(self) -> list[Job]:
        """The folders of RAG_WATCH (and `--watch`), if any."""
        if not self.settings.watch:
            return []
        return self.watch([parse_watch(entry, self.settings.collection) for entry in self.settings.watch])

    def _folder_changed(self, folder: Path) -> None:
        for name in self._watched[folder]:  # one folder may feed several collections
            self.jobs.submit(name, folder, "watch")

    def _run_job(self, job: Job) -> IngestSummary:
        opened = self.collection(job.collection, create=True)
        job.ingest = IngestJob(opened, job.cancel_event)
        return job.ingest.run(job.folder, progress=self._job_progress)

    def _job_finished(self, job: Job) -> None:
        watcher = self._watcher
        if watcher is not None and job.origin == "watch":
            if job.state is JobState.FAILED or (job.summary and job.summary.failed):
                watcher.failed(job.folder)
            else:
                watcher.succeeded(job.folder)
        for listener in self._job_listeners:
            listener(job)

    def documents(self, collection: str) -> list[DocumentRecord]:
        return self.collection(collection).documents()

    def search_filter(self, collection: str, request: FilterRequest) -> SearchFilter | None:
        """The store's filter for a question asked within chosen documents, types, a folder or dates."""
        return search_filter(request, self.documents(collection) if request.documents else [])

    def delete_document(self, collection: str, doc_id: str, actor: str = "") -> str:
        """Delete a document's chunks; an uploaded file goes too, so a re-ingest does not bring it back."""
        record = self.collection(collection).delete_document(doc_id)
        uploads = self.uploads_dir(collection).resolve()
        if Path(record.root).resolve() == uploads:
            (uploads / record.source).unlink(missing_ok=True)
        self.audit(actor, "delete document", collection, record.source)
        return record.source

    def remove_missing(self, collection: str, actor: str = "") -> list[DocumentRecord]:
        """Remove the documents whose files are gone."""
        removed = self.collection(collection).remove_missing()
        if removed:
            self.audit(
                actor, "remove missing documents", collection, ", ".join(d.source for d in removed[:20])
            )
        return removed

    def cancel_job(self, job_id: str, collection: str, actor: str = "") -> Job:
        job = self.jobs.cancel(job_id, collection)
        self.audit(actor, "cancel ingestion", collection, job_id)
        return job

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
        backend = opened.embedder.backend if opened else None
        return {
            "embedder": f"{self.settings.embed_model} ({backend})" if backend else self.settings.embed_model,
            "reranker": reranker,
            "llm": f"{llm['model']} @ {where}",
            "store": f"{store}, collection {collection!r}",
        }
