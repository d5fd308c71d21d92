"""Mining and a short training run on a small corpus made here, with the real CrossEncoder."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path

from rag.collection import Collection
from rag.config import Settings
from rag.embedder import Embedder
from rag.reranker_card import RerankerCard, collection_reranker_dir
from rag.search import Searcher
from tests.conftest import RAG_BIN, cli_env
from tests.docs_factory import make_corpus
from tests.test_ingest import run_ingest
from training.collection_reranker import calibrate, mine_for_training, train_collection_reranker
from training.reranker import Group, accuracy_at_1, as_question, mine, train


def _corpus(root: Path) -> Path:
    make_corpus(root)
    (root / "faq.md").write_text(
        "# Camel FAQ\n\n## How much water can a camel drink?\n\nA thirsty camel drinks up to 100 litres in ten minutes.\n\n"
        "## Why do camels have humps?\n\nThe hump stores fat, not water, as an energy reserve.\n"
    )
    return root


def test_mining_yields_valid_groups_and_honours_exclusions(
    tmp_path: Path, settings: Settings, embedder: Embedder
) -> None:
    root = _corpus(tmp_path / "corpus")
    run_ingest(settings, root)
    with Collection(settings) as collection:
        counts: Counter[str] = Counter()
        groups = mine(collection, exclude=[], negatives=2, counts=counts)
        excluded = mine(collection, exclude=["faq.md"], negatives=2)
    assert groups, "no group mined"
    for g in groups:
        assert g.query and g.positive and len(g.negatives) == 2 and g.positive not in g.negatives
    assert any(g.query == "How much water can a camel drink?" for g in groups)
    assert counts["heading: kept"] == len(groups)
    assert all("camel" not in g.positive.lower() for g in excluded)
    assert all(all("camel" not in n.lower() for n in g.negatives) for g in excluded)


def test_short_training_ranks_a_planted_positive_first(tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    planted = Group(
        "What colour is the zebra's skin?",
        "Under its striped coat, the zebra's skin is black.",
        [
            "Penguins live in the southern hemisphere.",
            "A kettle boils water.",
            "Tax returns are due in April.",
        ],
        "heading",
    )
    result = train([planted] * 8, tmp_path / "model", minutes=2, layers=2, lr=1e-4, epochs=2)
    assert result.steps == 16 and result.best_val_acc1 == 1.0
    model = CrossEncoder(str(result.path))
    scores = model.predict([(planted.query, p) for p in [planted.positive, *planted.negatives]])
    assert scores.argmax() == 0
    assert accuracy_at_1(model, [planted]) == 1.0


def test_llm_replies_become_questions() -> None:
    assert (
        as_question('Question: "What does os.walk return?"\nIt returns tuples.')
        == "What does os.walk return?"
    )
    assert as_question("**Q1:** How do I sort a list? Use sorted().") == "How do I sort a list?"
    assert as_question("1. Why is the sky blue?") == "Why is the sky blue?"
    assert as_question("Sorting lists is easy.") is None
    assert as_question("Why?") is None
    assert as_question("Q-learning: how does it converge?") == "Q-learning: how does it converge?"
    assert as_question("404 errors: why do servers send them?") == "404 errors: why do servers send them?"
    assert as_question("See https://example.org/search?q=1 for details.") is None
    assert as_question("“What does map() return?”") == "What does map() return?"


def test_a_reranker_that_ranks_worse_than_the_first_stage_is_not_installed(
    tmp_path: Path, embedder: Embedder
) -> None:
    """On a corpus this small the first stage already ranks every held-out question's passage first."""
    data, env = _ingested_animals(tmp_path)
    trained = subprocess.run(
        [RAG_BIN, "train-reranker", "--minutes", "0.05", "--layers", "2"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "first stage 1.000" in trained.stdout
    assert "not installed: it ranks the held-out questions no better than the first stage" in trained.stdout
    assert "the collection has no reranker" in trained.stdout
    folder = collection_reranker_dir(Settings(data_dir=data, collection="animals"))
    assert not folder.exists() and not folder.with_name("reranker.new").exists()
    assert (
        RerankerCard.load(folder.with_name("reranker.rejected")) is not None
    )  # kept aside, to measure by hand


def _ingested_animals(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The test corpus ingested by the CLI into collection 'animals': the data folder and the CLI's environment."""
    data = tmp_path / "data"
    env = {**cli_env(data), "RAG_COLLECTION": "animals"}
    subprocess.run(
        [RAG_BIN, "ingest", str(_corpus(tmp_path / "corpus"))], env=env, check=True, capture_output=True
    )
    return data, env


def test_a_trained_reranker_is_found_calibrated_and_not_replaced_by_a_worse_one(
    tmp_path: Path, embedder: Embedder
) -> None:
    """Installed beside the collection with its card; `rag ask` reranks with it and no setting."""
    data, env = _ingested_animals(tmp_path)
    settings = Settings(data_dir=data, collection="animals")
    with Collection(settings) as collection:
        mined = mine_for_training(collection, exclude=[], negatives=2)
    # A first stage that ranks each answering passage last, so that a trained model can beat it.
    last_first = replace(
        mined,
        answerable=[(q, passages[::-1]) for q, passages in mined.answerable],
        candidate_docs=[docs[::-1] for docs in mined.candidate_docs],
    )
    outcome = train_collection_reranker(settings, last_first, minutes=0.5, layers=2)
    assert outcome.replaced, outcome
    folder = collection_reranker_dir(settings)
    card = RerankerCard.load(folder)
    assert card is not None and card == outcome.card and 0.0 < card.threshold <= 1.0
    # a model trained for seconds may not tell these off-topic questions apart: then the bi-encoder refuses
    assert card.threshold < 1.0 or card.held_out["refusal"].startswith("left to the bi-encoder")
    assert card.held_out["mrr@10"] > card.held_out["mrr@10_first_stage"]
    assert card.held_out["calibration_questions"]["unanswerable"] >= 30

    asked = subprocess.run(
        [RAG_BIN, "ask", "--json", "How much water can a camel drink?"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert asked.returncode == 0, asked.stderr[-2000:]
    reranker = json.loads(asked.stdout)["reranker"]
    assert (
        reranker
        == f"cross-encoder {folder} (trained for collection 'animals' {card.trained_at[:10]}, "
        + (f"threshold {card.threshold:.3f})")
    )
    docs = subprocess.run([RAG_BIN, "docs"], env=env, capture_output=True, text=True)
    assert f"reranker: {reranker}" in docs.stdout
    # Opened by name from settings whose own collection is another (as the UI does): its reranker, its name.
    with Collection(Settings(data_dir=data), "animals") as by_name:
        searcher = Searcher.for_collection(by_name)
        assert searcher.reranker_label(True) == reranker and searcher.threshold(True) == card.threshold
        # refusing: the reranker's threshold or the bi-encoder's (RAG_RERANK_ALONE_REFUSES=1: the reranker's)
        question = "How much water can a camel drink?"
        assert searcher.search(question).dense_threshold == by_name.settings.relevance_threshold
        assert searcher.search(question, rerank=False).dense_threshold is None
        searcher.settings = by_name.settings.model_copy(update={"rerank_alone_refuses": True})
        assert searcher.search(question).dense_threshold is None

    # A retrain that learns the opposite ranking ranks the same held-out questions worse: the card stays.
    backwards = [
        Group(g.query, g.negatives[0], [g.positive, *g.negatives[1:]], g.origin) for g in mined.train
    ]
    worse = train_collection_reranker(settings, replace(last_first, train=backwards), minutes=0.5, layers=2)
    assert not worse.replaced and worse.mrr["new"] < worse.mrr["current"], worse
    assert RerankerCard.load(folder) == card and not folder.with_name("reranker.new").exists()

    # The collection then changes by more than RAG_RERANK_RETRAIN_SHARE (20%): retraining is offered, not forced.
    corpus = tmp_path / "corpus"
    for animal in ("tapir", "okapi"):
        (corpus / f"{animal}.md").write_text(f"# {animal.title()}s\n\nThe {animal} is a shy forest animal.\n")
    again = subprocess.run([RAG_BIN, "ingest", str(corpus)], env=env, capture_output=True, text=True)
    offer = (
        f"{2 / len(card.documents):.0%} of the documents changed since this collection's reranker was trained"
    )
    assert f"note: {offer}" in again.stdout and "rag train-reranker --collection animals" in again.stdout
    assert offer in subprocess.run([RAG_BIN, "docs"], env=env, capture_output=True, text=True).stdout
    assert RerankerCard.load(folder) == card  # still the one in use


def test_keyword_queries_use_salient_terms_not_in_the_heading(
    tmp_path: Path, settings: Settings, embedder: Embedder
) -> None:
    run_ingest(settings, _corpus(tmp_path / "corpus"))
    with Collection(settings) as collection:
        counts: Counter[str] = Counter()
        groups = mine(collection, exclude=[], negatives=2, counts=counts, keyword_count=50)
    keyword = [g for g in groups if g.origin == "keywords"]
    assert keyword, counts
    for group in keyword:
        terms = group.query.split()
        assert len(terms) == 4 and all(t in group.positive.lower() for t in terms)
        heading = group.positive.split("\n", 1)[0].lower() if "\n" in group.positive else ""
        assert not any(t in heading.split() for t in terms)


def test_a_threshold_that_cannot_refuse_off_topic_questions_leaves_refusing_to_the_bi_encoder() -> None:
    separable, _ = calibrate([0.9, 0.95, 0.97, 0.99], [0.1, 0.2, 0.3, 0.4])
    assert 0.4 < separable <= 0.9
    scores = [0.3, 0.5, 0.7, 0.9]  # held-out sentences that score like questions from other domains
    threshold, stats = calibrate(scores, scores)
    assert threshold == 1.0 and stats["refusal"].startswith("left to the bi-encoder")
    assert stats["refusal_accuracy"] < 0.9
