"""Soak test of the launched chat app: N gradio_client sessions ask real QA questions for a time budget.

    python -m benchmarks.soak --qa QA.jsonl --data-dir DIR [--collection NAME] [--docs FOLDER]
    python -m benchmarks.soak --qa QA.jsonl --url http://127.0.0.1:7860/
    python -m benchmarks.soak --demo
    common: [--clients 4] [--minutes 5] [--timeout-s 300] [--max-requests 10000] [--out soak-out/summary.json]

Without --url it launches `rag ui` on a free loopback port with RAG_DATA_DIR / RAG_COLLECTION set (after
`rag ingest FOLDER --no-progress` when --docs is given), waits for the port and stops the app at the end, also on
Ctrl-C or an error; the app's output goes to ui.log next to --out. --url targets an app already running on this
machine (loopback URLs only). --demo fetches the Debian FAQ (`apt-get download debian-faq`, cached in corpora/),
builds its QA set with evals.datasets (FAQ headings plus the unanswerable questions) and ingests the chapters into
a fresh temporary data dir; --qa then overrides the questions.

Each client has its own gradio_client Client and asks `/chat` in a loop, cycling through the questions from its
own offset, until the time budget is spent (a request running at the deadline may finish, within --timeout-s) or
--max-requests requests have started. Each request is an answer, a refusal, an error (exception or timeout) or an
empty answer (blank answer without `refused`: a bug). The target is 0 errors and 0 empty answers.

Output: a running line every 15 s, then a summary; the summary as JSON at --out and one line per request in
requests.jsonl beside it. Exit code 0 on PASS, 1 on FAIL, 2 on a setup error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from evals.metrics import summarize
from evals.qa import QAFormatError, QAItem, load_qa
from rag.llm_server import free_port

RAG_BIN = str(Path(sys.executable).parent / "rag")
LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
PROGRESS_EVERY_S = 15.0
STARTUP_TIMEOUT_S = 300.0
STOP_GRACE_S = 30.0
INTERRUPT_GRACE_S = 5.0
TARGET = "0 errors, 0 empty answers"

Outcome = Literal["answer", "refusal", "error", "empty"]


class SetupError(Exception):
    """The soak could not start: bad arguments, no QA, the app would not come up (exit code 2)."""


# --------------------------------------------------------------------------- one request


@dataclass
class Record:
    client: int
    question_id: str
    outcome: Outcome
    wall_ms: float
    first_token_ms: float | None = None
    total_ms: float | None = None
    error: str | None = None


def error_line(exc: BaseException, timeout_s: float) -> str:
    """The exception's type and the first line of its message."""
    if isinstance(exc, TimeoutError):
        return f"TimeoutError: no reply within {timeout_s:g} s"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def classify(result: Any) -> tuple[Outcome, str | None]:
    """The outcome of one /chat reply, and why it is an error when it is one."""
    if not isinstance(result, dict):
        return "error", f"unexpected reply: {type(result).__name__} instead of a dict"
    if result.get("refused") is True:
        return "refusal", None
    answer = result.get("answer")
    return ("answer", None) if isinstance(answer, str) and answer.strip() else ("empty", None)


def server_timing(result: Any, key: str) -> float | None:
    timings = result.get("timings") if isinstance(result, dict) else None
    value = timings.get(key) if isinstance(timings, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def ask(client: Any, index: int, item: QAItem, timeout_s: float, mode: str) -> Record:
    """One /chat call, bounded by timeout_s, as a Record; never raises."""
    started = time.perf_counter()
    job = None
    try:
        job = client.submit(item.question, mode=mode, api_name="/chat")
        result = job.result(timeout=timeout_s)
    except Exception as exc:
        if job is not None:
            with contextlib.suppress(Exception):
                job.cancel()
        return Record(index, item.id, "error", _ms_since(started), error=error_line(exc, timeout_s))
    outcome, why = classify(result)
    first, total = server_timing(result, "first_token_ms"), server_timing(result, "total_ms")
    return Record(index, item.id, outcome, _ms_since(started), first, total, why)


# --------------------------------------------------------------------------- clients


class Tally:
    """Records from every client thread, and the request budget they share."""

    def __init__(self, max_requests: int) -> None:
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._started = 0
        self.max_requests = max_requests

    def reserve(self) -> bool:
        with self._lock:
            if self._started >= self.max_requests:
                return False
            self._started += 1
            return True

    def add(self, record: Record) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> tuple[list[Record], int]:
        """The records so far and how many requests are in flight."""
        with self._lock:
            return list(self._records), self._started - len(self._records)

    @property
    def capped(self) -> bool:
        with self._lock:
            return self._started >= self.max_requests


@dataclass
class Plan:
    questions: list[QAItem]
    clients: int
    deadline: float
    timeout_s: float
    mode: str  # the answer mode asked for; generate is the one that loads the embedded LLM
    stop: threading.Event = field(default_factory=threading.Event)


def client_loop(index: int, client: Any, plan: Plan, tally: Tally) -> None:
    """Ask questions from this client's offset on until the deadline, a stop or the request cap."""
    count = len(plan.questions)
    offset = index * count // plan.clients
    for k in itertools.count():
        if plan.stop.is_set() or time.monotonic() >= plan.deadline or not tally.reserve():
            return
        tally.add(ask(client, index, plan.questions[(offset + k) % count], plan.timeout_s, plan.mode))


def progress_line(tally: Tally, elapsed_s: float) -> str:
    records, in_flight = tally.snapshot()
    counts = Counter(r.outcome for r in records)
    return (
        f"[{elapsed_s:5.0f} s] requests {len(records)} (answers {counts['answer']}, refusals "
        f"{counts['refusal']}), errors {counts['error']}, empty {counts['empty']}, in flight {in_flight}"
    )


def drive(clients: list[Any], plan: Plan, tally: Tally) -> bool:
    """Run the client threads to the end with a running line; True when interrupted (Ctrl-C, SIGTERM)."""
    started = time.monotonic()
    threads = [
        threading.Thread(target=client_loop, args=(i, c, plan, tally), name=f"soak-{i}", daemon=True)
        for i, c in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    next_report = started + PROGRESS_EVERY_S
    try:
        while any(thread.is_alive() for thread in threads):
            time.sleep(0.5)
            if time.monotonic() >= next_report:
                print(progress_line(tally, time.monotonic() - started), flush=True)
                next_report += PROGRESS_EVERY_S
    except KeyboardInterrupt:
        plan.stop.set()
        print("interrupted: stopping the clients (requests in flight are not waited for)", flush=True)
        for thread in threads:
            thread.join(timeout=INTERRUPT_GRACE_S / len(threads))
        return True
    return False


def auth_from_env() -> tuple[str, str] | None:
    """The app's own login (RAG_UI_USER / RAG_UI_PASSWORD), when it asks for one."""
    user, password = os.environ.get("RAG_UI_USER"), os.environ.get("RAG_UI_PASSWORD")
    return (user, password) if user and password else None


def connect(url: str, count: int) -> list[Any]:
    try:
        from gradio_client import Client
    except ImportError as exc:
        raise SetupError(f"gradio_client is missing ({exc}): install the dev extras") from None
    clients = []
    for _ in range(count):
        try:
            clients.append(
                Client(
                    url, verbose=False, auth=auth_from_env(), download_files=False, analytics_enabled=False
                )
            )
        except Exception as exc:
            raise SetupError(f"cannot connect to {url}: {error_line(exc, 0)}") from None
    return clients


# --------------------------------------------------------------------------- the app under test


@dataclass
class AppSpec:
    data_dir: Path
    collection: str | None
    docs: Path | None = None
    excludes: list[str] = field(default_factory=list)


@dataclass
class Target:
    url: str
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    spec: AppSpec | None = None

    def exit_code(self) -> int | None:
        """The launched app's exit code if it has died already; None while it runs (or when not launched)."""
        return self.process.poll() if self.process is not None else None


def check_loopback(url: str) -> None:
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if parsed.scheme not in ("http", "https") or not host:
        raise SetupError(f"--url {url!r} is not an http(s) URL")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host.lower() in LOOPBACK_NAMES
    if not loopback:
        raise SetupError(
            f"--url {url!r} is not a loopback address: the soak only targets an app on this machine "
            "(127.0.0.1, ::1 or localhost)"
        )


def app_env(spec: AppSpec) -> dict[str, str]:
    env = dict(os.environ, RAG_DATA_DIR=str(spec.data_dir.resolve()))
    if spec.collection:
        env["RAG_COLLECTION"] = spec.collection
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def ingest(spec: AppSpec, env: dict[str, str]) -> None:
    assert spec.docs is not None
    if not spec.docs.is_dir():
        raise SetupError(f"--docs {spec.docs} is not a folder")
    command = [RAG_BIN, "ingest", str(spec.docs), "--no-progress"]
    command += [arg for pattern in spec.excludes for arg in ("--exclude", pattern)]
    print(f"ingesting {spec.docs} into {spec.data_dir} ...", flush=True)
    code = subprocess.run(command, env=env).returncode
    if code == 1:
        print("ingest: some files failed (see above); soaking with the rest", flush=True)
    elif code != 0:
        raise SetupError(f"rag ingest {spec.docs} failed with exit code {code}")


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    started = time.monotonic()
    while time.monotonic() < started + STARTUP_TIMEOUT_S:
        if process.poll() is not None:
            raise SetupError(
                f"rag ui exited with code {process.returncode}; {log} ends with:\n{log_tail(log)}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            print(f"app is up after {time.monotonic() - started:.1f} s", flush=True)
            return
        time.sleep(0.5)
    raise SetupError(f"rag ui did not open port {port} within {STARTUP_TIMEOUT_S:.0f} s; see {log}")


def stop_app(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM: rag exits through Python, so the embedded LLM server stops too
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def launched_app(spec: AppSpec, log: Path) -> Iterator[Target]:
    """`rag ui` on a free loopback port, ingesting spec.docs first; stopped on the way out, whatever happens."""
    env = app_env(spec)
    if spec.docs is not None:
        ingest(spec, env)
    port = free_port()
    print(f"launching rag ui on 127.0.0.1:{port} (log: {log}) ...", flush=True)
    with log.open("wb") as out:
        command = [RAG_BIN, "ui", "--host", "127.0.0.1", "--port", str(port)]
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(process, port, log)
            yield Target(f"http://127.0.0.1:{port}/", process, log, spec)
        finally:
            stop_app(process)


# --------------------------------------------------------------------------- inputs


def read_qa(path: Path) -> list[QAItem]:
    try:
        items = load_qa(path)
    except (QAFormatError, OSError) as exc:
        raise SetupError(f"cannot read the QA file: {exc}") from None
    if not items:
        raise SetupError(f"{path} holds no questions")
    return items


def demo_inputs(tmp: Path) -> tuple[list[QAItem], AppSpec]:
    """The Debian FAQ's chapters and QA set (as evals.datasets builds it), into a fresh data dir."""
    from evals.datasets import debian_faq, unanswerable_items
    from evals.fetch_corpora import fetch

    print("demo: fetching the Debian FAQ (apt-get download debian-faq, cached in corpora/) ...", flush=True)
    try:
        root = fetch("debian-faq")
    except (RuntimeError, subprocess.CalledProcessError, OSError, StopIteration) as exc:
        raise SetupError(f"fetching the Debian FAQ failed: {exc}") from None
    items = debian_faq(root) + unanswerable_items()
    print(f"demo: {len(items)} questions from {root}", flush=True)
    # The FAQ also ships as one .txt and one .pdf of the same text: ingest the HTML chapters once (as demo.sh).
    return items, AppSpec(tmp / "data", "debian-faq", root, ["*.txt", "*.pdf"])


def prepare(
    args: argparse.Namespace, stack: contextlib.ExitStack, out_dir: Path
) -> tuple[list[QAItem], Target]:
    """The questions and the app to soak, launched when needed (the stack stops it)."""
    if args.url:
        check_loopback(args.url)
        return read_qa(args.qa), Target(args.url)
    if args.demo:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak_")))
        questions, spec = demo_inputs(tmp)
        questions = read_qa(args.qa) if args.qa else questions
    else:
        questions, spec = read_qa(args.qa), AppSpec(args.data_dir, args.collection, args.docs)
    return questions, stack.enter_context(launched_app(spec, out_dir / "ui.log"))


# --------------------------------------------------------------------------- summary


def latencies(records: list[Record]) -> dict[str, dict[str, float | int | None]]:
    done = [r for r in records if r.outcome != "error"]
    answers = [r for r in done if r.outcome == "answer"]
    return {
        "first_token_ms": summarize([r.first_token_ms for r in done if r.first_token_ms is not None]),
        "server_total_ms": summarize([r.total_ms for r in done if r.total_ms is not None]),
        "server_total_ms_answers": summarize([r.total_ms for r in answers if r.total_ms is not None]),
        "client_wall_ms": summarize([r.wall_ms for r in done]),
        "client_wall_ms_answers": summarize([r.wall_ms for r in answers]),
    }


def build_summary(records: list[Record], meta: dict[str, Any]) -> dict[str, Any]:
    counts = Counter(r.outcome for r in records)
    errors = Counter(r.error or "" for r in records if r.outcome == "error")
    passed = bool(records) and counts["error"] == 0 and counts["empty"] == 0
    return {
        **meta,
        "requests": len(records),
        "answers": counts["answer"],
        "refusals": counts["refusal"],
        "errors": counts["error"],
        "empty_answers": counts["empty"],
        "per_client": [sum(r.client == i for r in records) for i in range(meta["clients"])],
        "latency": latencies(records),
        "error_messages": [{"message": m, "count": n} for m, n in errors.most_common()],
        "empty_answer_questions": [
            {"id": q, "count": n}
            for q, n in Counter(r.question_id for r in records if r.outcome == "empty").items()
        ],
        "target": TARGET,
        "pass": passed,
    }


def _fmt(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.0f}"


LATENCY_LABELS = {
    "first_token_ms": "first token (server)",
    "server_total_ms": "total (server)",
    "server_total_ms_answers": "total (server, answers)",
    "client_wall_ms": "client wall",
    "client_wall_ms_answers": "client wall (answers)",
}


def render(summary: dict[str, Any]) -> str:
    lines = [
        f"soak summary: {summary['clients']} clients, {summary['elapsed_s']:.0f} s against {summary['url']}"
        + (" (interrupted)" if summary["interrupted"] else ""),
        f"requests {summary['requests']}: answers {summary['answers']}, refusals {summary['refusals']}, "
        f"errors {summary['errors']}, empty answers {summary['empty_answers']}  (per client {summary['per_client']})",
        "",
        f"{'latency ms':<26}{'n':>6}{'p50':>9}{'p95':>9}",
    ]
    for key, label in LATENCY_LABELS.items():
        stats = summary["latency"][key]
        lines.append(f"{label:<26}{stats['n']:>6}{_fmt(stats['p50']):>9}{_fmt(stats['p95']):>9}")
    if summary["error_messages"]:
        lines += ["", "errors:"] + [f"  {e['count']:>5} x {e['message']}" for e in summary["error_messages"]]
    if summary["empty_answer_questions"]:
        empties = ", ".join(f"{e['id']} ({e['count']}x)" for e in summary["empty_answer_questions"])
        lines += ["", f"empty answers to: {empties}"]
    if summary.get("app_exit_code") is not None:
        lines += ["", f"the launched app died during the soak (exit code {summary['app_exit_code']})"]
    verdict = "PASS" if summary["pass"] else "FAIL"
    got = f"{summary['errors']} errors, {summary['empty_answers']} empty answers in {summary['requests']} requests"
    return "\n".join([*lines, "", f"{verdict}: {got} (target: {TARGET})"])


def run_meta(args: argparse.Namespace, target: Target, questions: list[QAItem]) -> dict[str, Any]:
    spec = target.spec
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "url": target.url,
        "launched": target.process is not None,
        "data_dir": str(spec.data_dir) if spec and not args.demo else None,
        "collection": spec.collection if spec else None,
        "docs": str(spec.docs) if spec and spec.docs else None,
        "qa": str(args.qa) if args.qa else ("debian-faq (demo)" if args.demo else None),
        "questions": len(questions),
        "clients": args.clients,
        "mode": args.mode,
        "minutes": args.minutes,
        "timeout_s": args.timeout_s,
        "max_requests": args.max_requests,
    }


def write_outputs(summary: dict[str, Any], records: list[Record], out: Path) -> None:
    out.write_text(json.dumps(summary, indent=2) + "\n")
    with (out.parent / "requests.jsonl").open("w") as lines:
        for record in records:
            lines.write(json.dumps(asdict(record)) + "\n")
    print(f"summary: {out}; requests: {out.parent / 'requests.jsonl'}", flush=True)


# --------------------------------------------------------------------------- driver


def soak(args: argparse.Namespace) -> int:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        questions, target = prepare(args, stack, args.out.parent)
        clients = connect(target.url, args.clients)
        print(f"soaking {target.url}: {args.clients} clients, {len(questions)} questions", flush=True)
        started = time.monotonic()
        plan = Plan(questions, args.clients, started + args.minutes * 60, args.timeout_s, args.mode)
        tally = Tally(args.max_requests)
        interrupted = drive(clients, plan, tally)
        records, _ = tally.snapshot()
        meta = run_meta(args, target, questions) | {
            "elapsed_s": time.monotonic() - started,
            "interrupted": interrupted,
            "hit_request_cap": tally.capped,
            "app_exit_code": target.exit_code(),
        }
        summary = build_summary(records, meta)
        print("\n" + render(summary), flush=True)
        write_outputs(summary, records, args.out)
    return 130 if interrupted else 0 if summary["pass"] else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description="Soak test of the chat app through its /chat API."
    )
    parser.add_argument(
        "--url", help="a running app on this machine (loopback only), e.g. http://127.0.0.1:7860/"
    )
    parser.add_argument("--data-dir", type=Path, help="launch `rag ui` on this data dir (RAG_DATA_DIR)")
    parser.add_argument("--collection", help="with --data-dir: the collection (RAG_COLLECTION)")
    parser.add_argument("--docs", type=Path, help="with --data-dir: `rag ingest` this folder first")
    parser.add_argument(
        "--demo", action="store_true", help="the Debian FAQ and its QA set, in a temp data dir"
    )
    parser.add_argument(
        "--qa", type=Path, help="QA file (JSON lines, as for rag eval) whose questions to ask"
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent client sessions (default 4)")
    parser.add_argument(
        "--mode",
        choices=("generate", "evidence", "both"),
        default="generate",
        help="answer mode asked for (default generate: the embedded LLM under load)",
    )
    parser.add_argument("--minutes", type=float, default=5.0, help="time budget (default 5)")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per-request limit (default 300)")
    parser.add_argument("--max-requests", type=int, default=10_000, help="request cap (default 10000)")
    parser.add_argument("--out", type=Path, default=Path("soak-out/summary.json"), help="summary JSON")
    args = parser.parse_args(argv)
    if args.url and (args.data_dir or args.docs or args.demo or args.collection):
        parser.error("--url targets a running app: drop --data-dir, --collection, --docs and --demo")
    if args.demo and (args.data_dir or args.docs or args.collection):
        parser.error("--demo makes its own data dir: drop --data-dir, --collection and --docs")
    if not (args.url or args.demo or args.data_dir):
        parser.error("give --url URL, --data-dir DIR [--collection NAME] [--docs FOLDER], or --demo")
    if not (args.qa or args.demo):
        parser.error("--qa QA_FILE is required (or --demo, which brings the Debian FAQ's questions)")
    if args.clients < 1 or args.minutes <= 0 or args.timeout_s <= 0 or args.max_requests < 1:
        parser.error("--clients and --max-requests must be >= 1, --minutes and --timeout-s > 0")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the soak like Ctrl-C: the launched app is stopped on the way out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"soak: {args.clients} clients for {args.minutes:g} min, request timeout {args.timeout_s:g} s, "
        f"at most {args.max_requests} requests",
        flush=True,
    )
    try:
        return soak(args)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted during setup", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
