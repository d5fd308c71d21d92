"""`rag eval`: retrieval metrics for dense, hybrid and hybrid + rerank in one run, then answer metrics.

Writes results.jsonl (one row per question and configuration), summary.json, report.md and two plots.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from evals import metrics
from evals.conversations import ConversationEvaluator, is_conversation_file, load_conversations, report_lines
from evals.judge import Judge
from evals.qa import QAItem, load_qa
from rag.answer import Answer, ChatPipeline, open_chat
from rag.calibration import best_threshold, rates
from rag.collection import Collection
from rag.config import AnswerMode, Settings
from rag.retrieval import Mode
from rag.search import Searcher
from rag.store import Hit

KS = (1, 5, 10)
SNIPPET = 300


@dataclass(frozen=True)
class Config:
    name: str
    mode: Mode
    rerank: bool


def configs_for(searcher: Searcher) -> list[Config]:
    """Each first stage alone, then hybrid through the searcher's stages (`hybrid+rerank`) when it has any."""
    configs = [Config("dense", Mode.DENSE, False), Config("hybrid", Mode.HYBRID, False)]
    if names := searcher.stage_names():
        configs.append(Config("+".join(["hybrid", *names]), Mode.HYBRID, True))
    return configs


@dataclass
class EvalOptions:
    qa: Path
    out: Path
    docs: Path | None = None
    collection: str | None = None
    no_llm: bool = False
    limit: int | None = None
    judge: Judge | None = None


def _hit_row(rank: int, hit: Hit) -> dict[str, Any]:
    return {
        "rank": rank,
        "source": hit.chunk.source,
        "page": hit.chunk.page,
        "score": round(hit.score, 5),
        "dense_score": None if hit.dense_score is None else round(hit.dense_score, 5),
        "rerank_score": None if hit.rerank_score is None else round(hit.rerank_score, 5),
        "text": hit.chunk.text[:SNIPPET],
    }


def _pairs(hits: list[Hit]) -> list[tuple[str, int | None]]:
    return [(h.chunk.source, h.chunk.page) for h in hits]


def retrieval_scores(item: QAItem, hits: list[Hit]) -> dict[str, float]:
    """Document-level metrics, and page-level ones where the gold names pages."""
    scores: dict[str, float] = {}
    docs = metrics.doc_keys(_pairs(hits))
    for k in KS:
        scores[f"doc_recall@{k}"] = metrics.recall_at_k(docs, item.gold_docs(), k)
    scores["doc_mrr@10"] = metrics.mrr_at_k(docs, item.gold_docs(), 10)
    scores["doc_ndcg@10"] = metrics.ndcg_at_k(docs, item.gold_docs(), 10)
    gold_pages = {p for p in item.gold_pages() if p[1] is not None}
    if gold_pages:
        pages = metrics.page_keys(_pairs(hits))
        for k in KS:
            scores[f"page_recall@{k}"] = metrics.recall_at_k(pages, gold_pages, k)
        scores["page_mrr@10"] = metrics.mrr_at_k(pages, gold_pages, 10)
        scores["page_ndcg@10"] = metrics.ndcg_at_k(pages, gold_pages, 10)
    return scores


class Evaluator:
    def __init__(self, settings: Settings, pipeline: ChatPipeline, options: EvalOptions) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.searcher = pipeline.searcher
        self.options = options
        self.configs = configs_for(self.searcher)

    def run(self, items: list[QAItem]) -> dict[str, Any]:
        from tqdm import tqdm

        rows: list[dict[str, Any]] = []
        answers: list[dict[str, Any]] = []
        relevance: list[tuple[bool, float]] = []  # the pipeline's configuration: answerable, top relevance
        answered: list[tuple[bool, bool]] = []  # and answerable, whether it answers
        self.options.out.mkdir(parents=True, exist_ok=True)
        with (self.options.out / "results.jsonl").open("w") as out:
            for item in tqdm(items, desc="questions", unit="q"):
                for config in self.configs:
                    row = self._retrieval_row(item, config)
                    rows.append(row)
                    out.write(json.dumps(row) + "\n")
                relevance.append((item.answerable, self._top_relevance(rows[-1])))
                answered.append((item.answerable, rows[-1]["answers"]))
                if not self.options.no_llm:
                    answer_row = self._answer_row(item)
                    answers.append(answer_row)
                    out.write(json.dumps(answer_row) + "\n")
        return self._summary(items, rows, answers, relevance, answered)

    def _retrieval_row(self, item: QAItem, config: Config) -> dict[str, Any]:
        top_k = self.settings.top_k
        ranking = self.searcher.search(item.question, top_k, top_k, config.mode, config.rerank)
        candidates, timings = ranking.candidates, ranking.timings
        final = ranking.ranked if config.rerank else candidates
        return {
            "id": item.id,
            "question": item.question,
            "reference": item.answer,
            "answerable": item.answerable,
            "gold": [str(g) for g in item.sources],
            "config": config.name,
            "retrieved_before_rerank": [_hit_row(i + 1, h) for i, h in enumerate(candidates)],
            "retrieved": [_hit_row(i + 1, h) for i, h in enumerate(final)],
            "metrics": retrieval_scores(item, final) if item.gold_docs() else {},
            # whether the pipeline, reading these top-n passages, would answer (else refuse)
            "answers": bool(ranking.relevant_among(final[: self.settings.top_n])),
            "timings": {k: round(v, 2) for k, v in asdict(timings).items()},
        }

    def _top_relevance(self, row: dict[str, Any]) -> float:
        """The score the refusal threshold reads: the best relevance among the top-n passages."""
        top = row["retrieved"][: self.settings.top_n]
        key = "rerank_score" if row["config"].endswith("rerank") else "dense_score"
        return max((h[key] for h in top if h[key] is not None), default=0.0)

    def _answer_row(self, item: QAItem) -> dict[str, Any]:
        answer = self.pipeline.ask(item.question)
        row: dict[str, Any] = {
            "id": item.id,
            "question": item.question,
            "reference": item.answer,
            "answerable": item.answerable,
            "config": "answer",
            **answer.as_json(),
            "context": [
                {"n": c.n, "source": c.source, "page": c.page, "text": c.text[:SNIPPET]}
                for c in answer.context
            ],
            "scores": self._answer_scores(item, answer),
        }
        if self.options.judge is not None and not answer.refused:
            row["judge"] = self.options.judge.score(
                item.question, answer.answer, [c.text for c in answer.context]
            )
        return row

    def _answer_scores(self, item: QAItem, answer: Answer) -> dict[str, Any]:
        scores: dict[str, Any] = {"citations_valid": not answer.invalid_citations}
        scores["model_cited"] = any(s.cited_by == "model" for s in answer.sources)
        scores["cited"] = any(s.cited_by in ("model", "quoted") for s in answer.sources)
        if answer.refused:
            return scores
        scores["groundedness"] = metrics.groundedness(answer.answer, {c.n: c.text for c in answer.context})
        if item.answer:
            scores["token_f1"] = metrics.token_f1(answer.answer, item.answer)
            scores["rouge_l"] = metrics.rouge_l(answer.answer, item.answer)
            vectors = self.searcher.collection.embedder.embed([answer.answer, item.answer])
            scores["semantic_similarity"] = float(np.dot(vectors[0], vectors[1]))
        return scores

    # ------------------------------------------------------------------ summary

    def _summary(
        self,
        items: list[QAItem],
        rows: list[dict[str, Any]],
        answers: list[dict[str, Any]],
        relevance: list[tuple[bool, float]],
        answered: list[tuple[bool, bool]],
    ) -> dict[str, Any]:
        retrieval: dict[str, dict[str, Any]] = {}
        for config in self.configs:
            scored = [r for r in rows if r["config"] == config.name and r["metrics"]]
            keys = sorted({k for r in scored for k in r["metrics"]})
            retrieval[config.name] = {
                k: _mean([r["metrics"][k] for r in scored if k in r["metrics"]]) for k in keys
            }
            retrieval[config.name]["questions"] = len(scored)
            latency = [
                r["timings"]["embed_ms"] + r["timings"]["search_ms"] + r["timings"]["rerank_ms"]
                for r in scored
            ]
            retrieval[config.name]["latency_ms"] = metrics.summarize(latency)
        summary: dict[str, Any] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "qa": str(self.options.qa),
            "questions": len(items),
            "collection": self.searcher.collection.store.description,
            "configs": [c.name for c in self.configs],
            "reranker": self.searcher.rerank_status.describe(),
            "retrieval": retrieval,
            "threshold": calibrate(relevance, self.searcher.threshold(rerank=True)),
            "refusal": _refusal_summary(answered),
            "answer_mode": self.settings.answer_mode,
            "answers": _answer_summary(answers) if answers else "skipped (--no-llm)",
            "llm": answers[0]["llm"] if answers else None,
            "judge": "ran" if self.options.judge else "off (set --judge-url to run it)",
        }
        warning = reranker_warning(retrieval, self.searcher.rerank_status.origin)
        if warning:
            summary["warning"] = warning
        if self.options.judge and answers:
            summary["judge_scores"] = _judge_summary(answers)
        return summary


def reranker_warning(retrieval: dict[str, dict[str, Any]], origin: str) -> str | None:
    """A plain warning when the reranker ranks the set's questions worse (document MRR@10) than the better first
    stage: the default path then costs quality as well as time."""
    reranked = retrieval.get("hybrid+rerank", {}).get("doc_mrr@10")
    stages = {name: retrieval.get(name, {}).get("doc_mrr@10") for name in ("dense", "hybrid")}
    scored = {name: value for name, value in stages.items() if value is not None}
    if reranked is None or not scored:
        return None
    best = max(scored, key=lambda name: scored[name])
    if reranked >= scored[best]:
        return None
    remedy = (
        "unset RAG_RERANK_MODEL"
        if origin == "RAG_RERANK_MODEL"
        else "rag train-reranker --uninstall removes the collection's"
    )
    return (
        f"the reranker ranks these questions worse than the first stage alone (document MRR@10 {reranked:.3f} "
        f"reranked against {scored[best]:.3f} {best}); ask, chat and the UI use it: {remedy} "
        "(--no-rerank skips it for one question)"
    )


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _answer_summary(answers: list[dict[str, Any]]) -> dict[str, Any]:
    def scores(key: str) -> list[float]:
        return [a["scores"][key] for a in answers if a["scores"].get(key) is not None]

    answered = [a for a in answers if not a["refused"]]
    return {
        "questions": len(answers),
        "token_f1": _mean(scores("token_f1")),
        "rouge_l": _mean(scores("rouge_l")),
        "semantic_similarity": _mean(scores("semantic_similarity")),
        "groundedness": _mean(scores("groundedness")),
        "citation_validity": _mean([float(a["scores"]["citations_valid"]) for a in answered]),
        "model_cited_share": _mean([float(a["scores"]["model_cited"]) for a in answered]),
        "cited_share": _mean([float(a["scores"]["cited"]) for a in answered]),  # model's or quoted evidence
        "unsupported_sentence_share": _share_unsupported(answered),
        "refusal": metrics.refusal_metrics((a["answerable"], a["refused"]) for a in answers),
        "latency_ms": {
            stage: metrics.summarize([a["timings"][stage] for a in answers if stage in a["timings"]])
            for stage in ("retrieve_ms", "rerank_ms", "first_token_ms", "total_ms")
        },
    }


def _share_unsupported(answered: list[dict[str, Any]]) -> float | None:
    """Of all checked sentences of the answers, the share their passages do not support (rag.support)."""
    checks = [c for a in answered for c in a.get("sentences", [])]
    return round(sum(not c["supported"] for c in checks) / len(checks), 4) if checks else None


def _judge_summary(answers: list[dict[str, Any]]) -> dict[str, Any]:
    judged = [a["judge"] for a in answers if "judge" in a]
    return {
        "faithfulness": _mean([j["faithfulness"] for j in judged if j.get("faithfulness") is not None]),
        "answer_relevance": _mean(
            [j["answer_relevance"] for j in judged if j.get("answer_relevance") is not None]
        ),
        "judged": len(judged),
    }


def _refusal_summary(answered: list[tuple[bool, bool]]) -> dict[str, Any]:
    """How often the pipeline's own rule (rag.search.Ranking.relevant) answers the answerable questions and
    refuses the others, from the top-n passages of the last configuration (the one chat runs)."""
    yes = [answers for answerable, answers in answered if answerable]
    no = [answers for answerable, answers in answered if not answerable]
    return {
        "answered_rate": round(sum(yes) / len(yes), 3) if yes else None,
        "refusal_accuracy": round(1 - sum(no) / len(no), 3) if no else None,
        "questions": {"answerable": len(yes), "unanswerable": len(no)},
    }


def calibrate(relevance: list[tuple[bool, float]], current: float) -> dict[str, Any]:
    """The current threshold's rates and the best one's on this labelled set (rag.calibration)."""
    answerable = [s for a, s in relevance if a]
    unanswerable = [s for a, s in relevance if not a]
    if not answerable or not unanswerable:
        return {"current": current, "note": "needs answerable and unanswerable questions"}
    best = best_threshold(answerable, unanswerable)
    now, then = rates(answerable, unanswerable, current), rates(answerable, unanswerable, best)
    return {
        "current": current,
        "current_answered_rate": round(now.answered, 3),
        "current_refusal_accuracy": round(now.refused, 3),
        "best": best,
        "best_answered_rate": round(then.answered, 3),
        "best_refusal_accuracy": round(then.refused, 3),
    }


def run_eval(settings: Settings, options: EvalOptions) -> dict[str, Any]:
    """A QA set's retrieval and answer metrics, or a conversation set's per turn kind (evals.conversations)."""
    if options.collection:
        settings = settings.model_copy(update={"collection": options.collection})
    conversational = is_conversation_file(options.qa)
    if conversational:
        conversations = load_conversations(options.qa)[: options.limit or None]
    else:
        items = load_qa(options.qa)[: options.limit or None]
    started = time.perf_counter()
    ingest_summary = None
    if options.docs is not None:
        from ingest.job import ingest_folder

        ingest_summary = ingest_folder(settings, options.docs).as_dict()
    with Collection(settings) as collection:
        with_llm = not options.no_llm and settings.answer_mode != AnswerMode.EVIDENCE
        pipeline = open_chat(collection, with_llm)
        if conversational:
            summary = ConversationEvaluator(pipeline, options.out).run(conversations, options.qa)
        else:
            summary = Evaluator(settings, pipeline, options).run(items)
    summary["ingestion"] = ingest_summary
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (options.out / "summary.json").write_text(json.dumps(summary, indent=2))
    if conversational:
        (options.out / "report.md").write_text("\n".join(report_lines(summary)) + "\n")
        return summary
    from evals.report import write_report

    write_report(options.out, summary)
    return summary
