"""The Gradio app launched for real: gradio_client calls, concurrent sessions, and a headless Chromium session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RAG_BIN, REPO, cli_env
from tests.docs_factory import make_corpus

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("data")
    corpus = make_corpus(tmp_path_factory.mktemp("corpus"))
    env = cli_env(data) | {"RAG_COLLECTION": "test"}
    subprocess.run([RAG_BIN, "ingest", str(corpus), "--no-progress"], env=env, check=True, timeout=300)
    port = _free_port()
    log = (data / "ui.log").open("w")
    process = subprocess.Popen(
        [RAG_BIN, "ui", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            assert process.poll() is None, (data / "ui.log").read_text()
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


def test_chat_api_answers_with_sources(app_url: str) -> None:
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    result = client.predict("What do alpacas eat?", api_name="/chat")
    assert not result["refused"] and result["answer"]
    assert result["sources"] == [] or {"n", "source", "page", "score", "text"} <= set(result["sources"][0])
    refused = client.predict("Who painted the Mona Lisa?", api_name="/chat")
    assert refused["refused"] and refused["sources"] == []


def test_concurrent_sessions_get_their_own_answers(app_url: str) -> None:
    from gradio_client import Client

    questions = {"alpaca": "What do alpacas eat?", "capybara": "What is the largest living rodent?"}
    results: dict[str, dict] = {}

    def ask(key: str) -> None:
        results[key] = Client(app_url, verbose=False).predict(questions[key], api_name="/chat")

    threads = [threading.Thread(target=ask, args=(k,)) for k in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert results["alpaca"]["question"] == questions["alpaca"]
    assert results["capybara"]["question"] == questions["capybara"]


def test_upload_then_answer_then_delete(app_url: str, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    doc = tmp_path / "quokka.md"
    doc.write_text("# Quokkas\n\nQuokkas live on Rottnest Island and are known for smiling.\n")
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zipped/numbat.md", "# Numbats\n\nNumbats eat termites, up to 20,000 a day.\n")
        z.writestr("../evil.md", "escape attempt")
    message, rows, _ = client.predict(
        [handle_file(str(doc)), handle_file(str(archive))], "test", api_name="/upload"
    )
    assert "added 2" in message, message
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


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
def test_browser_question_streams_answer_and_source(app_url: str) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app_url)
        page.locator("#question textarea").fill("What do alpacas eat?")
        page.locator("#ask").click()
        page.locator("#chatbot .message").nth(1).wait_for(timeout=120_000)
        page.locator("#sources details.source").first.wait_for(timeout=180_000)
        page.wait_for_function(
            "() => !document.querySelector('#sources').innerText.includes('Searching')", timeout=180_000
        )
        page.screenshot(path=str(ARTIFACTS / "ui-chat.png"), full_page=True)
        answer_text = page.locator("#chatbot .message").nth(1).inner_text()
        sources_text = page.locator("#sources").inner_text()
        browser.close()
    assert answer_text.strip()
    assert "[1] guide.md" in sources_text  # the best passage, numbered as in the prompt
    shutil.copy(ARTIFACTS / "ui-chat.png", ARTIFACTS / "ui-chat-last.png")
