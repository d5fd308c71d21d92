"""Folders that stay in sync: a change under a watched folder (debounced, through watchfiles) starts an ingestion
job of that folder, with the same incremental, crash-safe rules as `rag ingest`. A folder whose ingestion left
failed files (a half-written PDF, a file not readable yet) is tried again later, backing off; a real change tries
at once. Nothing is ever deleted for failing: `rag ingest` keeps a failed file's record."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ingest.formats import loader_for
from rag.errors import RagError

log = logging.getLogger("rag.watch")

# Changes are yielded once the folder has been quiet this long (a file being copied writes many times), or at
# the latest after DEBOUNCE_MS of steady writing.
QUIET_MS = 700
DEBOUNCE_MS = 5000
TICK_MS = 1000  # how often retries are looked at when nothing changes
RETRY_S = 5.0  # first retry of a folder whose ingestion had failed files; doubles each time
RETRIES = 5


def parse_watch(entry: str, default_collection: str) -> tuple[str, Path]:
    """`FOLDER` (into the default collection) or `COLLECTION=FOLDER`; a folder whose own name holds `=` is
    taken whole when it exists."""
    name, sep, folder = entry.partition("=")
    if sep and name and not Path(entry).expanduser().exists():
        return name, Path(folder).expanduser()
    return default_collection, Path(entry).expanduser()


class _DocumentChanges:
    """watchfiles' default filter (editor swap files, .git, caches) plus: only files some loader reads, folders,
    and deletions (which may be folders), and nothing inside the app's own data folder (its store changes on every
    ingestion: watching it would loop)."""

    def __init__(self, ignore: list[Path]) -> None:
        from watchfiles import DefaultFilter

        self._default = DefaultFilter()
        self._ignore = [p.resolve() for p in ignore]

    def __call__(self, change: object, path: str) -> bool:
        from watchfiles import Change

        if not self._default(change, path):  # type: ignore[arg-type]
            return False
        resolved = Path(path)
        if any(resolved.is_relative_to(folder) for folder in self._ignore):
            return False
        # a folder moved in brings its files with it and raises one event, for the folder
        return change == Change.deleted or loader_for(resolved) is not None or resolved.is_dir()


class FolderWatcher:
    """Calls on_change(folder) from its own thread when something under a watched folder changed."""

    def __init__(self, folders: list[Path], on_change: Callable[[Path], None], ignore: list[Path]) -> None:
        for folder in folders:
            if not folder.is_dir():
                raise RagError(f"cannot watch {folder}: it is not a folder")
        self.folders = [f.resolve() for f in folders]
        self._on_change = on_change
        self._filter = _DocumentChanges(ignore)
        self._stop = threading.Event()
        self._ready = threading.Event()  # the watches are set: a change from now on is seen
        self._failure: BaseException | None = None
        self._lock = threading.Lock()
        self._retries: dict[Path, tuple[float, int]] = {}  # folder -> (when, attempts so far)
        self._thread = threading.Thread(target=self._loop, name="watch", daemon=True)

    def start(self, timeout_s: float = 30.0) -> None:
        """Returns once the folders are watched, so a change made after it is seen; a watcher that cannot start
        (no inotify watches left, a folder gone) is a RagError here, not a silent thread."""
        self._thread.start()
        self._ready.wait(timeout_s)
        if self._failure is not None or not self._thread.is_alive():
            raise RagError(f"cannot watch {', '.join(map(str, self.folders))}: {self._failure}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def failed(self, folder: Path) -> None:
        """The folder's ingestion left failed files: try again later, each time waiting twice as long."""
        with self._lock:
            _, attempts = self._retries.get(folder, (0.0, 0))
            if attempts >= RETRIES:
                log.warning("giving up retrying %s until a file in it changes", folder)
                self._retries.pop(folder, None)
                return
            self._retries[folder] = (time.monotonic() + RETRY_S * 2**attempts, attempts + 1)

    def succeeded(self, folder: Path) -> None:
        with self._lock:
            self._retries.pop(folder, None)

    def _loop(self) -> None:
        from watchfiles import watch

        try:
            # Filtered here, not by watchfiles: changes it filtered out would not wake this loop, and retries are
            # looked at on every wake-up (a busy log file beside the documents would otherwise starve them).
            for changes in watch(
                *self.folders,
                watch_filter=None,
                debounce=DEBOUNCE_MS,
                step=QUIET_MS,
                stop_event=self._stop,
                rust_timeout=TICK_MS,
                yield_on_timeout=True,
                raise_interrupt=False,
                ignore_permission_denied=True,  # an unreadable subfolder is the ingestion's to report, once
            ):
                self._ready.set()
                paths = {Path(path) for change, path in changes if self._filter(change, path)}
                for folder in self._changed(paths):
                    self._notify(folder)
                for folder in self._due():
                    self._notify(folder)
        except Exception as exc:  # e.g. a watched folder removed: said loudly, not a silent dead thread
            self._failure = exc
            log.exception("watching %s stopped", ", ".join(map(str, self.folders)))
        finally:
            self._ready.set()

    def _changed(self, paths: set[Path]) -> list[Path]:
        changed = [f for f in self.folders if any(p.is_relative_to(f) for p in paths)]
        with self._lock:
            for folder in changed:
                attempts = self._retries.get(folder, (0.0, 0))[1]
                if attempts:  # a real change: try now, and the backoff starts over
                    self._retries[folder] = (float("inf"), 0)
        return changed

    def _due(self) -> list[Path]:
        now = time.monotonic()
        with self._lock:
            due = [f for f, (when, _) in self._retries.items() if when <= now]
            for folder in due:
                when, attempts = self._retries[folder]
                self._retries[folder] = (float("inf"), attempts)  # until this try reports back
        return due

    def _notify(self, folder: Path) -> None:
        log.info("change under %s: ingesting it", folder)
        try:
            self._on_change(folder)
        except RagError as exc:
            log.error("cannot ingest %s: %s", folder, exc)
