"""Users and permissions, the way a team uses them: accounts made with `rag users`, then `rag serve` launched for
real and driven by the openai client, httpx and Chromium. Two users with different grants see only their own
collections (models, answers, sources, documents, the viewer, conversations); a reader cannot upload or delete, an
editor can; a revoked key is refused at once; wrong passwords are throttled per user and per address; every route
and every UI action has a role, and the README's table says which."""

from __future__ import annotations

import html
import inspect
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import httpx
import openai
import pytest

from rag.config import Settings
from rag.errors import RagError
from service.accounts import Accounts, Role
from service.appdb import MIGRATIONS, AppDatabase
from service.conversations import ConversationStore
from service.route_roles import ROUTE_ROLES
from tests.conftest import RAG_BIN, REPO, cli_env, launched, needs_chromium
from tests.docs_factory import make_corpus

pytestmark = pytest.mark.slow  # the launched server, Chromium

SCRIPT_KEY = "sk-team-script-key-123456"
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22", "carol": "carol-password-333"}


def rag_users(env: dict[str, str], *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [RAG_BIN, "users", *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@dataclass
class Team:
    url: str
    env: dict[str, str]
    keys: dict[str, str]

    def client(self, who: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.keys[who], max_retries=0)

    def http(self, who: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[who]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """Collection zoo (animals) and garage (tools); alice reads zoo, bob edits garage, carol has no role; each has
    a key; RAG_API_KEY is the scripts' admin key."""
    data = tmp_path_factory.mktemp("data")
    env = cli_env(data) | {"RAG_ANSWER_MODE": "evidence", "RAG_API_KEY": SCRIPT_KEY}
    zoo = make_corpus(tmp_path_factory.mktemp("zoo"))
    garage = tmp_path_factory.mktemp("garage")
    (garage / "wrench.md").write_text("# Torque wrench\n\nA torque wrench tightens a bolt to a set torque.\n")
    (garage / "drill.md").write_text("# Drills\n\nA hammer drill bores holes in concrete walls.\n")
    for name, folder in (("zoo", zoo), ("garage", garage)):
        ingest = [RAG_BIN, "ingest", str(folder), "--collection", name, "--no-progress"]
        subprocess.run(ingest, env=env, check=True, timeout=300)
    for name, password in PASSWORDS.items():
        rag_users(env, "add", name, stdin=password + "\n")
    rag_users(env, "grant", "alice", "zoo", "reader")
    rag_users(env, "grant", "bob", "garage", "editor")
    keys = {name: rag_users(env, "key", name) for name in PASSWORDS} | {"script": SCRIPT_KEY}
    with launched("serve", data, env, timeout_s=180) as (port, _):
        yield Team(f"http://127.0.0.1:{port}", env, keys)


def test_accounts_keep_only_hashes_and_follow_their_grants(tmp_path: Path) -> None:
    accounts = Accounts(AppDatabase(tmp_path / "app.db"))
    assert not accounts.exist()
    accounts.add("dana", "dana-password-1")
    with pytest.raises(Exception, match="already exists"):
        accounts.add("dana", "another-password")
    assert accounts.verify("dana", "dana-password-1") and not accounts.verify("dana", "dana-password-2")
    assert not accounts.verify("nobody", "dana-password-1")
    accounts.grant("dana", "zoo", Role.EDITOR)
    key = accounts.new_key("dana")
    found = accounts.principal_for_key(key)
    assert found is not None and found.role("zoo") is Role.EDITOR and found.role("garage") is None
    stored = (tmp_path / "app.db").read_bytes()
    assert (
        b"dana-password-1" not in stored and key.encode() not in stored and key[-20:].encode() not in stored
    )
    accounts.revoke_key(key[:12])
    assert accounts.principal_for_key(key) is None
    conversations = ConversationStore(accounts.database)
    conversations.create("dana", "zoo", "What do alpacas eat?")
    accounts.remove("dana")
    assert accounts.principal("dana") is None and not accounts.exist()
    assert conversations.conversations("dana") == []  # a later "dana" must not find them


def test_a_data_folder_from_before_users_is_migrated_and_stays_open(tmp_path: Path) -> None:
    """An app.db of schema 2 (conversations, feedback) gains the users' tables and keeps its conversations; with no
    user in it the service is open, as before."""
    from service import RagService
    from service.accounts import OPEN

    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "app.db") as db:
        db.executescript(MIGRATIONS[0] + MIGRATIONS[1] + "; PRAGMA user_version = 2;")
        db.execute("INSERT INTO conversations VALUES ('c1', '', 'zoo', 'Old question?', 't', 't')")
    service = RagService(Settings(data_dir=data, collection="zoo"))
    try:
        assert not service.accounts_on and service.principal(None) is OPEN
        assert not service.credentials().required
        assert [c.title for c in service.conversations.conversations("")] == ["Old question?"]
    finally:
        service.close()
    with sqlite3.connect(data / "app.db") as db:
        assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        db.execute(
            f"PRAGMA user_version = {len(MIGRATIONS) + 1}"
        )  # made by a newer version: it may hold users
    refusing = RagService(Settings(data_dir=data, collection="zoo"))
    with pytest.raises(RagError, match="cannot tell who may log in"):
        refusing.credentials()
    refusing.close()


def test_each_user_sees_only_their_collections_through_the_api(team: Team) -> None:
    assert [m.id for m in team.client("alice").models.list()] == ["zoo"]
    assert [m.id for m in team.client("bob").models.list()] == ["garage"]
    assert [m.id for m in team.client("carol").models.list()] == []
    assert {m.id for m in team.client("script").models.list()} >= {"zoo", "garage"}
    asked = [{"role": "user", "content": "What do alpacas eat?"}]
    answer = team.client("alice").chat.completions.create(model="zoo", messages=asked)  # type: ignore[arg-type]
    sources = (answer.model_extra or {})["rag"]["sources"]
    assert sources and {s["source"] for s in sources} <= {"guide.md", "notes.txt", "manual.rst", "care.html"}
    with pytest.raises(openai.PermissionDeniedError) as refused:
        team.client("bob").chat.completions.create(model="zoo", messages=asked)  # type: ignore[arg-type]
    assert "alpaca" not in str(refused.value.body).lower() and "guide.md" not in str(refused.value.body)
    with pytest.raises(openai.PermissionDeniedError):  # no such collection: the same answer, nothing told
        team.client("bob").chat.completions.create(model="secret-plans", messages=asked)  # type: ignore[arg-type]
    with team.http("alice") as alice, team.http("bob") as bob:
        assert alice.get("/health").json()["store"]["collections"] == ["zoo"]
        assert bob.get("/health").json()["store"]["collections"] == ["garage"]
        zoo_docs = alice.get("/v1/collections/zoo/documents").json()["data"]
        assert bob.get("/v1/collections/zoo/documents").status_code == 403
        doc = next(d["doc_id"] for d in zoo_docs if d["source"] == "guide.md")
        assert alice.get(f"/view/zoo/{doc}").status_code == 200
        assert bob.get(f"/view/zoo/{doc}").status_code == 403
        assert bob.get(f"/view/zoo/{doc}/file").status_code == 403


def test_a_reader_cannot_upload_or_delete_an_editor_can_and_the_audit_says_who(team: Team) -> None:
    note = ("kettle.md", b"# Kettles\n\nA kettle boils water for tea.\n")
    with team.http("alice") as alice, team.http("bob") as bob:
        doc = alice.get("/v1/collections/zoo/documents").json()["data"][0]["doc_id"]
        refused = alice.post("/v1/collections/zoo/documents", files={"files": note})
        assert refused.status_code == 403 and "editor access" in refused.json()["error"]["message"]
        assert alice.delete(f"/v1/collections/zoo/documents/{doc}").status_code == 403
        uploaded = bob.post("/v1/collections/garage/documents?wait=true", files={"files": note})
        assert uploaded.status_code == 200 and uploaded.json()["ingest"]["added"] == 1, uploaded.text
        kettle = next(
            d
            for d in bob.get("/v1/collections/garage/documents").json()["data"]
            if d["source"] == "kettle.md"
        )
        assert bob.delete(f"/v1/collections/garage/documents/{kettle['doc_id']}").status_code == 200
    assert len(alice_docs := team.http("alice").get("/v1/collections/zoo/documents").json()["data"]) >= 7, (
        alice_docs
    )
    audit = rag_users(team.env, "audit", "--user", "bob")
    assert (
        "bob\tdelete document in garage: kettle.md" in audit and "bob\tupload in garage: kettle.md" in audit
    )


def test_a_revoked_key_is_refused_at_once(team: Team) -> None:
    key = rag_users(team.env, "key", "alice")
    client = openai.OpenAI(base_url=team.url + "/v1", api_key=key, max_retries=0)
    assert [m.id for m in client.models.list()] == ["zoo"]
    rag_users(team.env, "revoke-key", key[:12])
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def _concrete(method: str, path: str, docs: dict[str, str]) -> str:
    """The route's path for garage: its wrench.md to read, no document to delete, no job to see or cancel."""
    doc = "no-such-doc" if method == "DELETE" else docs["wrench.md"]
    return path.format(collection="garage", doc_id=doc, job_id="no-such-job", page=1)


def _call(http: httpx.Client, method: str, path: str) -> httpx.Response:
    if path == "/v1/chat/completions":
        body = {"model": "garage", "messages": [{"role": "user", "content": "What does a torque wrench do?"}]}
        return http.post(path, json=body)
    if path == "/v1/embeddings":
        return http.post(path, json={"input": "a bolt", "model": "any"})
    if method == "POST" and path.endswith("/documents"):
        return http.post(path, files={"files": ("saw.md", b"# Saws\n\nA saw cuts wood.\n")})
    return http.request(method, path)


def test_every_route_has_a_role_and_the_table_is_enforced(team: Team) -> None:
    """The server's routes (besides Gradio's, under its own login, and the API's description) are exactly the
    table's; walked with bob (editor of garage) each is let through, with alice (no role there) each route that
    needs a role is 403; the README lists each with its role."""
    from cli.serve import api_and_ui

    app, service = api_and_ui(Settings(data_dir=Path(team.env["RAG_DATA_DIR"]) / "probe"), None, None)
    service.close()
    described = {"/openapi.json", "/docs", "/docs/oauth2-redirect"}
    routes = set(_api_routes(app.routes))
    assert {(m, p) for m, p in routes if p not in described} == set(ROUTE_ROLES)
    readme = (REPO / "README.md").read_text()
    with team.http("bob") as bob, team.http("alice") as alice:
        docs = {d["source"]: d["doc_id"] for d in bob.get("/v1/collections/garage/documents").json()["data"]}
        for (method, path), need in ROUTE_ROLES.items():
            row = f"| `{method} {path}` | {need.role.label if need.role else 'any user'} |"
            assert row in readme, row
            concrete = _concrete(method, path, docs)
            assert _call(bob, method, concrete).status_code not in (401, 403), (method, path)
            expected = 403 if need.role else 200
            assert _call(alice, method, concrete).status_code == expected, (method, path)


def _api_routes(routes: list[Any]) -> Iterator[tuple[str, str]]:
    """(method, path) of every FastAPI route, inside included routers too (FastAPI 0.16x keeps them unflattened;
    ours are included without a prefix)."""
    from fastapi.routing import APIRoute

    for route in routes:
        if isinstance(route, APIRoute):
            yield from ((method, route.path) for method in route.methods)
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _api_routes(inner.routes)


def test_every_ui_action_has_a_role_and_refuses_without_it(tmp_path: Path) -> None:
    """Each event the UI wires runs a handler with `needs`; the README's table names each action with that role;
    called as a user with no role in the collection, each that needs one refuses before it does anything."""
    from service import RagService
    from ui.app import ChatApp

    settings = Settings(data_dir=tmp_path / "data", collection="zoo")
    Accounts(AppDatabase(settings.data_dir / "app.db")).add("carol", PASSWORDS["carol"])
    chat = ChatApp(settings, RagService(settings))
    readme = (REPO / "README.md").read_text()
    try:
        demo = chat.build()
        for fn in demo.fns.values():
            needs = getattr(fn.fn, "needs", None)
            name = fn.fn.__qualname__
            assert needs is not None, f"UI action {name} has no role (ui/roles.py)"
            assert f"| {name} | {needs} |" in readme, name
            if needs in ("reader", "editor", "admin"):
                assert f"{needs} access to collection 'zoo' is needed" in _refusal(fn.fn), name
    finally:
        chat.service.close()


def _refusal(handler: Any) -> str:
    """What the handler says to carol (no role anywhere) asking about zoo."""
    params = inspect.signature(handler).parameters
    args = {name: None for name in params}
    args.update({"request": gr.Request(username="carol"), "collection": "zoo", "name": "zoo"})
    try:
        said = handler(**{k: v for k, v in args.items() if k in params})
        return html.unescape(str(next(said) if inspect.isgenerator(said) else said))
    except gr.Error as exc:
        return str(exc)


def test_logins_are_throttled_per_user_and_per_address_and_sessions_end(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Wrong passwords for one user from many addresses, and for many users from one address, are both slowed;
    a session ends when it expires and when the password changes."""
    data = tmp_path_factory.mktemp("logins")
    env = cli_env(data) | {"RAG_TRUSTED_PROXIES": "127.0.0.1", "RAG_SESSION_HOURS": "0.002"}  # 7.2 s
    rag_users(env, "add", "erin", stdin="erin-password-1\n")
    with (
        launched("ui", data, env, timeout_s=180) as (port, _),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http,
    ):

        def login(user: str, password: str, address: str) -> httpx.Response:
            form = {"username": user, "password": password}
            return http.post("/login", data=form, headers={"X-Forwarded-For": address})

        statuses = [login("erin", "wrong-guess", f"10.0.0.{i}").status_code for i in range(7)]
        assert statuses[:5] == [400] * 5 and statuses[6] == 429, statuses
        assert "this user" in login("erin", "erin-password-1", "10.0.1.1").json()["detail"]
        assert "this user" in login(" erin ", "erin-password-1", "10.0.1.2").json()["detail"]
        statuses = [login(f"user{i}", "wrong-guess", "10.0.2.1").status_code for i in range(7)]
        assert statuses[:5] == [400] * 5 and statuses[6] == 429, statuses
        assert "this address" in login("nobody", "x", "10.0.2.1").json()["detail"]
    # a fresh server (the throttle is in memory): a session works, then expires; a password change ends one
    with (
        launched("ui", data, env, timeout_s=180) as (port, _),
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http,
    ):
        assert http.get("/config").status_code == 401
        assert (
            http.post("/login", data={"username": "erin", "password": "erin-password-1"}).status_code == 200
        )
        assert http.get("/config").status_code == 200
        time.sleep(8)
        assert http.get("/config").status_code == 401
        assert (
            http.post("/login", data={"username": "erin", "password": "erin-password-1"}).status_code == 200
        )
        rag_users(
            env, "passwd", "erin", stdin="erin-password-2\n"
        )  # that session was never used: it ends too
        assert http.get("/config").status_code == 401
        form = {"username": "erin ", "password": "erin-password-2"}  # Gradio strips the name
        assert http.post("/login", data=form).status_code == 200 and http.get("/config").status_code == 200


def _log_in(browser: Any, url: str, name: str) -> Any:
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Login").click()
    page.locator("#question textarea").wait_for(timeout=60_000)
    return page


def _collections(page: Any, expected: str) -> list[str]:
    """The collections the Settings tab offers, once the page has set the chosen one."""
    page.get_by_role("tab", name="Settings").click()
    page.wait_for_function(
        "(name) => document.querySelector('#collection input').value === name", arg=expected, timeout=30_000
    )
    page.locator("#collection input").click()
    options = [t.replace("✓", "").strip() for t in page.get_by_role("option").all_inner_texts()]
    page.keyboard.press("Escape")
    page.get_by_role("tab", name="Chat").click()
    return options


def _ask(page: Any, question: str) -> str:
    page.locator("#question textarea").fill(question)
    page.locator("#ask").click()
    page.wait_for_function(
        "() => { const s = document.querySelector('#sources');"
        " return s.innerText.trim() !== '' && !s.querySelector('.pending')"
        " && document.querySelector('#conversations input:checked') !== null; }",
        timeout=120_000,
    )
    return str(page.locator("#sources").inner_text())


@needs_chromium
def test_two_users_in_the_browser_see_only_their_collections_and_conversations(
    team: Team, browser: Any
) -> None:
    alice, bob = _log_in(browser, team.url + "/", "alice"), _log_in(browser, team.url + "/", "bob")
    try:
        page_wait = 30_000
        assert _collections(alice, "zoo") == ["zoo"] and _collections(bob, "garage") == ["garage"]
        assert "guide.md" in _ask(alice, "What do alpacas eat?")
        bob_sources = _ask(bob, "What does a torque wrench do?")
        assert "wrench.md" in bob_sources and "guide.md" not in bob_sources
        listed = {
            who: [t.strip() for t in page.locator("#conversations label").all_inner_texts()]
            for who, page in (("alice", alice), ("bob", bob))
        }
        assert listed == {"alice": ["What do alpacas eat?"], "bob": ["What does a torque wrench do?"]}, listed
        alice.get_by_role("tab", name="Documents").click()
        alice.locator("#uploads input[type=file]").set_input_files(
            files=[{"name": "kettle.md", "mimeType": "text/markdown", "buffer": b"# Kettles\n\nTea.\n"}]
        )
        alice.locator("#ingest").click()
        alice.wait_for_function(
            "() => document.querySelector('#documents-status textarea').value.includes('editor access')",
            timeout=page_wait,
        )
        alice.locator("#logout").click()
        alice.get_by_label("username").wait_for(timeout=page_wait)
        assert re.search(r"/(login)?$", alice.url) or alice.get_by_label("password").is_visible()
    finally:
        alice.context.close()
        bob.context.close()
