"""Eval metrics and QA files, against values computed by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from evals.metrics import (
    doc_keys,
    groundedness,
    mrr_at_k,
    ndcg_at_k,
    page_keys,
    recall_at_k,
    refusal_metrics,
    rouge_l,
    split_sentences,
    summarize,
    token_f1,
)
from evals.qa import GoldRef, QAFormatError, QAItem, load_qa, write_qa

# --- retrieval -------------------------------------------------------------------------------------------

# chunks of "a" fill ranks 1-3; deduped the ranking is a, b, c, d
CHUNKED = ["a", "a", "a", "b", "a", "c", "b", "d"]


def test_recall_dedupes_before_cutting_at_k() -> None:
    gold = {"b", "c", "x"}
    assert recall_at_k(CHUNKED, gold, 1) == 0.0
    assert recall_at_k(CHUNKED, gold, 2) == pytest.approx(1 / 3)
    # without deduplication the top 5 would be a, a, a, b, a: only b
    assert recall_at_k(CHUNKED, gold, 5) == pytest.approx(2 / 3)
    assert recall_at_k(CHUNKED, gold, 10) == pytest.approx(2 / 3)
    assert recall_at_k(CHUNKED, {"a", "d"}, 10) == 1.0


def test_recall_empty_gold_is_zero() -> None:
    assert recall_at_k(["a"], set(), 5) == 0.0


def test_mrr() -> None:
    assert mrr_at_k(["a", "b", "c", "d"], {"c"}, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(CHUNKED, {"c"}, 10) == pytest.approx(1 / 3)  # chunk rank 6, distinct rank 3
    assert mrr_at_k(CHUNKED, {"c", "b"}, 10) == pytest.approx(1 / 2)
    assert mrr_at_k(CHUNKED, {"c"}, 2) == 0.0
    assert mrr_at_k(CHUNKED, {"missing"}, 10) == 0.0
    assert mrr_at_k([], {"a"}, 10) == 0.0


def test_ndcg_two_gold_at_ranks_1_and_3() -> None:
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["g1", "x", "g2", "y"], {"g1", "g2"}, 10) == pytest.approx(expected)
    # the same ranking as chunks: repeats collapse onto their first rank
    assert ndcg_at_k(["g1", "g1", "x", "g1", "x", "g2", "y"], {"g1", "g2"}, 10) == pytest.approx(expected)
    assert ndcg_at_k(["g1", "g2"], {"g1", "g2"}, 10) == 1.0


def test_ndcg_ideal_is_capped_at_k() -> None:
    # 2 gold but k=1: the ideal DCG holds one gold key, so a gold key at rank 1 is perfect
    assert ndcg_at_k(["g1", "g2"], {"g1", "g2"}, 1) == 1.0
    assert ndcg_at_k(["x", "g1"], {"g1", "g2"}, 1) == 0.0


def test_ndcg_missing_gold() -> None:
    assert ndcg_at_k(["x", "y", "z"], {"g"}, 10) == 0.0
    assert ndcg_at_k(["x"], set(), 10) == 0.0


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError):
        recall_at_k(["a"], {"a"}, 0)


def test_doc_and_page_keys() -> None:
    hits: list[tuple[str, int | None]] = [
        ("a.pdf", 1),
        ("a.pdf", 1),
        ("a.pdf", 2),
        ("b.html", None),
        ("a.pdf", 1),
        ("c.md", None),
    ]
    assert doc_keys(hits) == ["a.pdf", "b.html", "c.md"]
    assert page_keys(hits) == [("a.pdf", 1), ("a.pdf", 2), ("b.html", None), ("c.md", None)]
    item = QAItem("q", "?", None, [GoldRef.parse("a.pdf#page=2"), GoldRef.parse("c.md")])
    assert recall_at_k(doc_keys(hits), item.gold_docs(), 1) == 0.5
    assert recall_at_k(page_keys(hits), item.gold_pages(), 1) == 0.0
    assert recall_at_k(page_keys(hits), item.gold_pages(), 2) == 0.5
    assert recall_at_k(page_keys(hits), item.gold_pages(), 4) == 1.0
    assert mrr_at_k(page_keys(hits), item.gold_pages(), 10) == 0.5


# --- answers ---------------------------------------------------------------------------------------------


def test_token_f1() -> None:
    # pred -> cat sat on mat (articles and punctuation go), ref -> cat sat: P 2/4, R 2/2
    assert token_f1("The cat sat on the mat.", "A cat sat.") == pytest.approx(2 / 3)
    assert token_f1("Cat, SAT!", "the cat sat") == 1.0
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("the", "cat") == 0.0


def test_rouge_l_depends_on_order() -> None:
    # cat sat on mat vs cat on mat sat: LCS cat on mat = 3, P = R = 3/4
    assert rouge_l("the cat sat on the mat", "cat on the mat sat") == pytest.approx(0.75)
    assert token_f1("the cat sat on the mat", "cat on the mat sat") == 1.0
    # "a" is an article and goes: b c d e vs x c y, LCS c = 1, P 1/4, R 1/3
    assert rouge_l("a b c d e", "a x c y") == pytest.approx(2 * (1 / 4) * (1 / 3) / (1 / 4 + 1 / 3))
    assert rouge_l("dog", "cat") == 0.0


def test_split_sentences_keeps_trailing_citations() -> None:
    text = "Python is fun [1]. It has e.g. lists. [2] Done\n- a bullet [3]"
    assert split_sentences(text) == ["Python is fun [1].", "It has e.g. lists. [2]", "Done", "- a bullet [3]"]


def test_groundedness_one_of_two_supported() -> None:
    answer = "Python uses indentation for grouping [1]. Bananas are yellow fruit [2]."
    passages = {1: "Python uses indentation to group statements.", 2: "Indentation matters in Python."}
    # sentence 1: python uses indentation grouping -> 3/4 in passage 1; sentence 2: 0/3 in passage 2
    assert groundedness(answer, passages) == 0.5


def test_groundedness_edge_cases() -> None:
    passages = {1: "Python uses indentation to group statements."}
    assert groundedness("Python uses indentation. [1]", passages) == 1.0
    assert groundedness("Python uses indentation.", passages) == 0.0  # no citation: unsupported
    assert groundedness("Python uses indentation [7].", passages) == 0.0  # unknown passage
    assert groundedness("Python uses indentation [7, 1].", passages) == 1.0
    assert groundedness("Python uses indentation [1]. [1]", passages) == 1.0  # bare marker: no content
    assert groundedness("", passages) is None
    assert groundedness("It is what it is.", passages) is None  # stopwords only


def test_a_quoted_block_is_grounded_by_the_citation_on_the_line_under_it() -> None:
    """The evidence answer quotes a code block or a table (header, then rows) with its [n] on a line of its own:
    the block is one claim with that citation, not uncited lines."""
    table = "| ticket | due |\n| --- | --- |\n| T-1049 | 2026-03-21 |\n| T-1050 | 2026-03-23 |"
    answer = "| ticket | due |\n| --- | --- |\n| T-1050 | 2026-03-23 |\n[1]\n\nTickets close in a month. [2]"
    assert groundedness(answer, {1: table, 2: "Most tickets close within a month."}) == 1.0
    assert groundedness(answer, {1: "Unrelated text.", 2: "Most tickets close within a month."}) == 0.5
    assert groundedness("| ticket | due |\n| T-1050 | 2026-03-23 |", {1: table}) == 0.0  # no citation


# --- aggregates ------------------------------------------------------------------------------------------


def test_summarize() -> None:
    assert summarize([4.0, 1.0, 3.0, 2.0]) == {"n": 4, "mean": 2.5, "p50": 2.5, "p95": pytest.approx(3.85)}
    assert summarize([7.0]) == {"n": 1, "mean": 7.0, "p50": 7.0, "p95": 7.0}
    assert summarize([]) == {"n": 0, "mean": None, "p50": None, "p95": None}


def test_refusal_metrics() -> None:
    pairs = [
        (False, True),
        (False, False),
        (False, True),
        (True, False),
        (True, True),
        (True, False),
        (True, False),
    ]
    result = refusal_metrics(pairs)
    assert result["unanswerable"] == 3 and result["refused_unanswerable"] == 2
    assert result["refusal_accuracy"] == pytest.approx(2 / 3)
    assert result["answerable"] == 4 and result["refused_answerable"] == 1
    assert result["false_refusal_rate"] == 0.25
    empty = refusal_metrics([])
    assert empty["refusal_accuracy"] is None and empty["false_refusal_rate"] is None


# --- QA files --------------------------------------------------------------------------------------------


def _write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_good_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        json.dumps(
            {"id": "a", "question": "What?", "answer": "This.", "sources": ["d/x.pdf#page=3", "y.md"]}
        ),
        "",
        json.dumps({"question": "  Why?  "}),
        json.dumps({"id": "u1", "question": "Who won?", "answerable": False, "note": "ignored"}),
    )
    items = load_qa(path)
    assert [item.id for item in items] == ["a", "q3", "u1"]
    assert items[0].sources == [GoldRef("d/x.pdf", 3), GoldRef("y.md", None)]
    assert items[0].answer == "This." and items[0].answerable
    assert items[1].question == "Why?" and items[1].answer is None and items[1].sources == []
    assert not items[2].answerable
    write_qa(tmp_path / "copy.jsonl", items)
    assert load_qa(tmp_path / "copy.jsonl") == items


def test_gold_ref_parse() -> None:
    assert GoldRef.parse("a/b.pdf#page=12") == GoldRef("a/b.pdf", 12)
    assert str(GoldRef("a/b.pdf", 12)) == "a/b.pdf#page=12"
    for bad in ("a.pdf#page=0", "a.pdf#page=x", "a.pdf#p=1", "#page=1", "/abs/a.pdf", ""):
        with pytest.raises(ValueError):
            GoldRef.parse(bad)


GOOD = json.dumps({"question": "Fine?"})


@pytest.mark.parametrize(
    ("lines", "line"),
    [
        ((GOOD, GOOD, '{"question": "oops"'), 3),  # bad JSON
        ((GOOD, json.dumps({"id": "x", "answer": "no question"})), 2),
        ((GOOD, json.dumps({"question": "   "})), 2),
        ((json.dumps({"question": "Q?", "sources": ["a.pdf#page=two"]}),), 1),
        ((GOOD, "", json.dumps(["not", "an", "object"])), 3),
        ((json.dumps({"question": "Q?", "sources": "a.pdf"}),), 1),
        ((json.dumps({"question": "Q?", "answerable": "yes"}),), 1),
        ((json.dumps({"question": "Q?", "answer": 42}),), 1),
        ((json.dumps({"question": "Q?", "id": 7}),), 1),
        ((json.dumps({"question": "Q?", "answerable": False, "sources": ["a.md"]}),), 1),
        ((json.dumps({"id": "d", "question": "Q?"}), GOOD, json.dumps({"id": "d", "question": "R?"})), 3),
        ((GOOD, json.dumps({"id": "q1", "question": "Clashes with line 1's default id"})), 2),
    ],
)
def test_load_malformed_line(tmp_path: Path, lines: tuple[str, ...], line: int) -> None:
    with pytest.raises(QAFormatError, match=rf"^qa\.jsonl line {line}: ") as info:
        load_qa(_write(tmp_path, *lines))
    assert "\n" not in str(info.value)
