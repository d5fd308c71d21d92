"""Subcommands. Heavy imports happen inside handlers so `rag --help` stays fast."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.numbers import positive, whole
from cli.train import TrainOptions, train_and_report, train_args, train_command
from cli.users import users_args, users_command
from rag.config import AnswerMode, Settings
from rag.errors import RagError
from rag.text import printable

if TYPE_CHECKING:
    from rag.collection import Collection
    from rag.store.payload import DocumentRecord


def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "folder",
        type=Path,
        help="folder of documents (md, txt, rst, html, pdf, docx, pptx, xlsx, csv, epub, ipynb, json, eml, odt)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    p.add_argument(
        "--exclude", action="append", default=[], help="glob on relative paths to leave out; repeatable"
    )
    p.add_argument(
        "--workers",
        type=whole(0, 256),
        default=None,
        help="processes that parse files beside the embedder, several at once (RAG_INGEST_WORKERS; 0: a thread)",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="then keep watching the folder: a file added, changed or deleted is ingested within seconds (Ctrl+C stops)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="parse and embed on a Ray cluster (RAY_ADDRESS or ADDRESS, e.g. 10.0.0.5:6379; none: a local Ray for "
        "this run); needs the [ray] extra on every machine and the folder at the same path on each",
    )
    p.add_argument(
        "--ray-workers",
        type=whole(1, 1024),
        default=2,
        help="with --ray: embedding workers, one CPU each (default 2)",
    )
    p.add_argument(
        "--train-reranker",
        action="store_true",
        help="then train the collection's reranker (see train-reranker)",
    )
    p.add_argument(
        "--minutes", type=positive, default=15.0, help="with --train-reranker: training time budget"
    )


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.job import ingest_folder

    settings = settings.model_copy(update={"ingest_exclude": [*settings.ingest_exclude, *args.exclude]})
    if args.workers is not None:
        settings = settings.model_copy(update={"ingest_workers": args.workers})
    if args.watch:
        if args.train_reranker:
            raise RagError("--watch runs until stopped: train the reranker with `rag train-reranker` instead")
        if args.ray is not None:
            raise RagError("--watch ingests each change on this machine: leave out --ray")
        return _watch(settings, args.folder, args.json, args.no_progress)
    progress = False if args.no_progress else None
    if args.ray is not None:
        from ingest.ray_ingest import RayOptions, ingest_folder_on_ray

        options = RayOptions(args.ray or None, args.ray_workers)
        summary = ingest_folder_on_ray(settings, args.folder, options, progress)
    else:
        summary = ingest_folder(settings, args.folder, progress=progress)
    print(json.dumps(summary.as_dict(), indent=2) if args.json else summary.render())
    if args.train_reranker:
        train_and_report(settings, TrainOptions(minutes=args.minutes))
    return 1 if summary.failed else 0


def _watch(settings: Settings, folder: Path, as_json: bool, quiet: bool) -> int:
    """Ingest the folder, then again after each change under it, printing each run's summary; Ctrl+C stops
    (a run in progress stops at its next file; what it finished stays)."""
    import threading
    import time

    from service import RagService
    from service.jobs import Job, JobState

    def report(job: Job) -> None:
        if job.state is JobState.FAILED:
            print(f"error: {job.error}", file=sys.stderr, flush=True)
        elif job.summary is not None and (as_json or job.summary.changed or job.summary.failed):
            when = time.strftime("%H:%M:%S")
            text = json.dumps(job.summary.as_dict()) if as_json else f"[{when}]\n{job.summary.render()}"
            print(text, flush=True)

    service = RagService(settings, job_progress=False if quiet else None)
    try:
        service.watch([(settings.collection, folder)], on_job=report)
        print(f"watching {folder.resolve()} (Ctrl+C stops)", file=sys.stderr, flush=True)
        threading.Event().wait()
    finally:
        service.close()
    return 0


def _docs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the documents as JSON")
    p.add_argument(
        "--prune",
        action="store_true",
        help="list the documents whose files are gone (deleted, or moved and not ingested again); removes nothing",
    )
    p.add_argument("--yes", action="store_true", help="with --prune: remove them, chunks and records")


def _docs(args: argparse.Namespace, settings: Settings) -> int:
    from rag.collection import Collection
    from rag.errors import RagError
    from rag.rerank import describe_reranker, retrain_advice

    if args.yes and not args.prune:
        raise RagError("--yes goes with --prune: rag docs --prune --yes")
    with Collection(settings) as collection:
        if args.prune:
            return _prune(collection, args.yes, args.json)
        docs = collection.documents()
        gone = len(collection.missing_documents())
        advice = retrain_advice(settings, collection.name, collection.store.document_records())
    if args.json:
        print(json.dumps([d.listing() for d in docs], indent=2))
        return 0
    print(_docs_table(docs))
    print(f"reranker: {describe_reranker(settings)}")
    if gone:
        print(f"note: {_documents(gone)} whose files are gone: `rag docs --prune` lists them")
    if advice:
        print(f"note: {advice}")
    return 0


def _prune(collection: Collection, remove: bool, as_json: bool) -> int:
    """The documents whose files are gone, listed by their full path; removed only with --yes."""
    gone = collection.remove_missing() if remove else collection.missing_documents()
    if as_json:
        listed = [{**d.listing(), "path": d.path} for d in gone]
        print(json.dumps({"removed": remove, "documents": listed}, indent=2))
        return 0
    if not gone:
        print("no document's file is gone: nothing to remove")
        return 0
    print(f"{'removed' if remove else 'found'} {_documents(len(gone))} whose files are gone:")
    print("\n".join(f"  {printable(d.path)}" for d in gone))
    if not remove:
        print("nothing removed: run `rag docs --prune --yes` to remove them")
    return 0


def _documents(count: int) -> str:
    return "1 document" if count == 1 else f"{count} documents"


def _docs_table(docs: list[DocumentRecord]) -> str:
    if not docs:
        return "no documents in this collection"
    sources = [printable(d.source) for d in docs]
    width = min(70, max(len(s) for s in sources))
    # ocr: how many of its pages (or images) were read by OCR
    lines = [f"{'source':<{width}}  {'type':<5} {'chunks':>6} {'pages':>5} {'ocr':>4}  ingested"]
    for d, source in zip(docs, sources, strict=True):
        pages, ocr = d.pages or "-", d.ocr_pages or "-"
        when = "incomplete: interrupted, re-run rag ingest" if d.incomplete else d.ingested_at
        lines.append(f"{source:<{width}}  {d.file_type:<5} {d.chunks:>6} {pages:>5} {ocr:>4}  {when}")
    lines.append(f"{len(docs)} documents, {sum(d.chunks for d in docs)} chunks")
    return "\n".join(lines)


def _ask_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", help="your question, in quotes")
    _answer_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")


def _answer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mode",
        choices=AnswerMode.chosen(),
        help="evidence: the documents' own sentences, cited (no LLM); generate: the LLM's answer; both "
        "(RAG_ANSWER_MODE)",
    )
    p.add_argument("--top-k", type=whole(1, 1000), help="candidates from hybrid search (default 30)")
    p.add_argument("--top-n", type=whole(1, 100), help="passages kept after reranking (default 5)")
    p.add_argument("--no-rerank", action="store_true", help="skip the cross-encoder, keep the fused order")
    p.add_argument("--path", help="only documents under this relative folder or file")
    p.add_argument(
        "--type", action="append", default=[], help="only this file type (md, pdf, html...); repeatable"
    )
    p.add_argument(
        "--doc",
        action="append",
        default=[],
        help="only this document (its path as `rag docs` lists it); repeatable",
    )
    p.add_argument("--since", help="only documents ingested on or after this date (YYYY-MM-DD, UTC)")
    p.add_argument("--until", help="only documents ingested on or before this date (YYYY-MM-DD, UTC)")


def _answer_options(args: argparse.Namespace, pipeline: Any) -> dict[str, Any]:
    from rag.filters import FilterRequest, search_filter

    within = FilterRequest(args.doc, args.type, args.path, args.since, args.until)
    documents = pipeline.searcher.collection.documents() if args.doc else []
    flt = search_filter(within, documents)
    return {"top_k": args.top_k, "top_n": args.top_n, "rerank": not args.no_rerank, "flt": flt}


@contextmanager
def _chat_session(
    settings: Settings, mode: str | None, check: Callable[[], None] = lambda: None
) -> Iterator[tuple[Any, Any]]:
    """The collection's chat pipeline and a status line that says what happens meanwhile, closed after use.
    `check` runs after the first status line and before the embedder and the store load."""
    from cli.terminal import StatusLine

    status = StatusLine()
    # Shown before the imports below: openai and torch take seconds to import on a busy 2-core machine.
    status.show(f"opening collection {settings.collection!r} and loading the models…")
    try:
        check()
        from rag.answer import open_chat
        from rag.collection import Collection

        settings = settings.model_copy(update={"answer_mode": mode or settings.answer_mode})
        with Collection(settings) as collection:
            yield open_chat(collection, with_llm=settings.answer_mode != AnswerMode.EVIDENCE), status
    finally:
        status.clear()


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    from rag.question import check_question

    check = partial(check_question, args.question, settings)
    with _chat_session(settings, args.mode, check) as (pipeline, status):
        if args.json:
            status.clear()
            print(
                json.dumps(pipeline.ask(args.question, **_answer_options(args, pipeline)).as_json(), indent=2)
            )
        else:
            _print_answer(pipeline, args.question, [], _answer_options(args, pipeline), status)
    return 0


def _print_answer(
    pipeline: Any, question: str, history: list[Any], options: dict[str, Any], status: Any
) -> Any:
    """Stream one answer to stdout (what is happening on the status line meanwhile), then sources and timings."""
    import sys

    from rag.answer import Answer, Status

    answer: Answer | None = None
    for event in pipeline.stream(question, history, **options):
        if isinstance(event, Answer):
            answer = event
        elif isinstance(event, Status):
            status.show(event.text)
        else:
            status.clear()
            sys.stdout.write(event.text)
            sys.stdout.flush()
    assert answer is not None
    print("\n")
    if answer.searched_for:
        print(f"(searched for: {answer.searched_for})\n")
    if answer.unsupported:
        print("Not supported by the passages (check before relying on them):")
        print("\n".join(f"  ! {text}" for text in answer.unsupported) + "\n")
    print(_sources_text(answer))
    print(_timings_text(answer))
    return answer


def _timings_text(answer: Any) -> str:
    names = {
        "retrieve_ms": "retrieve",
        "rerank_ms": "rerank",
        "first_token_ms": "first token",
        "total_ms": "total",
    }
    timings = answer.timings.as_json()
    parts = [f"{label} {timings[key] / 1000:.2f} s" for key, label in names.items() if timings.get(key)]
    return "(" + " · ".join(parts) + ")"


def _chat_args(p: argparse.ArgumentParser) -> None:
    _answer_args(p)
    p.add_argument("--list", action="store_true", help="list the saved conversations (the UI's too) and exit")
    p.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="ID",
        help="continue a saved conversation (its id or the start of it; without one, the latest)",
    )


def _chat(args: argparse.Namespace, settings: Settings) -> int:
    """An interactive session: each question sees the conversation so far, so follow-ups work; every turn is saved
    (the UI lists it too)."""
    import readline  # noqa: F401  (line editing and history for input())

    from service.appdb import FILE_NAME
    from service.conversations import ConversationStore

    store = ConversationStore(settings.data_dir / FILE_NAME)
    if args.list:
        print(_conversations_table(store))
        return 0
    saved = _resumed(store, args.resume) if args.resume is not None else None
    if saved is not None:
        settings = settings.model_copy(update={"collection": saved.collection})
    with _chat_session(settings, args.mode) as (pipeline, status):
        status.clear()
        _converse(pipeline, args, status, _SavedChat(store, settings.collection, saved))
    return 0


def _conversations_table(store: Any) -> str:
    listed = store.conversations(LOCAL_OWNER)
    if not listed:
        return "No saved conversations yet: `rag chat` and the UI save them."
    rows = [f"{'id':<8}  {'last turn (UTC)':<16}  {'turns':>5}  {'collection':<16}  title"]
    for c in listed:
        rows.append(
            f"{c.id[:8]}  {c.updated_at[:16].replace('T', ' '):<16}  {c.messages // 2:>5}  {c.collection:<16}  "
            f"{printable(c.title)}"
        )
    return "\n".join(rows)


def _resumed(store: Any, wanted: str) -> Any:
    """The conversation to continue: by id (or its start), or the latest."""
    if wanted:
        return store.get(LOCAL_OWNER, wanted)
    listed = store.conversations(LOCAL_OWNER)
    if not listed:
        raise RagError("no saved conversation to resume: `rag chat` starts one")
    return listed[0]


LOCAL_OWNER = ""  # the terminal's conversations are the UI's when it has no login


class _SavedChat:
    """The session's conversation in the store: its earlier turns, and each new one saved (a failure to save is
    said once; the chat goes on)."""

    def __init__(self, store: Any, collection: str, saved: Any) -> None:
        self.store, self.collection = store, collection
        self.id = saved.id if saved is not None else ""
        self.title = saved.title if saved is not None else ""
        self.warned = False

    def history(self) -> list[Any]:
        from rag.answer import Turn

        if not self.id:
            return []
        from service.viewer import unlinked

        return [Turn(m.role, unlinked(m.content)) for m in self.store.messages(LOCAL_OWNER, self.id)]

    def save(self, question: str, answer: Any) -> None:
        from service.conversations import answer_record

        try:
            self.id = self.id or self.store.create(LOCAL_OWNER, self.collection, question)
            self.store.add_turn(LOCAL_OWNER, self.id, question, answer.answer, answer_record(answer))
        except RagError as exc:
            if not self.warned:
                print(f"warning: {exc}; this conversation is not being saved", file=sys.stderr)
                self.warned = True


def _converse(pipeline: Any, args: argparse.Namespace, status: Any, saved: _SavedChat) -> None:
    from rag.answer import Turn

    llm = pipeline.llm.info.describe() if pipeline.llm else "no LLM"
    print(
        f"Chatting with collection {pipeline.searcher.collection.name!r} ({llm}). /new starts over; Ctrl-D quits."
    )
    history: list[Turn] = saved.history()
    if history:
        print(f"(continuing {saved.title!r}, {len(history) // 2} turns; its last answer:)")
        print(history[-1].content)
    while (question := _read_question()) is not None:
        if question == "/new":
            history, saved.id = [], ""
            print("(new conversation)")
            continue
        try:
            answer = _print_answer(pipeline, question, history, _answer_options(args, pipeline), status)
        except RagError as exc:
            status.clear()
            print(f"error: {exc}")
            continue
        saved.save(question, answer)
        history += [Turn("user", question), Turn("assistant", answer.answer)]


def _read_question() -> str | None:
    """The next non-empty line, or None at end of input."""
    while True:
        try:
            line = input("\n> ").strip()
        except EOFError:
            print()
            return None
        if line:
            return line


def _sources_text(answer: Any) -> str:
    if answer.refused:
        return "(no source: the documents do not hold an answer to this)"
    attributed = answer.sources and all(s.cited_by == "similarity" for s in answer.sources)
    header = (
        "Sources (the model cited none; matched to the answer by similarity):" if attributed else "Sources:"
    )
    lines = [header] if answer.sources else ["(the answer cites no source)"]
    for s in answer.sources:
        lines.append(f"  [{s.n}] {s.source}{s.location()}  (score {s.score:.2f})\n      {s.snippet}")
    if answer.invalid_citations:
        lines.append(f"  invalid citations removed: {answer.invalid_citations}")
    return "\n".join(lines)


def _server_args(port: int) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)"
        )
        p.add_argument("--port", type=whole(1, 65535), default=port)
        p.add_argument(
            "--watch",
            action="append",
            default=[],
            metavar="FOLDER",
            help="keep this folder in sync with the collection (COLLECTION=FOLDER for another); repeatable "
            "(RAG_WATCH)",
        )

    return add


def _ui_password(settings: Settings) -> str | None:
    return settings.ui_password.get_secret_value() if settings.ui_password else None


def _with_watch(args: argparse.Namespace, settings: Settings) -> Settings:
    return settings.model_copy(update={"watch": [*settings.watch, *args.watch]})


def _ui(args: argparse.Namespace, settings: Settings) -> int:
    settings = _with_watch(args, settings)
    with _uploads_in_data_dir(settings):
        from ui.server import launch

        launch(settings, args.host, args.port, settings.ui_user, _ui_password(settings))
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    settings = _with_watch(args, settings)
    with _uploads_in_data_dir(settings):
        from cli.serve import run

        run(settings, args.host, args.port, settings.ui_user, _ui_password(settings))
    return 0


@contextmanager
def _uploads_in_data_dir(settings: Settings) -> Iterator[None]:
    """Gradio keeps every uploaded file in its temporary folder (/tmp/gradio), outside the data folder, after the
    server stops, refused uploads too: its folder is put under the data folder (before gradio is imported: it
    reads GRADIO_TEMP_DIR then) and emptied when the server stops. A folder the user chose is left alone."""
    import os
    import shutil

    if os.environ.get("GRADIO_TEMP_DIR"):
        yield
        return
    folder = settings.data_dir / ".incoming" / "ui"
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _eval_args(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--qa", type=Path, help="QA file: one JSON object a line")
    source.add_argument(
        "--from-feedback",
        action="store_true",
        help="the answers rated in the UI, as a QA file (OUT/feedback-qa.jsonl): thumbs-up ones with their cited "
        "sources as gold; thumbs-down ones marked needs_gold",
    )
    p.add_argument("--docs", type=Path, help="ingest this folder into the collection first")
    p.add_argument("--exclude", action="append", default=[], help="with --docs: glob of paths to leave out")
    p.add_argument("--out", type=Path, default=Path("eval-out"), help="where results go (default eval-out/)")
    p.add_argument("--no-llm", action="store_true", help="retrieval metrics only")
    p.add_argument("--limit", type=whole(1), help="only the first N questions")
    p.add_argument("--judge-url", help="OpenAI-compatible endpoint of an LLM judge (off by default)")
    p.add_argument("--judge-model", help="the judge's model name")


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    import os

    from evals.judge import Judge
    from evals.qa import QAFormatError
    from evals.run import EvalOptions, run_eval
    from rag.errors import RagError

    judge = (
        Judge(args.judge_url, args.judge_model, os.environ.get("RAG_JUDGE_API_KEY"))
        if args.judge_url
        else None
    )
    settings = settings.model_copy(update={"ingest_exclude": [*settings.ingest_exclude, *args.exclude]})
    qa = _feedback_qa(settings, args.out) if args.from_feedback else args.qa
    options = EvalOptions(qa, args.out, args.docs, None, args.no_llm, args.limit, judge)
    try:
        summary = run_eval(settings, options)
    except QAFormatError as exc:
        raise RagError(str(exc)) from None
    print(json.dumps(summary["by_kind" if "by_kind" in summary else "retrieval"], indent=2))
    if summary.get("warning"):
        print(f"warning: {summary['warning']}")
    print(f"report: {args.out / 'report.md'}")
    return 0


def _feedback_qa(settings: Settings, out: Path) -> Path:
    """The collection's rated answers written as a QA file; what it holds said on stderr."""
    from service.appdb import FILE_NAME
    from service.conversations import ConversationStore
    from service.feedback import export_feedback

    path = out / "feedback-qa.jsonl"
    records = export_feedback(ConversationStore(settings.data_dir / FILE_NAME), path, settings.collection)
    if not records:
        raise RagError(
            f"no answer in collection {settings.collection!r} has been rated yet: 👍/👎 in the UI's chat rate them"
        )
    up = sum(r["rating"] > 0 for r in records)
    print(
        f"{len(records)} rated answers ({up} 👍, {len(records) - up} 👎, which need their gold sources filled in) "
        f"written to {path}",
        file=sys.stderr,
    )
    return path


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, Settings], int]]

COMMANDS: dict[str, Command] = {
    "ingest": ("Ingest a folder into the collection (incremental).", _ingest_args, _ingest),
    "docs": (
        "List the documents of the collection; --prune lists (--yes removes) those whose files are gone.",
        _docs_args,
        _docs,
    ),
    "ask": ("Ask a question; streams a cited answer.", _ask_args, _ask),
    "chat": ("Chat in the terminal: follow-up questions see the conversation.", _chat_args, _chat),
    "ui": ("Open the chat UI in the browser (Gradio).", _server_args(7860), _ui),
    "serve": (
        "Serve an OpenAI-compatible API (/v1/chat/completions, models, embeddings, documents) and the UI.",
        _server_args(8000),
        _serve,
    ),
    "eval": ("Measure retrieval and answer quality on a QA file.", _eval_args, _eval),
    "train-reranker": (
        "Train the collection's own cross-encoder (used by ask, chat, ui and eval from then on).",
        train_args,
        train_command,
    ),
    "users": (
        "Users of rag ui and rag serve: add, list, passwd, remove, grant, revoke, key, revoke-key, audit.",
        users_args,
        users_command,
    ),
}
