"""Conversations on the demo collection (the Debian FAQ, from Debian's package), asked of the launched `rag serve`
with default settings: through the API with the history, and in the chat UI in a browser, turn after turn.

These are the sequences that failed before conversations searched each turn on its own words: a new topic got the
first answer again, and an off-topic turn after an answered one was answered.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from evals.fetch_corpora import debian_faq_dir
from tests.conftest import ARTIFACTS, RAG_BIN, cli_env, launched, needs_chromium

pytestmark = pytest.mark.slow  # the Debian FAQ fetched and ingested, a real server and browser

RELEASE_SECTION = "What is the latest version of Debian?"
APT_CHAPTER = "pkgtools.en.html"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("data")
    env = cli_env(data) | {"RAG_COLLECTION": "debian-faq"}
    corpus = debian_faq_dir()
    ingest = [RAG_BIN, "ingest", str(corpus), "--exclude", "*.txt", "--exclude", "*.pdf", "--no-progress"]
    subprocess.run(ingest, env=env, check=True, timeout=600)
    with launched("serve", data, env, timeout_s=180) as (port, _):
        yield f"http://127.0.0.1:{port}"


def _conversation(url: str, questions: list[str]) -> list[dict[str, Any]]:
    """Each question asked with the conversation so far, as a chat client sends it; each reply's rag field."""
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)
    messages: list[dict[str, str]] = []
    replies = []
    for question in questions:
        messages.append({"role": "user", "content": question})
        response = client.chat.completions.create(model="debian-faq", messages=messages)  # type: ignore[arg-type]
        messages.append({"role": "assistant", "content": response.choices[0].message.content or ""})
        replies.append((response.model_extra or {})["rag"])
    return replies


def _titles(rag: dict[str, Any]) -> list[str]:
    return [f"{s['source']} {s['title']}" for s in rag["sources"]]


def test_a_new_topic_is_answered_from_its_own_chapter(url: str) -> None:
    first, second = _conversation(
        url, ["What is the latest stable release of Debian?", "How do I install a package with apt?"]
    )
    assert RELEASE_SECTION in _titles(first)[0]
    assert second["standalone_question"] == "How do I install a package with apt?"
    assert second["sources"] and all(RELEASE_SECTION not in t for t in _titles(second)), _titles(second)
    assert second["sources"][0]["source"] == APT_CHAPTER, _titles(second)


def test_an_off_topic_turn_after_an_answer_is_refused(url: str) -> None:
    first, second = _conversation(url, ["What is a virtual package?", "Who won the 1998 FIFA World Cup?"])
    assert not first["refused"] and "Virtual Package" in _titles(first)[0]
    assert second["refused"] and second["sources"] == []


def test_a_follow_up_is_searched_with_its_topic_and_says_so(url: str) -> None:
    _, follow_up, off_topic = _conversation(
        url,
        ["How do I install a package with apt?", "And how do I remove it again?", "And who won it in 1998?"],
    )
    assert follow_up["history_used"] and follow_up["standalone_question"].startswith("And how do I remove it")
    assert "apt" in follow_up["standalone_question"] and not follow_up["refused"]
    assert any("remove" in s["text"] for s in follow_up["sources"]), _titles(follow_up)
    assert off_topic["refused"], off_topic["standalone_question"]  # its own words decide, not the topic's


# ---------------------------------------------------------------------------------------------------- browser


def _ask(page: Any, question: str, turn: int) -> tuple[str, str]:
    """Ask in the chat box; the last reply's text and the sources panel once that reply is complete."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.locator("#question textarea").fill(question)
    page.locator("#ask").click()
    try:
        page.wait_for_function(
            "([n, q]) => { const s = document.querySelector('#sources');"
            " const m = document.querySelectorAll('#chatbot .message');"
            " const last = m.length ? m[m.length - 1].innerText.trim() : '';"
            " return m.length >= 2 * n && last !== '' && last !== q"
            " && s.innerText.trim() !== '' && !s.querySelector('.pending'); }",
            arg=[turn, question],
            timeout=240_000,
        )
    except PlaywrightTimeout:
        messages = page.locator("#chatbot .message").all_inner_texts()
        box = page.locator("#question textarea").input_value()
        raise AssertionError(
            f"turn {turn} unanswered: box {box!r}, sources {page.locator('#sources').inner_text()!r}, "
            f"messages {[m[:80] for m in messages]}"
        ) from None
    return page.locator("#chatbot .message").last.inner_text(), page.locator("#sources").inner_text()


@needs_chromium
def test_a_conversation_in_the_browser_changes_topic_follows_up_and_refuses(url: str, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url + "/")
    _, sources = _ask(page, "What is the latest stable release of Debian?", 1)
    assert RELEASE_SECTION in sources
    reply, sources = _ask(page, "How do I install a package with apt?", 2)
    assert RELEASE_SECTION not in sources and APT_CHAPTER in sources, sources
    assert "searched for" not in reply  # it stood alone: searched as asked
    reply, sources = _ask(page, "And how do I remove it again?", 3)
    # searched with the topic's words; since hybrid fuses scores it quotes dpkg's removal lines of the same chapter
    assert "searched for: And how do I remove it again?" in reply and "install package apt" in reply, reply
    assert ("apt remove" in reply or "dpkg --remove" in reply) and APT_CHAPTER in sources, (reply, sources)
    reply, sources = _ask(page, "Who won the 1998 FIFA World Cup?", 4)
    page.screenshot(path=str(ARTIFACTS / "ui-conversation.png"), full_page=True)
    page.close()
    assert "do not contain the answer" in reply and "No source" in sources, (reply, sources)
