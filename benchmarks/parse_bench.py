"""Parsing in worker processes (RAG_INGEST_WORKERS) against the parser thread, on a folder of scans, side by side.

    python -m benchmarks.parse_bench [--scans 24] [--workers 0,1,2]

A folder of scanned pages (PNG, four lines drawn in varying fonts and sizes, the first its number; every page read by
Tesseract) is ingested into a fresh collection once per worker count, each run in its own process, one after the
other. Prints each run's wall time, chunks and peak RSS of the ingesting process (workers' own not included), and
the thread's wall time over each. The HTML docs' case (parsing is cheap there and the embedder dominates) is in
benchmarks/ingest_bench.py.
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

from PIL import Image, ImageDraw, ImageFont

FONTS = [f"/usr/share/fonts/truetype/dejavu/DejaVu{name}.ttf" for name in ("Sans", "Serif", "SansMono")]
LINES = [
    "Invoice 4711 was paid on 12 March 2026 by bank transfer.",
    "Replace the filter every 300 hours, or sooner in dusty sites.",
    "Warranty claims need the serial number (e.g. SN-88-1042-B).",
]


def make_scans(folder: Path, count: int) -> None:
    """count different pages of a few lines each, in a font and size that vary, each with its number."""
    folder.mkdir(parents=True)
    for i in range(count):
        face = ImageFont.truetype(FONTS[i % len(FONTS)], 28 + 4 * (i // len(FONTS) % 3))
        image = Image.new("L", (1700, 700), 255)
        draw = ImageDraw.Draw(image)
        for row, line in enumerate([f"Scan {i} of {count}.", *LINES]):
            draw.text((100, 60 + row * 80), line, font=face, fill=0)
        image.save(folder / f"scan-{i:03d}.png")


def ingest_once(folder: Path, data: Path, workers: int) -> dict[str, float]:
    from ingest.job import ingest_folder
    from rag.config import Settings

    started = time.perf_counter()
    summary = ingest_folder(Settings(data_dir=data, ingest_workers=workers), folder, progress=False)
    return {
        "wall_s": time.perf_counter() - started,
        "chunks": summary.chunks,
        "failed": len(summary.failed),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=24)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--run", nargs=3, help=argparse.SUPPRESS)  # FOLDER DATA WORKERS: one run, JSON out
    args = parser.parse_args()
    if args.run:
        folder, data, workers = args.run
        print(json.dumps(ingest_once(Path(folder), Path(data), int(workers))))
        return
    print(f"{datetime.now(UTC).isoformat(timespec='minutes')}, {platform.machine()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="parse_bench_") as tmp:
        folder = Path(tmp) / "scans"
        make_scans(folder, args.scans)
        results = {}
        for workers in (int(w) for w in args.workers.split(",")):
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.parse_bench",
                "--run",
                str(folder),
                f"{tmp}/data{workers}",
            ]
            out = subprocess.run([*cmd, str(workers)], check=True, capture_output=True, text=True).stdout
            results[workers] = json.loads(out.strip().splitlines()[-1])
            print(f"  workers {workers}: {results[workers]}", file=sys.stderr, flush=True)
    thread = results.get(0, {}).get("wall_s")
    print(
        f"\n{args.scans} scanned pages\n\n| parsing | wall s | chunks | failed | peak RSS MB | thread ÷ this |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for workers, r in results.items():
        label = "a thread (0)" if workers == 0 else f"{workers} process{'es' if workers > 1 else ''}"
        ratio = f"{thread / r['wall_s']:.2f}" if thread else ""
        print(
            f"| {label} | {r['wall_s']:.1f} | {r['chunks']} | {r['failed']} | {r['peak_rss_mb']:.0f} | {ratio} |"
        )


if __name__ == "__main__":
    main()
