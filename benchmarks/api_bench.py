"""`rag serve` under load, and what the API adds over an in-process `ask`, measured side by side in one run.

    python -m benchmarks.api_bench --data-dir .rag --collection debian-faq --qa evals/data/debian_faq.jsonl
        [--questions 30] [--clients 4] [--seconds 120] [--mode evidence|generate]

1. In process: the collection's chat pipeline answers --questions questions one after another, twice; the time
   of each `ask` in the second pass is kept (the first pass warms caches: it ran ~15% slower).
2. The same questions, twice, through a launched `rag serve` (loopback), non-streamed, with the `openai` client;
   overhead = the median of the paired differences (API wall time minus in-process time). The API layer alone
   (wall time minus the server's own pipeline time, `rag.timings.total_ms`) is printed beside it.
3. --clients threads ask through the API in a loop for --seconds; errors (exceptions) and empty answers (blank and
   not refused) are counted. Target: 0 errors, 0 empty, overhead p50 <= 20 ms.

The embedded store is one process at a time, so step 1 closes the collection before the server opens it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import openai

from evals.metrics import summarize
from evals.qa import load_qa
from rag.answer import open_chat
from rag.collection import Collection
from rag.config import Settings, load_settings

RAG_BIN = str(Path(sys.executable).parent / "rag")
OVERHEAD_TARGET_MS = 20.0


def main() -> int:
    args = _parse()
    settings = load_settings(data_dir=args.data_dir, collection=args.collection, answer_mode=args.mode)
    questions = [q.question for q in load_qa(args.qa)][: args.questions]
    local = _in_process(settings, questions)
    with _served(args) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
        remote = [_timed_api(client, args.collection, q) for q in questions * 2][len(questions) :]
        load = _load(base_url, args, questions)
    paired = [r.wall_ms - lo for r, lo in zip(remote, local, strict=True)]
    overhead = statistics.median(paired)
    layer = statistics.median(r.wall_ms - r.server_ms for r in remote)
    print(
        f"in-process ask p50 {statistics.median(local):.1f} ms; "
        f"API p50 {statistics.median(r.wall_ms for r in remote):.1f} ms"
    )
    print(
        f"API overhead (median of paired differences over {len(paired)} questions): {overhead:.1f} ms; "
        f"the API layer alone (HTTP, JSON, client): {layer:.1f} ms"
    )
    print(
        f"{args.clients} clients for {args.seconds} s: {load['requests']} requests, {load['errors']} errors, "
        f"{load['empty']} empty, latency p50 {load['p50']:.0f} ms, p95 {load['p95']:.0f} ms"
    )
    ok = load["errors"] == 0 and load["empty"] == 0 and overhead <= OVERHEAD_TARGET_MS
    print("PASS" if ok else "FAIL", f"(target: 0 errors, 0 empty, overhead <= {OVERHEAD_TARGET_MS:g} ms)")
    return 0 if ok else 1


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--collection", required=True)
    p.add_argument("--qa", type=Path, required=True)
    p.add_argument("--questions", type=int, default=30)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--mode", choices=["evidence", "generate"], default="evidence")
    return p.parse_args()


def _in_process(settings: Settings, questions: list[str]) -> list[float]:
    times = []
    with Collection(settings) as collection:
        chat = open_chat(collection, with_llm=settings.answer_mode != "evidence")
        for question in questions * 2:
            started = time.perf_counter()
            chat.ask(question)
            times.append((time.perf_counter() - started) * 1000)
    return times[len(questions) :]


@dataclass
class Timed:
    wall_ms: float
    server_ms: float  # the pipeline's own time in the server
    empty: bool  # blank without being a refusal: a bug


def _timed_api(client: openai.OpenAI, model: str, question: str) -> Timed:
    started = time.perf_counter()
    response = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}])
    wall = (time.perf_counter() - started) * 1000
    rag = (response.model_extra or {}).get("rag", {})
    blank = not (response.choices[0].message.content or "").strip()
    return Timed(wall, float(rag.get("timings", {}).get("total_ms", 0.0)), blank and not rag.get("refused"))


class _served:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def __enter__(self) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        env = os.environ | {
            "RAG_DATA_DIR": str(self.args.data_dir),
            "RAG_COLLECTION": self.args.collection,
            "RAG_ANSWER_MODE": self.args.mode,
            "HF_HUB_OFFLINE": "1",
        }
        env.pop("RAG_API_KEY", None)
        self.process = subprocess.Popen(
            [RAG_BIN, "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return f"http://127.0.0.1:{port}/v1"
            except OSError:
                if self.process.poll() is not None:
                    raise SystemExit("rag serve exited at startup") from None
                time.sleep(0.3)
        raise SystemExit("rag serve did not open its port in 180 s")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _load(base_url: str, args: argparse.Namespace, questions: list[str]) -> dict[str, float]:
    deadline = time.monotonic() + args.seconds
    latencies: list[float] = []
    counts = {"errors": 0, "empty": 0}
    lock = threading.Lock()

    def client_loop(offset: int) -> None:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
        for question in itertools.islice(itertools.cycle(questions), offset, None):
            if time.monotonic() > deadline:
                return
            try:
                timed = _timed_api(client, args.collection, question)
            except openai.OpenAIError as exc:
                with lock:
                    counts["errors"] += 1
                print(f"error: {exc}", file=sys.stderr)
                continue
            with lock:
                latencies.append(timed.wall_ms)
                counts["empty"] += timed.empty

    threads = [threading.Thread(target=client_loop, args=(i * 7,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = summarize(latencies)
    return {
        "requests": len(latencies) + counts["errors"],
        **counts,
        "p50": float(stats["p50"] or 0),
        "p95": float(stats["p95"] or 0),
    }


if __name__ == "__main__":
    raise SystemExit(main())
