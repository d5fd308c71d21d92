"""The chat as a place to work, used the way people use it in the launched app: saved conversations (two tabs, a
thumbs-down with a note, a restart, the list after it, a conversation continued with its history, the terminal's
`rag chat --list/--resume`, rated answers turned into a QA file by `rag eval --from-feedback`) and searching
within chosen documents."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from evals.qa import load_qa
from tests.conftest import ARTIFACTS, RAG_BIN, cli_env, launched, needs_chromium
from tests.docs_factory import make_corpus

pytestmark = pytest.mark.slow  # the launched app, twice, and Chromium


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("data")
    corpus = make_corpus(tmp_path_factory.mktemp("corpus"))
    # evidence answers: the conversation's words steer the search of a follow-up, and no LLM is needed
    full = cli_env(data) | {"RAG_COLLECTION": "test", "RAG_ANSWER_MODE": "evidence"}
    subprocess.run([RAG_BIN, "ingest", str(corpus), "--no-progress"], env=full, check=True, timeout=300)
    return full


def _ask(page: Any, question: str) -> tuple[str, str]:
    """Ask in the chat box; the reply and the sources panel once the reply is complete and saved (the list shows
    its conversation selected)."""
    before = page.locator("#chatbot .message-row").count()
    page.locator("#question textarea").fill(question)
    page.locator("#ask").click()
    page.wait_for_function(
        "(n) => { const s = document.querySelector('#sources');"
        " return document.querySelectorAll('#chatbot .message-row').length >= n + 2"
        " && s.innerText.trim() !== '' && !s.querySelector('.pending')"
        " && document.querySelector('#conversations input:checked') !== null; }",
        arg=before,
        timeout=120_000,
    )
    return page.locator("#chatbot .bot-row").last.inner_text(), page.locator("#sources").inner_text()


def _wait_for_rows(page: Any, rows: int) -> None:
    """The chat shows this many messages (an opened conversation has loaded)."""
    page.wait_for_function(
        "(n) => document.querySelectorAll('#chatbot .message-row').length === n", arg=rows, timeout=30_000
    )


def _listed(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("#conversations label").all_inner_texts()]


def _selected(page: Any) -> str:
    return str(page.locator("#conversations label:has(input:checked)").inner_text().strip())


def _questions(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("#chatbot .user-row").all_inner_texts()]


@needs_chromium
def test_conversations_survive_a_restart_stay_apart_in_two_tabs_and_feed_back(
    env: dict[str, str], browser: Any
) -> None:
    data = Path(env["RAG_DATA_DIR"])
    with launched("ui", data, env, timeout_s=180) as (port, _):
        url = f"http://127.0.0.1:{port}/"
        first, second = browser.new_page(), browser.new_page()
        first.goto(url)
        second.goto(url)
        reply, sources = _ask(first, "Can ostriches fly?")
        assert "memo.docx" in sources and _selected(first) == "Can ostriches fly?"
        _ask(second, "Where do vicunas live?")
        assert _selected(second) == "Where do vicunas live?"
        assert _listed(second) == ["Where do vicunas live?", "Can ostriches fly?"]
        reply, _ = _ask(
            first, "Do they run fast?"
        )  # the first tab's follow-up stays in the first tab's conversation
        assert "searched for" in reply and "ostriches" in reply, reply
        assert _selected(first) == "Can ostriches fly?"
        first.locator("#feedback-note textarea").fill("it should say how fast")
        first.locator("#chatbot button[aria-label='Dislike']").last.click()
        first.locator("#conversations-note").get_by_text("noted as not helpful").wait_for(timeout=10_000)
        first.screenshot(path=str(ARTIFACTS / "ui-saved-conversations.png"), full_page=True)
        first.close()
        second.close()

    with launched("ui", data, env, timeout_s=180) as (port, _):  # a restart
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("#conversations label").first.wait_for(timeout=30_000)
        assert _listed(page) == ["Can ostriches fly?", "Where do vicunas live?"]  # newest first
        page.locator("#conversations label").get_by_text("Where do vicunas live?").click()
        _wait_for_rows(page, 2)
        assert _questions(page) == ["Where do vicunas live?"]  # the other tab's turns are not in it
        assert "manual.rst" in page.locator("#sources").inner_text()  # its sources, as they were
        page.locator("#conversations label").get_by_text("Can ostriches fly?").click()
        _wait_for_rows(page, 4)
        assert page.locator("#chatbot button[aria-label='Disliked']").count() == 1  # its thumb, as left
        reply, sources = _ask(
            page, "Where do they live?"
        )  # continued, with its history: still about ostriches
        assert "searched for" in reply and "ostriches" in reply, reply
        assert _questions(page) == ["Can ostriches fly?", "Do they run fast?", "Where do they live?"]
        page.locator("#conversation-tools").get_by_text("Rename or delete").click()
        page.locator("#conversation-name input").fill("Ostriches")
        page.locator("#rename-conversation").click()
        page.locator("#conversations label").get_by_text("Ostriches", exact=True).wait_for(timeout=10_000)
        page.locator("#conversations label").get_by_text("Where do vicunas live?").click()
        _wait_for_rows(page, 2)
        page.locator("#delete-conversation").click()
        page.locator("#confirm-delete-conversation-yes").click()
        page.wait_for_function(
            "() => document.querySelectorAll('#conversations label').length === 1"
            " && document.querySelectorAll('#chatbot .message-row').length === 0",
            timeout=10_000,
        )
        page.reload()  # renamed and deleted for good
        page.locator("#conversations label").first.wait_for(timeout=30_000)
        assert _listed(page) == ["Ostriches"]
        page.close()

    listed = subprocess.run([RAG_BIN, "chat", "--list"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()[1:]
    assert [r.split(None, 5)[-1] for r in rows] == ["Ostriches"], listed.stdout
    assert rows[0].split()[3] == "3"  # turns

    resumed = subprocess.run(
        [RAG_BIN, "chat", "--resume", rows[0].split()[0]],
        env=env,
        input="Can they swim?\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "continuing 'Ostriches', 3 turns" in resumed.stdout
    searched = resumed.stdout.split("(searched for: Can they swim?")[1].split(")")[0]
    assert "ostriches" in searched, resumed.stdout  # with its history's words

    evaluated = subprocess.run(
        [RAG_BIN, "eval", "--from-feedback", "--no-llm", "--out", str(data / "eval-out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "1 rated answers (0 👍, 1 👎" in evaluated.stderr
    exported = data / "eval-out" / "feedback-qa.jsonl"
    [item] = load_qa(exported)
    [record] = [json.loads(line) for line in exported.read_text().splitlines()]
    assert item.question == "Do they run fast?" and item.answerable and not item.sources
    assert record["note"] == "it should say how fast" and record["rating"] == -1 and record["needs_gold"]
    assert "ostriches" in record["searched_for"] and record["passages"][0]["source"] == "memo.docx"


@needs_chromium
def test_with_a_corrupt_conversation_database_the_chat_still_answers_and_says_why(
    tmp_path_factory: pytest.TempPathFactory, browser: Any
) -> None:
    data = tmp_path_factory.mktemp("corrupt")
    env = cli_env(data) | {"RAG_COLLECTION": "test", "RAG_ANSWER_MODE": "evidence"}
    corpus = make_corpus(tmp_path_factory.mktemp("corpus"))
    subprocess.run([RAG_BIN, "ingest", str(corpus), "--no-progress"], env=env, check=True, timeout=300)
    damaged = b"this is not a database " * 200
    (data / "app.db").write_bytes(damaged)
    with launched("ui", data, env, timeout_s=180) as (port, _):
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("#conversations-note").get_by_text("file is not a database").wait_for(timeout=30_000)
        page.locator("#question textarea").fill("Can ostriches fly?")
        page.locator("#ask").click()
        page.wait_for_function(
            "() => { const s = document.querySelector('#sources');"
            " return s.innerText.includes('memo.docx') && !s.querySelector('.pending'); }",
            timeout=120_000,
        )
        note = page.locator("#conversations-note").inner_text()
        reply = page.locator("#chatbot .bot-row").last.inner_text()
        page.close()
    assert "Ostriches cannot fly" in reply, reply
    assert note.count("\n") == 0 and "the chat still works, unsaved" in note, note
    assert (data / "app.db").read_bytes() == damaged  # not overwritten: its owner decides


@needs_chromium
def test_searching_within_one_document_changes_the_sources(env: dict[str, str], browser: Any) -> None:
    with launched("ui", Path(env["RAG_DATA_DIR"]), env, timeout_s=180) as (port, _):
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(f"http://127.0.0.1:{port}/")
        _, everywhere = _ask(page, "Which animals are found in the Andes?")
        page.locator("#new-chat").click()
        page.locator("#search-within").get_by_text("Search within").click()
        page.locator("#filter-documents input").click()
        page.get_by_role("option", name="manual.rst").click()
        page.keyboard.press("Escape")
        reply, within = _ask(page, "Which animals are found in the Andes?")
        page.wait_for_timeout(1000)  # the list's pending shade gone, for the screenshot
        page.screenshot(path=str(ARTIFACTS / "ui-search-within.png"), full_page=True)
        page.close()
    quoted = [line for line in everywhere.splitlines() if "✓" in line]
    assert len(quoted) == 1 and "report.pdf" in quoted[0], everywhere  # the whole collection: the condor page
    assert "Searched only within documents manual.rst" in within, within
    assert "manual.rst" in within and "report.pdf" not in within, within
    assert "Vicunas live in the high Andes" in reply, reply


def _yellow_pixels(png: bytes) -> int:
    """Pixels of the highlight's shade (amber over white paper), not of black text or white paper."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(1 for r, g, b in image.get_flattened_data() if r > 235 and 180 < g < 245 and b < 200)


@needs_chromium
def test_a_citation_opens_its_passage_in_the_document_beside_the_chat(
    env: dict[str, str], browser: Any
) -> None:
    with launched("ui", Path(env["RAG_DATA_DIR"]), env, timeout_s=180) as (port, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"http://127.0.0.1:{port}/")
        reply, _ = _ask(page, "Which bird lives in the Andes?")
        assert "Page two talks about the Andes condor." in reply, reply
        page.locator("#chatbot a.cite").first.click()
        viewer = page.frame_locator("#viewer iframe")
        viewer.locator("mark.quote").wait_for(timeout=30_000)
        quoted = viewer.locator("mark.quote").inner_text()
        header = viewer.locator("header").inner_text()
        picture = viewer.locator("img.page")
        picture.wait_for(timeout=30_000)
        page.wait_for_function(
            "() => { const f = document.querySelector('#viewer iframe').contentDocument;"
            " const i = f && f.querySelector('img.page'); return i && i.complete && i.naturalWidth > 0; }",
            timeout=30_000,
        )
        page.screenshot(path=str(ARTIFACTS / "ui-citation-viewer.png"), full_page=True)
        frame_url = page.frame_locator("#viewer iframe").locator("body").evaluate("() => location.href")
        png = page.request.get(picture.evaluate("(i) => i.src")).body()
        original = page.request.get(viewer.locator("header a").evaluate("(a) => a.href")).body()
        pages_open = len(page.context.pages)
        page.close()
    assert pages_open == 1  # the viewer beside the chat, not a new tab
    assert quoted == "Page two talks about the Andes condor."
    assert header.startswith("report.pdf") and "page 2" in header and "Download report.pdf" in header
    assert "/view/test/" in frame_url
    assert _yellow_pixels(png) > 500  # the quoted line is highlighted on the rendered page
    assert original[:5] == b"%PDF-"  # the original file, for download


def _log_in(browser: Any, url: str, name: str, password: str) -> Any:
    """A browser of its own (its own cookies) logged in as name."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()
    page.locator("#question textarea").wait_for(timeout=60_000)
    return page


@needs_chromium
def test_two_logins_at_once_keep_their_conversations_apart(env: dict[str, str], browser: Any) -> None:
    key = "sk-workspace-key-123456"
    data = Path(env["RAG_DATA_DIR"])
    with launched("ui", data, env | {"RAG_API_KEY": key}, timeout_s=180) as (port, _):
        url = f"http://127.0.0.1:{port}/"
        ana, ben = _log_in(browser, url, "ana", key), _log_in(browser, url, "ben", key)
        _ask(ana, "What is the largest living rodent?")
        _ask(ben, "What do llamas need every day?")
        ana.reload()
        ben.reload()
        for page in (ana, ben):
            page.locator("#conversations label").first.wait_for(timeout=30_000)
        seen = {"ana": _listed(ana), "ben": _listed(ben)}
        for page in (ana, ben):
            page.context.close()
    assert seen == {
        "ana": ["What is the largest living rodent?"],
        "ben": ["What do llamas need every day?"],
    }, seen
    listed = subprocess.run([RAG_BIN, "chat", "--list"], env=env, capture_output=True, text=True, timeout=120)
    assert "rodent" not in listed.stdout and "llamas" not in listed.stdout  # nor the terminal's (no login)
