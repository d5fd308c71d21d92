"""`rag ingest --ray`: the same ingestion, with its parsing and embedding on a Ray cluster (Ray Data).

The driver (this process) plans as a plain run does (what is new, changed, moved, deleted) and writes as one does
(a document's old points deleted, a provisional record, its chunks, its record last), so the point ids, payloads,
incremental runs and crash safety are the plain run's. In between, Ray Data reads, parses and chunks each file in
tasks across the cluster and embeds the parts in a pool of actors; the parts come back in the planned order.

Every machine of the cluster needs this project installed (`.[ray]`) and the folder at the same path (NFS or a
copy). Ray is an optional extra: nothing here is imported unless `--ray` is asked for.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ingest.job import IngestJob, IngestSummary, _check_folder, _Writer
from ingest.parsing import DocParser, _Doc, _Failed, _Part
from ingest.progress import IngestProgress
from rag.collection import Collection
from rag.config import Settings
from rag.errors import RagError

log = logging.getLogger("rag.ingest.ray")

INSTALL_HINT = "Ray is not installed here: pip install -e '.[ray]' (on every machine of the cluster)"
PASSED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "TIKTOKEN_CACHE_DIR")
CONNECT_TIMEOUT_S = 10
PARTS_PER_EMBED_CALL = 8  # parts (each up to PART_CHUNKS chunks) an embedding actor takes at once


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: RAY_ADDRESS, else a local Ray started for this run
    workers: int = 2  # embedding actors, one CPU each


class RayIngestJob(IngestJob):
    """IngestJob whose parts are parsed and embedded by Ray workers; planning and writing stay here."""

    def __init__(
        self, collection: Collection, options: RayOptions, cancel: threading.Event | None = None
    ) -> None:
        super().__init__(collection, cancel)
        self.options = options

    def _feed(self, work: list[_Doc], writer: _Writer, progress: IngestProgress) -> None:
        progress.note(
            f"parsing and embedding {len(work)} files on Ray ({self.options.workers} embedding workers)…"
        )
        for item, vectors in embedded_parts(self.settings, self.embedder.backend, work, self.options):
            if self.cancel.is_set() and item.doc.doc_id not in writer.open:
                break  # as the plain run: a file whose writing has begun is finished, no new one is begun
            if isinstance(item, _Part):
                progress.chunks_found(len(item.chunks))
                progress.embedded(len(item.chunks))
            writer.take(item, vectors)
            progress.files_finished(writer.flush_if_full())


def embedded_parts(
    settings: Settings, backend: str | None, work: list[_Doc], options: RayOptions
) -> Iterator[tuple[_Part | _Failed, np.ndarray | None]]:
    """Each document's parts (or its failure) with their vectors, in the order of work."""
    ray = _connect(options.address)
    try:
        import ray.data

        # Its plan, timings and notices (one says progress bars are off): the job reports its own progress.
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # a document's parts in a row, in work's order
        context.enable_progress_bars = False  # the job's own progress shows files and chunks
        docs = ray.data.from_items([{"doc": pickle.dumps(d)} for d in work], override_num_blocks=len(work))
        # Parsing takes no CPU of the cluster's accounting, so it never waits behind the embedding actors that
        # hold them all: it runs beside them, as the plain run's parser thread does, as many tasks at once as
        # there are embedding workers (unbounded, Ray ran one process per file and they starved the embedders).
        parts = docs.flat_map(
            _parse,
            fn_kwargs={"settings": settings, "backend": backend},
            num_cpus=0,
            compute=ray.data.TaskPoolStrategy(size=options.workers),
        )
        embedded = parts.map_batches(
            _Embed,
            fn_constructor_kwargs={"settings": settings, "backend": backend},
            batch_size=PARTS_PER_EMBED_CALL,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=options.workers),
            num_cpus=1,
        )
        for row in embedded.iter_rows():
            item = pickle.loads(row["item"])
            vectors = pickle.loads(row["vectors"])
            yield item, (vectors if isinstance(item, _Part) else None)
    finally:
        ray.shutdown()


def _connect(address: str | None) -> Any:
    if "RAY_AUTH_MODE" not in os.environ and _token_available():
        # `ray start` turns token authentication on when it finds a token; a driver does not, and is then refused
        # (it retries for a minute first). The same rule here: the token Ray would send is sent.
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        import ray
    except ImportError:
        raise RagError(INSTALL_HINT) from None
    env = {name: value for name in PASSED_ENV if (value := os.environ.get(name))}
    if where := _address(address):
        _check_reachable(where)
    try:
        if where:
            ray.init(
                address=where,
                runtime_env={"env_vars": env},
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        else:
            ray.init(
                runtime_env={"env_vars": env},
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RagError(f"cannot reach the Ray cluster at {where or 'a new local Ray'}: {exc}") from None
    return ray


def _address(address: str | None) -> str | None:
    """The cluster to join: the one asked for, else RAY_ADDRESS; None starts a local Ray for the run."""
    return address or os.environ.get("RAY_ADDRESS") or None


def _token_available() -> bool:
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path).is_file()


def _check_reachable(address: str) -> None:
    """A host:port that nothing answers fails now, in one line: ray.init would retry it for minutes."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", ray://…: Ray resolves those itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise RagError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} "
            "(start one with `ray start --head`, then pass its address)"
        ) from None


_parsers: dict[str, DocParser] = {}


def _parse(row: dict[str, Any], settings: Settings, backend: str | None) -> list[dict[str, bytes]]:
    """One document's parts, each pickled whole (chunks and their document), as the plain run's parser makes them."""
    from rag.embedder import LazyEmbedder

    key = f"{backend}:{settings.model_dump_json()}"
    if key not in _parsers:  # one per worker process: the tokenizer loads once
        _parsers[key] = DocParser(settings, LazyEmbedder(settings, backend))
    doc = pickle.loads(row["doc"])
    return [{"item": pickle.dumps(item)} for item in _parsers[key].parts(doc, IngestProgress(False))]


class _Embed:
    """An embedding actor: the collection's embedder (same model, same backend), one thread per CPU it holds."""

    def __init__(self, settings: Settings, backend: str | None) -> None:
        from rag.embedder import embedder_from_settings

        self.embedder = embedder_from_settings(settings.model_copy(update={"embed_threads": 1}), backend)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [pickle.loads(b) for b in batch["item"]]
        texts = [c.embed_text() for item in items if isinstance(item, _Part) for c in item.chunks]
        vectors = self.embedder.embed(texts) if texts else np.empty((0, 0), dtype=np.float32)
        out, cursor = [], 0
        for item in items:
            count = len(item.chunks) if isinstance(item, _Part) else 0
            out.append(pickle.dumps(np.asarray(vectors[cursor : cursor + count], dtype=np.float32)))
            cursor += count
        return {"item": batch["item"], "vectors": np.array(out, dtype=object)}


def ingest_folder_on_ray(
    settings: Settings, root: Path, options: RayOptions, progress: bool | None = None
) -> IngestSummary:
    """`rag ingest --ray`: as ingest_folder, with RayIngestJob (Ray starts only if some file must be embedded)."""
    _check_folder(root)
    if where := _address(options.address):
        _check_reachable(where)  # before the collection is created: a wrong address must not leave one behind
    with Collection(settings, create=True) as collection:
        return RayIngestJob(collection, options).run(root, progress)
