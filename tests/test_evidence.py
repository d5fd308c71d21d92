"""The evidence-first answer: the sentence that answers, quoted and cited; code blocks whole; no LLM needed."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rag.answer import SUMMARY_LABEL, ChatPipeline, open_chat
from rag.collection import Collection
from rag.config import Settings
from rag.embedder import LocalEmbedder
from rag.evidence import render, select, units_of
from rag.llm import LLMClient
from rag.search import Searcher
from tests.conftest import RAG_BIN, cli_env
from tests.fake_llm import fake_llm
from tests.test_ingest import run_ingest

PERL = """How do I sort a hash by value? Perl has no sorted hash, so you sort its keys. You compare the values in
the sort block, like this:

    my @keys = sort { $h{$a} <=> $h{$b} } keys %h;
    print "$_\\n" for @keys;

Hashes in Perl keep no order of their own. The keys function returns them in a seemingly random order.
"""


def _keyword_scorer(word: str):  # type: ignore[no-untyped-def]
    return lambda question, units: np.asarray([1.0 if word in u else 0.0 for u in units])


TICKETS = """Open tickets, by date.

| ticket | opened | due |
| --- | --- | --- |
| T-1049 | 2026-02-19 | 2026-03-21 |
| T-1050 | 2026-02-20 | 2026-03-23 |
| T-1051 | 2026-02-21 | 2026-03-25 |
"""


def test_a_table_row_is_quoted_under_its_header_and_the_row_the_question_names_wins() -> None:
    """The scorer here prefers every other row (as the bi-encoder can, for rows that differ only in numbers); the
    row holding the question's ticket number still wins, and is quoted with the header that names its columns."""
    units = units_of(TICKETS, 2, 1)
    rows = [u for u in units if u.header]
    assert [u.text.split(" | ")[0] for u in rows] == ["| T-1049", "| T-1050", "| T-1051"]
    assert all(u.header == "| ticket | opened | due |\n| --- | --- | --- |" for u in rows)

    def prefers_another_row(question: str, texts: object) -> np.ndarray:
        return np.asarray([0.6 if "T-1049" in text else 0.3 for text in texts])  # type: ignore[attr-defined]

    chosen = select("When is ticket T-1050 due?", [(1, PERL), (2, TICKETS)], prefers_another_row)
    assert (
        render(chosen)
        == "| ticket | opened | due |\n| --- | --- | --- |\n| T-1050 | 2026-02-20 | 2026-03-23 |\n[2]"
    )


def test_a_row_whose_cell_is_a_common_word_of_the_question_does_not_win_over_prose() -> None:
    api = "| Name | Description |\n| --- | --- |\n| run() | Run a coroutine. |\n| Task | Task object. |"
    prose = "A task wraps a coroutine and schedules it on the event loop."
    chosen = select(
        "How do I cancel a task?", [(1, prose), (2, api)], lambda q, texts: np.full(len(texts), 0.5)
    )
    assert render(chosen) == f"{prose} [1]"


def test_a_code_block_is_one_unit_and_prose_is_cut_into_sentences() -> None:
    units = units_of(PERL, 1, 0)
    code = [u for u in units if u.code]
    assert len(code) == 1 and code[0].text.splitlines()[1].strip() == 'print "$_\\n" for @keys;'
    assert "Hashes in Perl keep no order of their own." in [u.text for u in units]
    assert "You compare the values in the sort block, like this:" in [u.text for u in units]  # a wrapped line


def test_selection_keeps_document_order_and_cites_every_sentence() -> None:
    chosen = select("sort by value", [(1, PERL)], _keyword_scorer("$h{"))
    assert [u.position for u in chosen] == sorted(u.position for u in chosen)
    text = render(chosen)
    assert "my @keys = sort" in text and text.count("[1]") == len(chosen)
    assert all(
        line.endswith("[1]") or not line.strip() or line.startswith("    ") for line in text.splitlines()
    )


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory, embedder: LocalEmbedder) -> Iterator[Collection]:
    root = tmp_path_factory.mktemp("corpus")
    (root / "perlfaq4.md").write_text(f"# Data: Hashes\n\n{PERL}")
    (root / "approvals.md").write_text(
        "# Release process\n\nEvery change is reviewed before it is merged. A release needs two approvals from "
        "the core team. The release manager then tags the commit. Tags are signed with the project key.\n"
    )
    (root / "llamas.md").write_text(
        "# Llamas\n\nLlamas are social animals. They live in herds in the Andes.\n"
    )
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"), collection="evidence", answer_mode="evidence"
    )
    run_ingest(settings, root)
    with Collection(settings) as opened:
        yield opened


def test_evidence_answer_quotes_the_sentence_that_answers(collection: Collection) -> None:
    answer = open_chat(collection, with_llm=False).ask("How many approvals does a release need?")
    assert not answer.refused
    assert "A release needs two approvals from the core team. [1]" in answer.answer
    assert [(s.n, s.source, s.cited_by) for s in answer.sources] == [(1, "approvals.md", "quoted")]
    assert "llm" not in answer.answer.lower() and answer.llm == {}


def test_evidence_answer_never_quotes_the_question_back(collection: Collection) -> None:
    answer = open_chat(collection, with_llm=False).ask("How do I sort a hash by value in Perl?")
    assert answer.sources[0].source == "perlfaq4.md" and answer.invalid_citations == []
    assert "How do I sort a hash by value?" not in answer.answer  # the FAQ's own question answers nothing
    if "my @keys" in answer.answer:  # quoted code comes whole
        assert 'my @keys = sort { $h{$a} <=> $h{$b} } keys %h;\n    print "$_\\n" for @keys;' in answer.answer


def test_a_sentence_that_introduces_code_brings_the_code() -> None:
    chosen = select("compare values", [(1, PERL)], _keyword_scorer("like this:"))
    assert [u.code for u in chosen] == [False, True] and chosen[1].text.lstrip().startswith("my @keys")


def test_both_puts_the_evidence_first_and_labels_the_model(collection: Collection) -> None:
    with fake_llm() as llm:
        llm.script("It needs two approvals [1].")
        chat = ChatPipeline(Searcher.for_collection(collection), LLMClient(llm.url, None, None, 10))
        answer = chat.ask("How many approvals does a release need?", mode="both")
    quoted, summary = answer.answer.split(f"\n\n{SUMMARY_LABEL}")
    assert quoted.endswith("[1]") and "two approvals" in quoted
    assert summary == "It needs two approvals [1]."
    assert [s.cited_by for s in answer.sources] == ["quoted", "model"]


def test_evidence_mode_answers_with_the_llm_endpoint_down(tmp_path: Path, collection: Collection) -> None:
    settings = Settings(data_dir=tmp_path / "data", collection="down")
    run_ingest(settings, Path(collection.store.document_records()[0].root))
    env = cli_env(settings.data_dir) | {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "RAG_COLLECTION": "down"}
    result = subprocess.run(
        [RAG_BIN, "ask", "How many approvals does a release need?", "--mode", "evidence"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "two approvals" in result.stdout and "[1]" in result.stdout


def test_a_documents_own_footnote_marks_do_not_look_like_citations() -> None:
    text = "apt-get downloads the .deb archives[5] from the configured sources."
    quoted = render(select("apt-get", [(1, text)], _keyword_scorer("apt-get")))
    assert quoted == "apt-get downloads the .deb archives⁵ from the configured sources. [1]"


def test_a_heading_line_loses_to_the_sentence_that_answers() -> None:
    """A table of contents is as similar to the question as the answer, and answers nothing (here in one passage:
    between passages the rank bonus weighs in too)."""
    toc = "Mirrors\n\n2.1 How do I pick a mirror 2.2 Which mirror is fastest 2.3 Mirror lists"
    prose = (
        "Pick the mirror closest to you, a.k.a. the one with the fewest network hops. It is usually fastest."
    )
    scores = {"2.1 How do I pick a mirror 2.2 Which mirror is fastest 2.3 Mirror lists": 0.8}
    chosen = select(
        "How do I pick a mirror?",
        [(1, f"{toc}\n\n{prose}")],
        lambda q, units: np.asarray([scores.get(u, 0.75) for u in units]),
    )
    assert [u.text for u in chosen][0].startswith("Pick the mirror closest to you, a.k.a. the one")
    assert all("2.1" not in u.text for u in chosen)
