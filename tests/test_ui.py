"""The Gradio app launched for real: gradio_client calls, concurrent sessions, and a headless Chromium session."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS, RAG_BIN, cli_env, launched, needs_chromium
from tests.docs_factory import make_corpus

pytestmark = pytest.mark.slow  # real servers and the embedded llama.cpp model


@dataclass
class App:
    url: str
    pid: int
    data: Path


@contextmanager
def _launched(tmp_path_factory: pytest.TempPathFactory, **env: str) -> Iterator[App]:
    """`rag ui` on a free port over a fresh collection "test" made from the test corpus."""
    data = tmp_path_factory.mktemp("data")
    corpus = make_corpus(tmp_path_factory.mktemp("corpus"))
    full_env = cli_env(data) | {"RAG_COLLECTION": "test"} | env
    subprocess.run([RAG_BIN, "ingest", str(corpus), "--no-progress"], env=full_env, check=True, timeout=300)
    with launched("ui", data, full_env, timeout_s=180) as (port, process):
        yield App(f"http://127.0.0.1:{port}/", process.pid, data)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    # The generated answer is the path that needs the embedded LLM server: what these tests hold up.
    with _launched(tmp_path_factory, RAG_ANSWER_MODE="generate") as launched:
        yield launched


@pytest.fixture(scope="module")
def app_url(app: App) -> str:
    return app.url


def _threads(pid: int) -> set[int]:
    return {int(tid) for tid in os.listdir(f"/proc/{pid}/task")}


def _llm_server_pid(app_pid: int) -> int:
    """The embedded llama.cpp server: the app's child running rag.llm_child."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat[1]) == app_pid and "rag.llm_child" in cmdline and stat[0] != "Z":
            return int(entry.name)
    raise AssertionError("the app runs no embedded LLM server")


def _answered(result: dict) -> bool:
    """A real answer or a refusal: never an empty success."""
    return bool(result["refused"] or result["answer"].strip())


def test_chat_api_answers_with_sources(app_url: str) -> None:
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    result = client.predict("What do alpacas eat?", api_name="/chat")
    assert not result["refused"] and result["answer"]
    assert result["sources"] == [] or {"n", "source", "page", "score", "text"} <= set(result["sources"][0])
    refused = client.predict("Who painted the Mona Lisa?", api_name="/chat")
    assert refused["refused"] and refused["sources"] == []
    quoted = client.predict("What do alpacas eat?", mode="evidence", api_name="/chat")
    assert "Alpacas eat grass and hay. [1]" in quoted["answer"]
    assert [(s["source"], s["cited_by"]) for s in quoted["sources"]] == [("guide.md", "quoted")]


def test_answers_again_after_the_worker_threads_turned_over(app: App) -> None:
    """Gradio's worker threads idle out after ~10 s; the embedded LLM must not go with the one that started it."""
    from gradio_client import Client

    client = Client(app.url, verbose=False)
    first = client.predict("What do alpacas eat?", api_name="/chat")
    assert _answered(first) and not first["refused"], first
    server = _llm_server_pid(app.pid)
    _turn_workers_over(app)
    second = client.predict("What do alpacas eat?", api_name="/chat")
    assert _answered(second) and not second["refused"], second
    assert second["timings"]["first_token_ms"] > 0
    assert _llm_server_pid(app.pid) == server, "the LLM server died with a worker thread and was restarted"


def _turn_workers_over(app: App) -> None:
    """Wait until the worker threads that served earlier requests are gone (or 45 s).

    anyio prunes a worker idle for 10 s when a later call comes in, and reuses the most recently idle one:
    bursts of concurrent calls after each idle period make every old worker either busy or pruned.
    """
    from gradio_client import Client

    old = _threads(app.pid)
    deadline = time.monotonic() + 45
    while old & _threads(app.pid) - {app.pid} and time.monotonic() < deadline:
        time.sleep(10.5)
        burst = [
            threading.Thread(
                target=lambda: Client(app.url, verbose=False).predict("test", api_name="/documents")
            )
            for _ in range(3)
        ]
        for t in burst:
            t.start()
        for t in burst:
            t.join()
    time.sleep(2)  # a server killed with its thread needs a moment to go


QUESTIONS = [
    "What do alpacas eat?",
    "What is the largest living rodent?",
    "Can ostriches fly?",
    "Who painted the Mona Lisa?",
]


def _ask_concurrently(url: str, clients: int, rounds: int) -> tuple[list[dict], list[str]]:
    from gradio_client import Client

    results: list[dict] = []
    errors: list[str] = []

    def ask(i: int) -> None:
        client = Client(url, verbose=False)
        for r in range(rounds):
            question = QUESTIONS[(i + r) % len(QUESTIONS)]
            try:
                results.append(client.predict(question, api_name="/chat"))
            except Exception as exc:
                errors.append(f"{question}: {exc}")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return results, errors


def test_concurrent_clients_all_get_answers_even_after_the_llm_server_is_killed(app: App) -> None:
    results, errors = _ask_concurrently(app.url, clients=4, rounds=3)
    assert not errors and len(results) == 12
    empty = [r for r in results if not _answered(r)]
    assert not empty, f"{len(empty)} of 12 came back empty: {empty[0]}"
    assert any(not r["refused"] for r in results)
    for r in results:  # each answer belongs to its own question
        assert r["question"] in QUESTIONS and r["refused"] == (r["question"] == "Who painted the Mona Lisa?")

    os.kill(_llm_server_pid(app.pid), signal.SIGKILL)
    results, errors = _ask_concurrently(app.url, clients=2, rounds=1)
    assert not errors and len(results) == 2 and all(_answered(r) for r in results), results


def test_upload_then_answer_then_delete(app: App, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(app.url, verbose=False)
    doc = tmp_path / "quokka.md"
    doc.write_text("# Quokkas\n\nQuokkas live on Rottnest Island and are known for smiling.\n")
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zipped/numbat.md", "# Numbats\n\nNumbats eat termites, up to 20,000 a day.\n")
        z.writestr("../evil.md", "escape attempt")
    message, rows, _ = client.predict(
        [handle_file(str(doc)), handle_file(str(archive))], "test", api_name="/upload"
    )[:3]
    assert "added 2" in message, message
    # Gradio's copies were left in /tmp/gradio after the server stopped: now under the data folder (emptied when
    # the server stops), and the named copies removed once saved
    received = app.data / ".incoming" / "ui"
    assert received.is_dir() and {"quokka.md", "more.zip"}.isdisjoint(p.name for p in received.rglob("*"))
    sources = {row[0] for row in rows["data"]} if isinstance(rows, dict) else {row[0] for row in rows}
    assert {"quokka.md", "more/zipped/numbat.md"} <= sources
    answer = client.predict("Where do quokkas live?", api_name="/chat")
    assert not answer["refused"]
    _, rows, picker = client.predict("test", api_name="/documents")[:3]
    choices = picker["choices"] if isinstance(picker, dict) else []
    doc_id = next(value for label, value in choices if label == "quokka.md")
    message, rows, _ = client.predict(doc_id, "test", api_name="/delete")
    assert message == "Deleted quokka.md."
    answer = client.predict("Where do quokkas live?", api_name="/chat")
    assert all(s["source"] != "quokka.md" for s in answer["sources"])


def test_with_the_llm_down_chat_says_why_and_documents_still_work(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """The probe got "upstream Gradio app has raised an exception" from /chat with the endpoint down."""
    from gradio_client import Client, handle_file

    down = {"RAG_ANSWER_MODE": "generate", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "RAG_LLM_MODEL": "m"}
    with _launched(tmp_path_factory, **down) as launched:
        client = Client(launched.url, verbose=False)
        with pytest.raises(Exception, match="cannot reach the LLM endpoint at 127.0.0.1:9") as caught:
            client.predict("What do alpacas eat?", api_name="/chat")
        assert "upstream" not in str(caught.value)
        doc = tmp_path / "quokka.md"
        doc.write_text("# Quokkas\n\nQuokkas live on Rottnest Island.\n")
        message, rows, _ = client.predict([handle_file(str(doc))], "test", api_name="/upload")[:3]
        assert "added 1" in message, message
        _, rows, picker = client.predict("test", api_name="/documents")[:3]
        doc_id = next(value for label, value in picker["choices"] if label == "quokka.md")
        message, _, _ = client.predict(doc_id, "test", api_name="/delete")
        assert message == "Deleted quokka.md."
        evidence = client.predict("What do alpacas eat?", mode="evidence", api_name="/chat")
        assert not evidence["refused"] and evidence["sources"]  # evidence answers need no LLM


def _ask_in_page(page: object, question: str) -> None:
    page.locator("#question textarea").fill(question)  # type: ignore[attr-defined]
    page.locator("#ask").click()  # type: ignore[attr-defined]


def _wait_for_answer(page: object) -> tuple[str, str]:
    """The reply bubble's text and the sources panel's, once the answer is complete."""
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => { const s = document.querySelector('#sources');"
        " return s.innerText.trim() !== '' && !s.querySelector('.pending'); }",
        timeout=240_000,
    )
    # The assistant's row (Gradio marks rows user-row / bot-row): `.message` nth(1) was the question's own bubble.
    answer = page.locator("#chatbot .bot-row").last.inner_text()  # type: ignore[attr-defined]
    return answer, page.locator("#sources").inner_text()  # type: ignore[attr-defined]


@needs_chromium
def test_browser_question_streams_answer_and_source(app_url: str, browser: object) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page.goto(app_url)
    _ask_in_page(page, "What do alpacas eat?")
    page.locator("#chatbot .user-row").get_by_text("What do alpacas eat?").wait_for(timeout=5_000)  # type: ignore[attr-defined]
    box = page.locator("#question textarea")  # type: ignore[attr-defined]
    box.fill("Where do vicunas live?")  # the next question, typed while the answer comes
    answer_text, sources_text = _wait_for_answer(page)
    page.wait_for_timeout(1500)  # past the answering event's end, which once emptied the box again
    typed = box.input_value()
    page.screenshot(path=str(ARTIFACTS / "ui-chat.png"), full_page=True)
    page.close()
    assert typed == "Where do vicunas live?"
    assert answer_text.strip() and "⚠️" not in answer_text
    # the reply, not the question's bubble; with the embedded model its words vary, its citations do not
    assert "What do alpacas eat?" not in answer_text and re.search(r"\[\d+\]", answer_text), answer_text
    assert "[1] guide.md" in sources_text  # the best passage, numbered as in the prompt
    numbers = [int(n) for n in re.findall(r"^\[(\d+)\]", sources_text, re.MULTILINE)]
    assert numbers == sorted(numbers) and numbers[0] == 1  # listed in the order of their [n]


@needs_chromium
def test_two_tabs_asking_at_once_both_get_full_answers(app_url: str, browser: object) -> None:
    pages = [browser.new_page() for _ in range(2)]  # type: ignore[attr-defined]
    for page in pages:
        page.goto(app_url)
    for page, question in zip(pages, ["What do alpacas eat?", "Where do vicunas live?"], strict=True):
        _ask_in_page(page, question)
    replies = [_wait_for_answer(page)[0] for page in pages]
    pages[1].screenshot(path=str(ARTIFACTS / "ui-second-tab.png"), full_page=True)
    for page in pages:
        page.close()
    assert all(r.strip() and "⚠️" not in r for r in replies), replies


@needs_chromium
def test_typing_a_collection_name_creates_nothing_until_asked(app: App, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(app.url)
    page.get_by_role("tab", name="Settings").click()
    box = page.locator("#new-collection textarea, #new-collection input").first
    box.click()
    page.keyboard.type("zq7", delay=300)
    page.wait_for_timeout(2000)
    collections = app.data / "collections"
    assert sorted(p.name for p in collections.iterdir()) == ["test"]
    page.locator("#create-collection").click()
    page.locator("#collection-message").get_by_text("Created collection 'zq7'").wait_for(timeout=120_000)
    page.close()
    assert sorted(p.name for p in collections.iterdir()) == ["test", "zq7"]


@needs_chromium
def test_deleting_a_document_asks_first(app: App, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(app.url)
    page.get_by_role("tab", name="Documents").click()
    page.locator("#documents-table").get_by_text("notes.txt").wait_for(timeout=60_000)
    page.locator("#document-pick input").click()
    page.get_by_role("option", name="notes.txt").click()
    page.locator("#delete").click()
    page.locator("#confirm-delete").get_by_text("cannot be undone").wait_for(timeout=30_000)
    page.locator("#cancel").click()
    page.locator("#confirm-delete").wait_for(state="hidden", timeout=30_000)
    page.close()
    from gradio_client import Client

    _, rows, _ = Client(app.url, verbose=False).predict("test", api_name="/documents")[:3]
    data = rows["data"] if isinstance(rows, dict) else rows
    assert "notes.txt" in {row[0] for row in data}  # cancelled: still there


@needs_chromium
def test_an_upload_shows_its_progress_and_the_chat_answers_meanwhile(
    app: App, browser: object, tmp_path: Path
) -> None:
    """Uploads ran inside the request: the tab waited with no progress of its own. Now a job: its bar shows, the
    chat (on another collection) answers while it still runs, and the summary comes when it ends. The upload goes
    to a new collection, so the shared one keeps the documents the other tests expect."""
    archive = tmp_path / "logbook.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(60):
            entries = " ".join(
                f"Entry {i}.{k}: the keeper trimmed lamp wick number {k} at dusk." for k in range(150)
            )
            z.writestr(f"day-{i:02d}.md", f"# Lighthouse day {i}\n\n{entries}\n")
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page.goto(app.url)
    page.get_by_role("tab", name="Settings").click()
    page.locator("#new-collection textarea, #new-collection input").first.fill("logbook")
    page.locator("#create-collection").click()
    page.locator("#collection-message").get_by_text("Created collection 'logbook'").wait_for(timeout=60_000)
    page.get_by_role("tab", name="Documents").click()
    page.locator("#uploads input[type=file]").set_input_files(str(archive))
    page.locator("#uploads").get_by_text("logbook.zip").wait_for(timeout=60_000)
    page.locator("#ingest").click()
    page.locator("#ingestion-jobs progress").wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "ui-ingesting.png"), full_page=True)
    page.get_by_role("tab", name="Settings").click()
    page.locator("#collection input").click()
    page.get_by_role("option", name="test", exact=True).click()
    page.get_by_role("tab", name="Chat").click()
    _ask_in_page(page, "What do alpacas eat?")
    answer, _ = _wait_for_answer(page)
    status = page.locator("#documents-status textarea")
    while_answered = status.input_value()
    page.wait_for_function(
        "() => document.querySelector('#documents-status textarea').value.includes('added 60')",
        timeout=300_000,
    )
    summary = status.input_value()
    page.close()
    assert answer.strip() and "⚠️" not in answer and re.search(r"\[\d+\]", answer), answer
    assert while_answered.startswith("running: files"), while_answered  # answered while the job ran
    assert "failed 0" in summary, summary


def test_train_reranker_from_the_ui_reports_what_it_did(app_url: str) -> None:
    """The Settings action trains in the app's process; this small corpus holds too few documents to test the model
    on documents it never saw, so it is (rightly) not installed, and the UI says why; there is nothing to
    uninstall."""
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    message, status = client.predict("test", 0.05, api_name="/train_reranker")
    assert "trained" in message and "questions from unseen documents" in message, message
    assert "not installed: too few questions about documents it never saw" in message
    assert "reranking is off" in status  # still no reranker for this collection
    message, status = client.predict("test", api_name="/uninstall_reranker")
    assert "has no installed reranker: nothing to uninstall" in message and "reranking is off" in status


def test_repeated_wrong_passwords_are_slowed_down(tmp_path_factory: pytest.TempPathFactory) -> None:
    """30 wrong passwords in 0.5 s were all answered at once: a password could be guessed at full speed."""
    import httpx

    login = {"RAG_UI_USER": "ann", "RAG_UI_PASSWORD": "right-horse-battery"}
    with _launched(tmp_path_factory, **login) as launched:
        url = launched.url + "login"
        codes = [
            httpx.post(  # a new X-Forwarded-For each try was a new address to the throttle: never slowed down
                url,
                data={"username": "ann", "password": f"guess{i}"},
                headers={"X-Forwarded-For": f"10.0.0.{i}"},
            ).status_code
            for i in range(8)
        ]
        assert codes == [400] * 5 + [429] * 3
        locked = httpx.post(url, data={"username": "ann", "password": "right-horse-battery"})
        assert locked.status_code == 429  # the right password waits too, or guessing would go on
        assert "failed logins" in locked.json()["detail"]
        time.sleep(int(locked.headers["Retry-After"]) + 0.5)
        assert httpx.post(url, data={"username": "ann", "password": "right-horse-battery"}).status_code == 200
        assert httpx.post(url, data={"username": "ann", "password": "wrong"}).status_code == 400  # reset


@needs_chromium
def test_with_only_an_api_key_the_browser_logs_in_with_it(
    tmp_path_factory: pytest.TempPathFactory, browser: object
) -> None:
    """RAG_API_KEY alone left the whole UI and Gradio's API open; now the login page (its scripts and styles
    reachable before logging in) takes the key as the password, and then the chat works."""
    with _launched(tmp_path_factory, RAG_API_KEY="sk-ui-key-123456") as launched:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(launched.url)
        page.get_by_label("username").fill("me")
        page.get_by_label("password").fill("sk-ui-key-123456")
        page.get_by_role("button", name="Login").click()
        page.get_by_role("tab", name="Documents").wait_for(timeout=60_000)
        _ask_in_page(page, "What do alpacas eat?")
        _wait_for_answer(page)
        conversation = page.locator("#chatbot").inner_text()
        page.close()
        from gradio_client import Client, handle_file

        refused = launched.data.parent / "refused.exe"
        refused.write_bytes(b"MZ")
        Client(launched.url, auth=("me", "sk-ui-key-123456"), verbose=False).predict(
            [handle_file(str(refused))], "test", api_name="/upload"
        )
        received = launched.data / ".incoming" / "ui"
        assert any(p.is_file() for p in received.rglob("*"))  # under the data folder, not /tmp/gradio
    assert "grass and hay" in conversation.lower(), conversation
    assert not received.exists()  # Gradio's received files, a refused upload's too, went with the server
