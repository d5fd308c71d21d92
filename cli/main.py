"""`rag ingest | docs | ask | ui | eval`: parses flags, runs the job, turns errors into one line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from rag.config import Settings, load_settings
from rag.errors import RagError

Handler = Callable[[argparse.Namespace, Settings], int]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="where the embedded store lives (RAG_DATA_DIR)")
    parser.add_argument("--collection", help="collection name (RAG_COLLECTION, default 'default')")
    parser.add_argument("--config", type=Path, help="TOML settings file (RAG_CONFIG)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rag", description="Offline RAG: ask questions about your documents."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    from cli import commands

    for name, (help_text, add_args, handler) in commands.COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        _common(command)
        add_args(command)
        command.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("RAG_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s"
    )
    # SIGTERM exits through Python, so atexit hooks (the embedded LLM server's stop) run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    handler: Handler = args.handler
    try:
        settings = load_settings(args.config, data_dir=args.data_dir, collection=args.collection)
        return handler(args, settings)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `rag docs | head` closed the pipe: what was wanted was read, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second failure at exit's flush
        return 0
    except OSError as exc:  # a folder we cannot create or read: say which, in one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
