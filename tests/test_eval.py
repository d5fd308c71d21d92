"""`rag eval` end to end on a tiny corpus made here: retrieval metrics per configuration, answers, reports."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import RAG_BIN, cli_env
from tests.docs_factory import make_corpus

QA = [
    {
        "id": "a1",
        "question": "What do alpacas eat?",
        "answer": "Alpacas eat grass and hay.",
        "sources": ["guide.md"],
    },
    {
        "id": "a2",
        "question": "What does page two of the report talk about?",
        "answer": "The Andes condor.",
        "sources": ["report.pdf#page=2"],
    },
    {
        "id": "a3",
        "question": "Which animal is the largest living rodent?",
        "answer": "The capybara.",
        "sources": ["notes.txt"],
    },
    {"id": "u1", "question": "Who won the 1998 football world cup?", "answerable": False},
]


def _write_qa(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _run(tmp_path: Path, *extra: str, mode: str = "generate") -> subprocess.CompletedProcess[str]:
    corpus = make_corpus(tmp_path / "corpus")
    qa = _write_qa(tmp_path / "qa.jsonl", QA)
    command = [
        RAG_BIN,
        "eval",
        "--qa",
        str(qa),
        "--docs",
        str(corpus),
        "--out",
        str(tmp_path / "out"),
        *extra,
    ]
    env = cli_env(tmp_path / "data") | {"RAG_COLLECTION": "evaltest", "RAG_ANSWER_MODE": mode}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_eval_without_llm_measures_each_configuration(tmp_path: Path) -> None:
    result = _run(tmp_path, "--no-llm")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["configs"] == [
        "dense",
        "hybrid",
    ]  # no cross-encoder here: the rerank row is left out, not faked
    dense = summary["retrieval"]["dense"]
    assert dense["questions"] == 3 and dense["doc_recall@10"] == 1.0 and dense["doc_recall@1"] >= 2 / 3
    assert "page_recall@1" in dense  # the PDF question has a page-level gold
    assert summary["answers"] == "skipped (--no-llm)" and summary["judge"].startswith("off")
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 2 and {r["config"] for r in rows} == {"dense", "hybrid"}
    assert {"rank", "source", "page", "score", "text"} <= set(rows[0]["retrieved"][0])
    report = (out / "report.md").read_text()
    assert "| dense |" in report and "recall_at_k.png" in report
    assert (out / "recall_at_k.png").stat().st_size > 1000 and (out / "latency.png").exists()
    assert summary["threshold"]["best"] is not None


def test_eval_with_llm_scores_answers_and_refusals(tmp_path: Path) -> None:
    result = _run(tmp_path, "--limit", "4")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    answers = summary["answers"]
    assert answers["questions"] == 4
    assert answers["refusal"]["unanswerable"] == 1 and answers["refusal"]["refusal_accuracy"] == 1.0
    assert 0.0 <= answers["token_f1"] <= 1.0 and answers["semantic_similarity"] is not None
    assert answers["latency_ms"]["total_ms"]["n"] == 4
    assert summary["llm"]["embedded"] is True and summary["answer_mode"] == "generate"


def test_eval_of_evidence_answers_needs_no_llm(tmp_path: Path) -> None:
    result = _run(tmp_path, "--limit", "4", mode="evidence")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    answers = summary["answers"]
    assert summary["answer_mode"] == "evidence" and summary["llm"] == {}
    assert answers["groundedness"] == 1.0 and answers["cited_share"] == 1.0
    assert answers["unsupported_sentence_share"] == 0.0


def test_malformed_qa_line_is_a_one_line_error(tmp_path: Path) -> None:
    qa = tmp_path / "bad.jsonl"
    qa.write_text('{"question": "ok?"}\n{"id": "x"}\n')
    env = cli_env(tmp_path / "data")
    result = subprocess.run(
        [RAG_BIN, "eval", "--qa", str(qa), "--no-llm"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "bad.jsonl line 2" in result.stderr and "Traceback" not in result.stderr


CONVERSATIONS = [
    {
        "id": "c1",
        "turns": [
            {
                "question": "What do alpacas eat?",
                "kind": "first",
                "sources": ["guide.md"],
                "answer": "Grass and hay.",
            },
            {
                "question": "Where do vicunas live?",
                "kind": "switch",
                "sources": ["manual.rst"],
                "answer": "Vicunas live in the high Andes.",
            },
            {"question": "Who won the 1998 football world cup?", "kind": "off_topic", "answerable": False},
        ],
    },
    {
        "id": "c2",
        "turns": [
            {"question": "Tell me about ostriches.", "kind": "first", "sources": ["memo.docx"]},
            {
                "question": "What else can you tell me about them?",
                "kind": "follow_up",
                "standalone": "Can ostriches fly?",
                "sources": ["memo.docx"],
                "section": "Memo on ostriches",
                "answer": "Ostriches cannot fly.",
            },
        ],
    },
]


def test_eval_of_conversations_reports_each_turn_kind_against_its_ceiling(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    qa = _write_qa(tmp_path / "conversations.jsonl", CONVERSATIONS)
    command = [RAG_BIN, "eval", "--qa", str(qa), "--docs", str(corpus), "--out", str(tmp_path / "out")]
    env = cli_env(tmp_path / "data") | {"RAG_COLLECTION": "evaltest"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    kinds = summary["by_kind"]
    assert list(kinds) == ["first", "switch", "follow_up", "off_topic"] and summary["turns"] == 5
    assert kinds["switch"]["recall@5"] == {"turn": 1.0, "ceiling": 1.0, "ratio": 1.0}
    assert kinds["off_topic"]["refused"] == {"turn": 1.0, "ceiling": 1.0, "of": 1}
    follow_up = kinds["follow_up"]
    assert follow_up["section_recall@5"]["ceiling"] == 1.0 and follow_up["false_refusals"]["turn"] == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert (
        rows[-1]["searched"] == "What else can you tell me about them? ostriches" and rows[-1]["history_used"]
    )
    assert "| follow_up | 1 |" in (tmp_path / "out" / "report.md").read_text()


def test_a_conversation_turn_without_a_kind_is_a_one_line_error(tmp_path: Path) -> None:
    qa = _write_qa(tmp_path / "bad.jsonl", [{"id": "c", "turns": [{"question": "Hi?", "sources": ["x.md"]}]}])
    env = cli_env(tmp_path / "data") | {"RAG_COLLECTION": "evaltest"}
    result = subprocess.run(
        [RAG_BIN, "eval", "--qa", str(qa), "--out", str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "bad.jsonl line 1: turn 1: 'kind' must be one of" in result.stderr
    assert not (tmp_path / "data" / "collections" / "evaltest").exists()
