"""`rag ingest --ray` with one and with two embedding workers, beside a plain `rag ingest`, in one run.

    python -m benchmarks.ray_bench [--limit N] [--out FILE.json]

The first N HTML pages of the Python 3.11 docs; a local Ray cluster (`ray start --head`, this machine's CPUs);
each run into a fresh collection, timed from the command's start to its end (Ray's start and connection included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals.fetch_corpora import copy_html_pages, python_docs_dir
from rag.llm_server import free_port

RAG_BIN = str(Path(sys.executable).with_name("rag"))
RAY_BIN = str(Path(sys.executable).with_name("ray"))
RUNS = {"plain": [], "ray, 1 worker": ["--ray-workers", "1"], "ray, 2 workers": ["--ray-workers", "2"]}


def _ingest(corpus: Path, data: Path, extra: list[str], env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    run = subprocess.run(
        [RAG_BIN, "ingest", str(corpus), "--json", "--no-progress", *extra],
        env=env | {"RAG_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if run.returncode not in (0, 1):
        raise SystemExit(f"rag ingest {' '.join(extra)} failed: {run.stderr[-2000:]}")
    summary = json.loads(run.stdout)
    chunks = int(summary["chunks_written"])
    return {
        "chunks": chunks,
        "wall_s": round(wall, 1),
        "chunks_per_s": round(chunks / wall, 1),
        "summary": summary,
    }


def run(limit: int) -> dict[str, Any]:
    token_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **token_env}
    port = free_port()
    start = [RAY_BIN, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}"]
    subprocess.run([*start, "--include-dashboard=false", "--disable-usage-stats"], env=env, check=True)
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="ray_bench_") as tmp:
            corpus = Path(tmp) / "corpus"
            files = copy_html_pages(python_docs_dir(), corpus, limit)
            for i, (name, extra) in enumerate(RUNS.items()):
                ray = ["--ray", f"127.0.0.1:{port}", *extra] if extra else []
                print(f"running {name} …", file=sys.stderr, flush=True)
                results[name] = _ingest(corpus, Path(tmp) / f"data{i}", ray, env)
                brief = {k: v for k, v in results[name].items() if k != "summary"}
                print(f"  {name}: {json.dumps(brief)}", file=sys.stderr, flush=True)
    finally:
        subprocess.run([RAY_BIN, "stop", "--force"], env=env, capture_output=True, check=False)
    plain, one, two = (results[name]["chunks_per_s"] for name in RUNS)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
        },
        "corpus": {"html_files": files, "limit": limit},
        "runs": results,
        "ratios": {"ray_1_vs_plain": one / plain, "ray_2_vs_ray_1": two / one, "ray_2_vs_plain": two / plain},
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"ray benchmark {report['date']} on {report['platform']['platform']} ({report['platform']['cpus']} CPUs)",
        f"corpus: {report['corpus']['html_files']} HTML files of the Python docs",
        "",
        f"{'run':<18}{'chunks':>8}{'wall s':>9}{'chunks/s':>10}",
    ]
    for name, r in report["runs"].items():
        lines.append(f"{name:<18}{r['chunks']:>8}{r['wall_s']:>9.1f}{r['chunks_per_s']:>10.1f}")
    lines.append("")
    lines += [f"{key}: {value:.2f}" for key, value in report["ratios"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="rag ingest --ray with 1 and 2 workers beside a plain run.")
    parser.add_argument("--limit", type=int, default=60, help="the first N HTML files (default 60)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    report = run(args.limit)
    print(render(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
