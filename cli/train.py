"""`rag train-reranker` and `rag ingest --train-reranker`: the collection's own cross-encoder, with progress."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cli.numbers import positive, whole
from rag.config import Settings
from training.links import LINK_QUESTIONS

if TYPE_CHECKING:
    from training.reranker import MiningOptions


@dataclass
class TrainOptions:
    minutes: float = 15.0
    layers: int = 6
    mining: MiningOptions | None = None  # None: the defaults (imported late: training pulls in torch)


def train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=positive, default=15.0, help="training time budget")
    p.add_argument(
        "--uninstall",
        action="store_true",
        help="remove the collection's installed reranker (set aside in reranker.uninstalled/); trains nothing",
    )
    p.add_argument(
        "--exclude", action="append", default=[], help="glob of sources never to train on (eval pages)"
    )
    p.add_argument("--negatives", type=whole(1, 30), default=4)
    p.add_argument(
        "--llm-questions", type=whole(0), default=0, help="also ask the LLM for N questions from chunks"
    )
    p.add_argument(
        "--keyword-questions",
        type=whole(0),
        default=0,
        help="also N keyword queries from chunks' salient terms not in their headings",
    )
    p.add_argument(
        "--link-questions",
        type=whole(0),
        default=LINK_QUESTIONS,
        help=f"N queries from the sentences around links to other pages (default {LINK_QUESTIONS})",
    )
    p.add_argument(
        "--link-filter",
        action="store_true",
        help="keep a link query only when the bi-encoder ranks its linked chunk first",
    )
    p.add_argument(
        "--max-groups", type=whole(2), help="stop mining after N (query, positive, negatives) groups"
    )
    p.add_argument(
        "--layers", type=whole(1, 6), default=6, help="keep the first N MiniLM layers (fewer: faster)"
    )


def train_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.uninstall:
        return uninstall_command(settings)
    from training.reranker import MiningOptions

    mining = MiningOptions(
        exclude=args.exclude,
        negatives=args.negatives,
        llm_questions=args.llm_questions,
        max_groups=args.max_groups,
        keyword_questions=args.keyword_questions,
        link_questions=args.link_questions,
        link_filter=args.link_filter,
    )
    train_and_report(settings, TrainOptions(args.minutes, args.layers, mining))
    return 0


def uninstall_command(settings: Settings) -> int:
    from training.collection_reranker import uninstall

    print(uninstall(settings))
    return 0


def train_and_report(settings: Settings, options: TrainOptions) -> None:
    """Mine, train, calibrate, and keep the better model; say what happened at each step."""
    from rag.collection import Collection
    from rag.llm import open_llm
    from training.collection_reranker import mine_for_training, train_collection_reranker

    print(f"mining training questions from collection {settings.collection!r}…", flush=True)
    from training.reranker import MiningOptions

    mining = options.mining or MiningOptions()
    llm = open_llm(settings) if mining.llm_questions else None
    with Collection(settings) as collection:  # closed before training: chat and ingestion can go on
        mined = mine_for_training(collection, mining, llm)
    print(
        f"mined {len(mined.train)} training and {len(mined.held_out)} held-out groups; {len(mined.held_out_docs)} "
        "documents held out of training to test the model on"
    )
    for reason, n in sorted(mined.counts.items()):
        print(f"  {reason}: {n}")
    outcome = _with_progress(
        lambda on_step: train_collection_reranker(settings, mined, options.minutes, options.layers, on_step),
        options.minutes,
    )
    print(outcome.summary(settings.collection))


def _with_progress(run: Any, minutes: float) -> Any:
    """A progress bar over the time budget on a terminal, the running loss beside it; elsewhere (a log) a line a
    minute."""
    from tqdm import tqdm

    budget = int(minutes * 60)
    terminal = sys.stderr.isatty()
    bar = tqdm(total=budget, unit="s", disable=not terminal, dynamic_ncols=True, desc="training")
    started, loss_avg, next_line = time.monotonic(), 0.0, 60.0

    def on_step(step: int, loss: float) -> None:
        nonlocal loss_avg, next_line
        loss_avg = loss if step == 1 else 0.98 * loss_avg + 0.02 * loss
        elapsed = time.monotonic() - started
        bar.n = min(budget, int(elapsed))
        bar.set_postfix(steps=step, loss=f"{loss_avg:.3f}", refresh=True)
        if not terminal and elapsed >= next_line:
            print(f"training: {elapsed:.0f} of {budget} s, step {step}, loss {loss_avg:.3f}", flush=True)
            next_line += 60

    try:
        return run(on_step)
    finally:
        bar.close()
