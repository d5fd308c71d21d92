"""report.md with a table per configuration, and the recall@k and latency plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RETRIEVAL_KEYS = ["doc_recall@1", "doc_recall@5", "doc_recall@10", "doc_mrr@10", "doc_ndcg@10"]
PAGE_KEYS = ["page_recall@1", "page_recall@5", "page_recall@10", "page_mrr@10", "page_ndcg@10"]


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _retrieval_table(retrieval: dict[str, Any], keys: list[str]) -> list[str]:
    present = [k for k in keys if any(k in row for row in retrieval.values())]
    if not present:
        return []
    lines = ["| configuration | questions | " + " | ".join(present) + " | p50 ms | p95 ms |"]
    lines.append("|" + " --- |" * (len(present) + 4))
    for name, row in retrieval.items():
        cells = [_fmt(row.get(k)) for k in present]
        latency = row.get("latency_ms", {})
        lines.append(
            f"| {name} | {row.get('questions')} | "
            + " | ".join(cells)
            + f" | {_fmt(latency.get('p50'))} | {_fmt(latency.get('p95'))} |"
        )
    return lines


def _answers_section(answers: Any) -> list[str]:
    if not isinstance(answers, dict):
        return [f"Answers: {answers}."]
    lines = ["| metric | value |", "| --- | --- |"]
    for key in (
        "questions",
        "token_f1",
        "rouge_l",
        "semantic_similarity",
        "groundedness",
        "citation_validity",
        "model_cited_share",
    ):
        lines.append(f"| {key} | {_fmt(answers.get(key))} |")
    for key, value in answers["refusal"].items():
        lines.append(f"| refusal: {key} | {_fmt(value)} |")
    for stage, stats in answers["latency_ms"].items():
        lines.append(f"| {stage} p50 / p95 | {_fmt(stats.get('p50'))} / {_fmt(stats.get('p95'))} |")
    return lines


def write_report(out: Path, summary: dict[str, Any]) -> None:
    plots = _plots(out, summary)
    lines = [
        f"# Evaluation — {summary['qa']}",
        "",
        f"{summary['date']}, {summary['questions']} questions, {summary['collection']}; reranker: {summary['reranker']}; "
        f"LLM judge: {summary['judge']}.",
        "",
        *([f"**Warning:** {summary['warning']}.", ""] if summary.get("warning") else []),
        "## Retrieval, document level",
        "",
        *_retrieval_table(summary["retrieval"], RETRIEVAL_KEYS),
        "",
    ]
    page = _retrieval_table(summary["retrieval"], PAGE_KEYS)
    if page:
        lines += ["## Retrieval, page level", "", *page, ""]
    lines += ["## Answers", "", *_answers_section(summary["answers"]), ""]
    lines += [
        "## Refusal threshold",
        "",
        "```",
        *(f"{k}: {v}" for k, v in summary["threshold"].items()),
        "```",
        "",
        "## Refusals by the pipeline's rule (reranker or bi-encoder), top-n passages",
        "",
        *(f"- {k}: {v}" for k, v in summary.get("refusal", {}).items()),
        "",
    ]
    if "judge_scores" in summary:
        lines += ["## LLM judge", "", *(f"- {k}: {_fmt(v)}" for k, v in summary["judge_scores"].items()), ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _plots(out: Path, summary: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    ks = [1, 5, 10]
    for name, row in summary["retrieval"].items():
        ax.plot(ks, [row.get(f"doc_recall@{k}") or 0 for k in ks], marker="o", label=name)
    ax.set(xlabel="k", ylabel="document recall@k", title="Recall@k per configuration", ylim=(0, 1), xticks=ks)
    ax.legend()
    fig.tight_layout()
    paths.append(out / "recall_at_k.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    stats = {f"retrieve: {name}": row["latency_ms"] for name, row in summary["retrieval"].items()}
    if isinstance(summary["answers"], dict):
        stats |= {f"answer: {s}": v for s, v in summary["answers"]["latency_ms"].items()}
    stats = {k: v for k, v in stats.items() if v.get("n") and v.get("p50", 0) > 0}  # a log scale has no 0
    if not stats:  # e.g. a set whose questions have no gold sources (rated answers still to be completed)
        return paths
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(list(stats), [v["p50"] for v in stats.values()], label="p50")
    ax.scatter([v["p95"] for v in stats.values()], list(stats), color="black", label="p95", zorder=3)
    ax.set(xlabel="ms (log scale)", xscale="log", title="Latency per stage")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "latency.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths
