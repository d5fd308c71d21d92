"""Our retrieval inside llama-index: its RetrieverQueryEngine runs on it, and its RetrieverEvaluator's hit rate and
MRR agree with `rag eval`'s document recall@10 and MRR@10 for the same retriever (two independent implementations
of the metrics checking each other)."""

from __future__ import annotations

import json
import subprocess

import pytest
from llama_index.core.evaluation import RetrieverEvaluator
from llama_index.core.query_engine import RetrieverQueryEngine

from rag.collection import Collection
from rag.config import Settings
from rag.embedder import LocalEmbedder
from rag.integrations.llama_index import CollectionRetriever, open_retriever, query_engine
from rag.search import Searcher
from rag.store.base import chunk_id
from rag.store.payload import DocumentRecord
from tests.conftest import RAG_BIN, cli_env

DOCS = {
    "alpacas.md": "# Alpacas\n\nAlpacas eat grass and hay. Their fleece is shorn once a year.\n",
    "llamas.md": "# Llamas\n\nLlamas are pack animals. They also eat grass, and carry loads in the Andes.\n",
    "vicunas.md": "# Vicunas\n\nVicunas live in the high Andes and have the finest wool of any animal.\n",
    "camels.md": "# Camels\n\nCamels store fat in their humps and can go a week without water.\n",
    "wool.md": "# Wool\n\nWool is shorn from sheep, alpacas and vicunas; fleece quality is measured in microns.\n",
    "andes.md": "# The Andes\n\nThe Andes are the longest mountain range; llamas and vicunas live there.\n",
}
QUESTIONS = [
    ("What do alpacas eat?", "alpacas.md"),
    ("Which animal carries loads in the mountains?", "llamas.md"),
    ("Which animal has the finest wool?", "vicunas.md"),
    ("How long can camels go without water?", "camels.md"),
    ("How is fleece quality measured?", "wool.md"),
    ("What is the longest mountain range?", "andes.md"),
    ("What animal lives high in the mountains?", "vicunas.md"),
    ("How often is fleece shorn?", "alpacas.md"),
]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict]:
    root = tmp_path_factory.mktemp("docs")
    for name, text in DOCS.items():
        (root / name).write_text(text)
    qa = root.parent / "qa.jsonl"
    qa.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "question": q, "sources": [s]}) + "\n"
            for i, (q, s) in enumerate(QUESTIONS)
        )
    )
    data = tmp_path_factory.mktemp("data")
    env = cli_env(data) | {"RAG_COLLECTION": "animals"}
    out = root.parent / "eval-out"
    subprocess.run([RAG_BIN, "ingest", str(root), "--no-progress"], env=env, check=True, timeout=300)
    subprocess.run(
        [RAG_BIN, "eval", "--qa", str(qa), "--no-llm", "--out", str(out)],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    summary = json.loads((out / "summary.json").read_text())
    return Settings(data_dir=data, collection="animals"), summary["retrieval"]["hybrid"]


def test_retriever_evaluator_agrees_with_rag_eval(
    ingested: tuple[Settings, dict], embedder: LocalEmbedder
) -> None:
    settings, ours = ingested
    with Collection(settings) as collection:
        records = {r.source: r for r in collection.store.document_records()}
        retriever = CollectionRetriever(
            Searcher.for_collection(collection), top_k=30, top_n=30, rerank=False, per_document=True
        )
        evaluator = RetrieverEvaluator.from_metric_names(["hit_rate", "mrr"], retriever=retriever)
        results = [evaluator.evaluate(q, expected_ids=_chunk_ids(records[gold])) for q, gold in QUESTIONS]
    hit_rate = sum(r.metric_vals_dict["hit_rate"] for r in results) / len(results)
    mrr = sum(r.metric_vals_dict["mrr"] for r in results) / len(results)
    assert ours["questions"] == len(QUESTIONS)
    assert hit_rate == pytest.approx(ours["doc_recall@10"], abs=5e-5)  # rag eval rounds to 4 places
    assert mrr == pytest.approx(ours["doc_mrr@10"], abs=5e-5)  # rag eval rounds to 4 places
    print(f"llama-index hit rate {hit_rate:.4f} MRR {mrr:.4f}; rag eval {ours}")
    assert mrr < 1.0  # some gold document is not first: the agreement is about ranks, not a trivial 1 = 1


def _chunk_ids(record: DocumentRecord) -> list[str]:
    return [chunk_id(record.doc_id, record.content_hash, i) for i in range(record.chunks)]


def test_llama_index_query_engine_runs_on_our_retrieval(ingested: tuple[Settings, dict]) -> None:
    settings, _ = ingested
    with Collection(settings) as collection:
        retriever = open_retriever(collection, top_n=3)
        nodes = retriever.retrieve("What do alpacas eat?")
        assert nodes[0].node.metadata["source"] == "alpacas.md" and nodes[0].score is not None
        assert nodes[0].node.source_node is not None  # the document it came from
        engine = query_engine(collection, retriever)
        assert isinstance(engine, RetrieverQueryEngine)
        response = engine.query("What do alpacas eat?")
    assert str(response).strip()  # the embedded model's answer
    assert response.source_nodes[0].node.metadata["source"] == "alpacas.md"
