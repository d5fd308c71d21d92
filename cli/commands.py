"""Subcommands. Heavy imports happen inside handlers so `rag --help` stays fast."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.config import Settings


def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", type=Path, help="folder of documents (md, txt, rst, html, pdf, docx)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.job import ingest_folder

    summary = ingest_folder(settings, args.folder, progress=False if args.no_progress else None)
    print(json.dumps(summary.as_dict(), indent=2) if args.json else summary.render())
    return 1 if summary.failed else 0


def _docs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the documents as JSON")


def _docs(args: argparse.Namespace, settings: Settings) -> int:
    from rag.documents import list_documents

    docs = list_documents(settings)
    if args.json:
        print(json.dumps(docs, indent=2))
        return 0
    print(_docs_table(docs))
    return 0


def _docs_table(docs: list[dict[str, Any]]) -> str:
    if not docs:
        return "no documents in this collection"
    width = min(70, max(len(d["source"]) for d in docs))
    lines = [f"{'source':<{width}}  {'type':<5} {'chunks':>6} {'pages':>5}  ingested"]
    for d in docs:
        pages = d["pages"] if d["pages"] else "-"
        lines.append(
            f"{d['source']:<{width}}  {d['file_type']:<5} {d['chunks']:>6} {pages:>5}  {d['ingested_at']}"
        )
    lines.append(f"{len(docs)} documents, {sum(d['chunks'] for d in docs)} chunks")
    return "\n".join(lines)


Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, Settings], int]]

COMMANDS: dict[str, Command] = {
    "ingest": ("Ingest a folder into the collection (incremental).", _ingest_args, _ingest),
    "docs": ("List the documents of the collection.", _docs_args, _docs),
}
