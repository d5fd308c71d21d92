"""Mining and a short training run on a small corpus made here, with the real CrossEncoder."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from rag.collection import Collection
from rag.config import Settings
from rag.embedder import LocalEmbedder
from rag.reranker_card import RerankerCard, collection_reranker_dir
from rag.search import Searcher
from tests.conftest import RAG_BIN, cli_env
from tests.docs_factory import make_corpus
from tests.test_ingest import run_ingest
from training.collection_reranker import (
    calibrate,
    mine_for_training,
    train_collection_reranker,
)
from training.gate import MIN_FAMILY, FamilyResult, Probe, verdict
from training.reranker import Group, MiningOptions, accuracy_at_1, as_question, mine, train


def _corpus(root: Path) -> Path:
    make_corpus(root)
    (root / "faq.md").write_text(
        "# Camel FAQ\n\n## How much water can a camel drink?\n\nA thirsty camel drinks up to 100 litres in ten minutes.\n\n"
        "## Why do camels have humps?\n\nThe hump stores fat, not water, as an energy reserve.\n"
    )
    return root


def test_mining_yields_valid_groups_and_honours_exclusions(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder
) -> None:
    root = _corpus(tmp_path / "corpus")
    run_ingest(settings, root)
    with Collection(settings) as collection:
        counts: Counter[str] = Counter()
        groups = mine(collection, MiningOptions(negatives=2), counts=counts)
        excluded = mine(collection, MiningOptions(exclude=["faq.md"], negatives=2))
    assert groups, "no group mined"
    for g in groups:
        assert g.query and g.positive and len(g.negatives) == 2 and g.positive not in g.negatives
    assert any(g.query == "How much water can a camel drink?" for g in groups)
    assert counts["heading: kept"] == len(groups)
    assert all("camel" not in g.positive.lower() for g in excluded)
    assert all(all("camel" not in n.lower() for n in g.negatives) for g in excluded)


PLANTED = Group(
    "What colour is the zebra's skin?",
    "Under its striped coat, the zebra's skin is black.",
    ["Penguins live in the southern hemisphere.", "A kettle boils water.", "Tax returns are due in April."],
    "heading",
)


def test_short_training_ranks_a_planted_positive_first(tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    planted = PLANTED
    result = train([planted] * 8, tmp_path / "model", minutes=2, layers=2, lr=1e-4, epochs=2)
    assert result.steps == 16 and result.best_val_acc1 == 1.0
    model = CrossEncoder(str(result.path))
    scores = model.predict([(planted.query, p) for p in [planted.positive, *planted.negatives]])
    assert scores.argmax() == 0
    assert accuracy_at_1(model, [planted]) == 1.0


def test_onnx_backends_score_as_the_torch_cross_encoder(tmp_path: Path) -> None:
    """Exported once beside the weights; fp32 gives torch's scores, int8 keeps the ranking."""
    from rag.rerank import build_cross_encoder

    planted = PLANTED
    # Trained until the positive stands clear of the negatives: after 16 steps at 1e-4 they were 1e-4 apart, inside
    # int8's noise, and int8 ranked a negative first on one CI run.
    folder = train([planted] * 8, tmp_path / "model", minutes=2, layers=2, lr=5e-4, epochs=4).path
    pairs = [(planted.query, p) for p in [planted.positive, *planted.negatives]]
    torch_scores = build_cross_encoder(str(folder), "torch", 128).predict(pairs)
    fp32 = build_cross_encoder(str(folder), "onnx", 128).predict(pairs)
    int8 = build_cross_encoder(str(folder), "onnx-int8", 128).predict(pairs)
    assert abs(fp32 - torch_scores).max() < 1e-4 and int8.min() >= 0.0 and int8.max() <= 1.0
    assert torch_scores.argmax() == int8.argmax() == 0 and abs(int8 - torch_scores).max() < 0.05
    exported = (folder / "model.int8.onnx").stat().st_mtime_ns
    build_cross_encoder(str(folder), "onnx-int8", 128)
    assert (folder / "model.int8.onnx").stat().st_mtime_ns == exported  # not exported again
    assert not list(folder.glob("*.partial"))


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


# A built corpus where headings are easy to learn and the questions about a section's body are not headings:
# each creature's page has three sections named after it; the bodies share most of their sentences.
CREATURES = [
    "Badger",
    "Otter",
    "Heron",
    "Walrus",
    "Falcon",
    "Beaver",
    "Lynx",
    "Moose",
    "Puffin",
    "Bison",
    "Gecko",
    "Tapir",
    "Okapi",
    "Ibis",
    "Marmot",
    "Ocelot",
    "Wombat",
    "Koala",
    "Lemur",
    "Narwhal",
    "Pelican",
    "Raven",
    "Salamander",
    "Toucan",
    "Vulture",
    "Weasel",
    "Yak",
    "Zebra",
    "Alpaca",
    "Bobcat",
    "Cheetah",
    "Dingo",
    "Ermine",
    "Ferret",
    "Gibbon",
    "Hyena",
    "Iguana",
    "Jackal",
    "Kestrel",
    "Llama",
]
SHARED = [
    "It is active at dawn and rests through the heat of the afternoon.",
    "Keepers weigh it every month and record the result in a ledger.",
    "Young ones stay close to the herd for their first season.",
    "It tolerates cold nights but needs shelter from heavy rain.",
    "Visitors may watch it from the raised boardwalk by the pond.",
    "Its enclosure is cleaned twice a week by the morning staff.",
]
FACTS = ["lichen", "turnips", "beetles", "clover", "acorns", "kelp", "figs", "millet", "sorrel", "crickets"]


def _zoo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(CREATURES):
        sections = []
        for j, aspect in enumerate(("feeding", "breeding", "sleeping")):
            shared = " ".join(SHARED[(i + j + k) % len(SHARED)] for k in range(3))
            fact = (
                f"The {name.lower()} favours {FACTS[(i * 3 + j) % len(FACTS)]} grown near quarry {i * 3 + j}."
            )
            sections.append(f"## {name} {aspect} habits\n\n{fact} {shared}\n")
        (root / f"{name.lower()}.md").write_text(f"# The {name}\n\n" + "\n".join(sections))
    return root


def _ingested_zoo(base: Path) -> tuple[Path, dict[str, str]]:
    """The zoo corpus in base/corpus ingested by the CLI into collection 'zoo': the data folder and the CLI's
    environment."""
    env = {**cli_env(base / "data"), "RAG_COLLECTION": "zoo"}
    ingest = [RAG_BIN, "ingest", str(_zoo(base / "corpus"))]
    subprocess.run(ingest, env=env, check=True, capture_output=True)
    return base / "data", env


def test_a_reranker_that_helps_headings_only_is_not_installed(tmp_path: Path) -> None:
    """Trained on headings, then asked about the bodies of pages it never saw, it does not beat the first stage by
    more than the noise, so the collection keeps no reranker."""
    data, env = _ingested_zoo(tmp_path)
    trained = subprocess.run(
        [RAG_BIN, "train-reranker", "--minutes", "2", "--layers", "2"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "documents held out of training to test the model on" in trained.stdout
    assert "keywords (" in trained.stdout and "95% interval" in trained.stdout, trained.stdout
    assert "not installed: " in trained.stdout and "the collection has no reranker" in trained.stdout
    folder = collection_reranker_dir(Settings(data_dir=data, collection="zoo"))
    assert not folder.exists() and not folder.with_name("reranker.new").exists()
    rejected = RerankerCard.load(folder.with_name("reranker.rejected"))  # kept aside, to measure by hand
    assert rejected is not None
    # It was trained. What it learned is not asserted: two layers for 350 steps moved the loss from 1.61 to 1.44
    # here and to 1.58 in a fresh clone (2026-12-04), and the acc@1 of the 9 held-out headings by a question or
    # none. The gate's verdict is the point: such a model is kept out.
    assert rejected.training["steps"] >= 300 and rejected.training["loss_end"] > 0, rejected.training
    keywords = rejected.held_out["families"]["keywords"]
    assert keywords["questions"] >= MIN_FAMILY and keywords["low"] <= 0, keywords
    asked = subprocess.run(
        [RAG_BIN, "ask", "--json", "Badger feeding habits"], env=env, capture_output=True, text=True
    )
    assert json.loads(asked.stdout)["reranker"].startswith("reranking is off: this collection has no trained")


def _answered_last(groups: list[Group]) -> list[Probe]:
    """Gate questions a trained model must win: its own training questions, whose answer a stand-in first stage
    ranks last among its candidates (a model trained for seconds on this corpus does not reliably beat the real
    first stage on anything, which is the point of the gate)."""
    probes = []
    for g in groups[:30]:
        docs = [*(f"other-{i}" for i in range(len(g.negatives))), g.doc_id]
        probes.append(Probe(g.query, g.doc_id, [*g.negatives, g.positive], docs, docs))
    return probes


def test_a_trained_reranker_is_found_calibrated_and_not_replaced_by_a_worse_one(tmp_path: Path) -> None:
    """Installed beside the collection with its card; `rag ask` reranks with it and no setting."""
    data, env = _ingested_zoo(tmp_path)
    settings = Settings(data_dir=data, collection="zoo")
    with Collection(settings) as collection:
        mined = mine_for_training(collection, MiningOptions(negatives=2))
    held = set(mined.held_out_docs)  # held out by document: never trained on, as a positive or a negative
    assert len(held) >= 2 and not held & {g.doc_id for g in mined.train + mined.held_out}
    assert len(mined.families["keywords"]) >= MIN_FAMILY
    assert all(p.answer_doc in held for probes in mined.families.values() for p in probes)
    learned = replace(mined, families={"learned": _answered_last(mined.train)})
    outcome = train_collection_reranker(settings, learned, minutes=0.5, layers=2)
    assert outcome.replaced, outcome.summary("zoo")
    folder = collection_reranker_dir(settings)
    card = RerankerCard.load(folder)
    assert card is not None and card == outcome.card and 0.0 < card.threshold <= 1.0
    # a model trained for seconds may not tell these off-topic questions apart: then the bi-encoder refuses
    assert card.threshold < 1.0 or card.held_out["refusal"].startswith("left to the bi-encoder")
    family = card.held_out["families"]["learned"]
    assert family["new"] > max(family["dense"], family["hybrid"])
    assert family["low"] > 0 and card.held_out["calibration_questions"]["unanswerable"] >= 30

    asked = subprocess.run(
        [RAG_BIN, "ask", "--json", "Badger feeding habits"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert asked.returncode == 0, asked.stderr[-2000:]
    reranker = json.loads(asked.stdout)["reranker"]
    assert reranker == f"cross-encoder {folder} (trained for collection 'zoo' {card.trained_at[:10]}, " + (
        f"threshold {card.threshold:.3f})"
    )
    docs = subprocess.run([RAG_BIN, "docs"], env=env, capture_output=True, text=True)
    assert f"reranker: {reranker}" in docs.stdout
    # Opened by name from settings whose own collection is another (as the UI does): its reranker, its name.
    with Collection(Settings(data_dir=data), "zoo") as by_name:
        searcher = Searcher.for_collection(by_name)
        assert searcher.reranker_label(True) == reranker and searcher.threshold(True) == card.threshold
        # refusing: the reranker's threshold or the bi-encoder's (RAG_RERANK_ALONE_REFUSES=1: the reranker's)
        question = "Badger feeding habits"
        assert searcher.search(question).dense_threshold == by_name.settings.relevance_threshold
        assert searcher.search(question, rerank=False).dense_threshold is None
        searcher.settings = by_name.settings.model_copy(update={"rerank_alone_refuses": True})
        assert searcher.search(question).dense_threshold is None

    # A retrain judged against the real first stage (not the reversed one): a model trained for seconds on headings
    # does not beat it on the keyword questions by more than the noise, so the installed model stays.
    retrained = train_collection_reranker(settings, mined, minutes=0.5, layers=2)
    assert not retrained.replaced and retrained.card == card, retrained.summary("zoo")
    assert retrained.reason.startswith(
        ("it ranks keywords questions worse", "its gain on keywords questions is within")
    )
    assert RerankerCard.load(folder) == card and not folder.with_name("reranker.new").exists()

    # The collection then changes by more than RAG_RERANK_RETRAIN_SHARE (20%): retraining is offered, not forced.
    corpus = tmp_path / "corpus"
    for name in CREATURES[:10]:
        (corpus / f"{name.lower()}.md").write_text(f"# {name}s\n\nThe {name} is a shy forest animal.\n")
    again = subprocess.run([RAG_BIN, "ingest", str(corpus)], env=env, capture_output=True, text=True)
    offer = f"{10 / len(card.documents):.0%} of the documents changed since this collection's reranker was trained"
    assert f"note: {offer}" in again.stdout and "rag train-reranker --collection zoo" in again.stdout
    assert offer in subprocess.run([RAG_BIN, "docs"], env=env, capture_output=True, text=True).stdout
    assert RerankerCard.load(folder) == card  # still the one in use

    # The way back: uninstalled, the first stage answers; the model is kept aside.
    removed = subprocess.run(
        [RAG_BIN, "train-reranker", "--uninstall"], env=env, capture_output=True, text=True
    )
    assert removed.returncode == 0 and "uninstalled the reranker of collection 'zoo'" in removed.stdout
    assert not folder.exists() and RerankerCard.load(folder.with_name("reranker.uninstalled")) == card
    asked = subprocess.run(
        [RAG_BIN, "ask", "--json", "Badger feeding habits"], env=env, capture_output=True, text=True
    )
    assert json.loads(asked.stdout)["reranker"].startswith("reranking is off: this collection has no trained")
    again = subprocess.run(
        [RAG_BIN, "train-reranker", "--uninstall"], env=env, capture_output=True, text=True
    )
    assert again.returncode == 0 and "has no installed reranker: nothing to uninstall" in again.stdout


def test_keyword_queries_use_salient_terms_not_in_the_heading(
    tmp_path: Path, settings: Settings, embedder: LocalEmbedder
) -> None:
    run_ingest(settings, _corpus(tmp_path / "corpus"))
    with Collection(settings) as collection:
        counts: Counter[str] = Counter()
        groups = mine(collection, MiningOptions(negatives=2, keyword_questions=50), counts=counts)
    keyword = [g for g in groups if g.origin == "keywords"]
    assert keyword, counts
    for group in keyword:
        terms = group.query.split()
        assert len(terms) == 4 and all(t in group.positive.lower() for t in terms)
        heading = group.positive.split("\n", 1)[0].lower() if "\n" in group.positive else ""
        assert not any(t in heading.split() for t in terms)


def test_a_threshold_that_refuses_answerable_or_cannot_refuse_off_topic_leaves_refusing_to_the_bi_encoder() -> (
    None
):
    separable, _ = calibrate({"keywords": [0.9, 0.95, 0.97, 0.99]}, [0.1, 0.2, 0.3, 0.4])
    assert 0.4 < separable <= 0.9
    scores = [0.3, 0.5, 0.7, 0.9]  # held-out sentences that score like questions from other domains
    threshold, stats = calibrate({"links": scores}, scores)
    assert threshold == 1.0 and stats["refusal"].startswith("left to the bi-encoder")
    assert stats["refusal_accuracy"] < 0.9
    # One family separates well; the other's questions score like off-topic ones: the best balanced threshold
    # would refuse many of them, more than the 3% allowed, so it is not used.
    easy = [0.9 + i / 1000 for i in range(40)]
    hard = [0.2 + i / 100 for i in range(10)]
    threshold, stats = calibrate({"keywords": easy, "links": hard}, [0.1 + i / 200 for i in range(40)])
    assert threshold == 1.0 and "of the links questions (at most 3%)" in stats["refusal"], stats
    assert stats["answered_by_family"]["keywords"] == 1.0


def _family(
    gain: float, low: float, high: float, questions: int = 40, current: float | None = None
) -> FamilyResult:
    return FamilyResult("links", questions, 0.5, 0.45, 0.5 + gain, current, "dense", gain, low, high)


def test_the_gate_installs_only_a_gain_beyond_the_noise_on_every_family() -> None:
    assert verdict([_family(0.1, 0.05, 0.15), replace(_family(0.04, 0.01, 0.07), family="keywords")]) is None
    falls = verdict([_family(0.1, 0.05, 0.15), replace(_family(-0.01, -0.05, 0.03), family="keywords")])
    assert falls is not None and falls.startswith("it ranks keywords questions worse than the first stage")
    noise = verdict([_family(0.02, -0.01, 0.05)])
    assert noise is not None and "within the noise" in noise and "95% interval -0.010 to +0.050" in noise
    small = verdict([_family(0.3, 0.2, 0.4, questions=MIN_FAMILY - 1)])
    assert small is not None and small.startswith("too few questions about documents it never saw")
    # a small family is not measured; the others decide
    assert (
        verdict([_family(0.1, 0.05, 0.15), replace(_family(-0.3, -0.5, 0.0, questions=3), family="x")])
        is None
    )
    better_installed = verdict([_family(0.1, 0.05, 0.15, current=0.7)])
    assert (
        better_installed is not None
        and "the installed reranker ranks these questions better" in better_installed
    )


def test_eval_warns_when_the_reranker_ranks_worse_than_the_first_stage() -> None:
    from evals.run import reranker_warning

    retrieval = {
        "dense": {"doc_mrr@10": 0.316},
        "hybrid": {"doc_mrr@10": 0.281},
        "hybrid+rerank": {"doc_mrr@10": 0.305},
    }
    warning = reranker_warning(retrieval, "trained for collection 'python-docs'")
    assert warning is not None and "(document MRR@10 0.305 reranked against 0.316 dense)" in warning
    assert "rag train-reranker --uninstall" in warning
    assert "unset RAG_RERANK_MODEL" in (reranker_warning(retrieval, "RAG_RERANK_MODEL") or "")
    retrieval["hybrid+rerank"]["doc_mrr@10"] = 0.32
    assert reranker_warning(retrieval, "") is None


def test_a_trained_model_serves_in_bf16_on_amx_and_in_int8_elsewhere_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gate measures the model as it will serve, so the backend is chosen before it: torch's bf16 where the CPU
    has AMX tiles, ONNX int8 elsewhere (docs/scale.md, "The cross-encoder"), and RAG_RERANK_BACKEND above both."""
    import training.collection_reranker as trainer
    from rag.embedder import cpu_has_amx

    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():  # the probe torch offers agrees with the CPU's own flags
        assert cpu_has_amx() == (" amx_tile" in cpuinfo.read_text())
    monkeypatch.setattr(trainer, "cpu_has_amx", lambda: True)
    assert trainer.serving_backend(Settings()) == "torch-bf16"
    monkeypatch.setattr(trainer, "cpu_has_amx", lambda: False)
    assert trainer.serving_backend(Settings()) == "onnx-int8"
    assert trainer.serving_backend(Settings(rerank_backend="onnx")) == "onnx"
