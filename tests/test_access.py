"""Who can reach what: every route `rag serve` exposes, walked from the app's own route list, is refused without
the key or the UI login (service.access), so a route added later without protection fails here."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from cli.serve import api_and_ui
from rag.config import Settings

KEY = "sk-test-key-0123456789"
USER, PASSWORD = "ann", "right-horse-battery"


def _routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every HTTP route, into mounted apps and included routers."""
    for route in routes:
        if isinstance(route, Mount):
            yield from _routes(list(route.routes), prefix + route.path)
        elif isinstance(route, APIRoute | Route):
            for method in sorted(route.methods or {"GET"}):
                yield method, prefix + route.path
        elif hasattr(route, "original_router"):  # FastAPI's lazily included router (Gradio's /gradio_api)
            yield from _routes(list(route.original_router.routes), prefix + route.include_context.prefix)


def _concrete(path: str) -> str:
    """A path to request: parameters filled ("{api_name}" → "x", "{path:path}" → "x")."""
    return re.sub(r"\{[^}]*\}", "x", path)


def _walk(client: TestClient, headers: dict[str, str] | None = None) -> dict[tuple[str, str], int]:
    statuses = {}
    for method, path in sorted(set(_routes(client.app.routes))):  # type: ignore[attr-defined]
        if method == "HEAD":
            continue
        statuses[(method, path)] = _status(client, method, _concrete(path), headers or {})
    return statuses


def _status(client: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    """The response's status, or 0 for a route that did not answer in time: an open stream (Gradio's queue and
    heartbeat answer anyone and never end), so the walk cannot hang on one."""
    result: list[int] = []

    def call() -> None:
        result.append(client.request(method, path, headers=headers, follow_redirects=False).status_code)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout=15)
    return result[0] if result else 0


# What a browser needs before it has logged in, and the API's description: docs/api.md's table, "Who can reach what".
PUBLIC = {("GET", "/"), ("POST", "/login"), ("POST", "/login/"), ("GET", "/logout"), ("GET", "/favicon.ico")}
PUBLIC |= {("GET", p) for p in ("/theme.css", "/gradio_api/theme.css", "/robots.txt", "/manifest.json")}
PUBLIC |= {
    ("GET", p) for p in ("/pwa_icon", "/pwa_icon/{size}", "/assets/{path:path}", "/static/{path:path}")
}
PUBLIC |= {("GET", p) for p in ("/svelte/{path:path}", "/docs", "/docs/oauth2-redirect", "/openapi.json")}

CONFIGS = {
    "key only": {"api_key": KEY},
    "login only": {"ui_user": USER, "ui_password": PASSWORD},
    "key and login": {"api_key": KEY, "ui_user": USER, "ui_password": PASSWORD},
}


def _client(tmp_path: Path, config: dict[str, str]) -> TestClient:
    settings = Settings(data_dir=tmp_path, collection="test", **config)  # type: ignore[arg-type]
    user, password = config.get("ui_user"), config.get("ui_password")
    app, _ = api_and_ui(settings, user, password)
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
def test_every_route_is_refused_without_the_key_or_the_login(tmp_path: Path, config: str) -> None:
    """With RAG_API_KEY alone, Gradio's /gradio_api/run/documents, /upload and the queue answered anyone."""
    with _client(tmp_path, CONFIGS[config]) as client:
        statuses = _walk(client)
    assert len(statuses) > 60  # the walk reached Gradio's routes, not only the API's
    assert ("POST", "/gradio_api/upload") in statuses and ("GET", "/v1/models") in statuses
    assert {route: code for route, code in statuses.items() if code != 401 and route not in PUBLIC} == {}


@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
def test_the_key_opens_the_api_and_the_login_opens_the_ui(tmp_path: Path, config: str) -> None:
    settings = CONFIGS[config]
    bearer = settings.get("api_key") or settings["ui_password"]  # no key: the UI password guards the API
    name, secret = (USER, PASSWORD) if "ui_user" in settings else ("anyone", KEY)
    with _client(tmp_path, settings) as client:
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {bearer}"}).status_code == 200
        assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/gradio_api/info").status_code == 401
        assert client.post("/login", data={"username": name, "password": "wrong"}).status_code == 400
        assert client.post("/login", data={"username": name, "password": secret}).status_code == 200
        assert client.get("/gradio_api/info").status_code == 200  # the session cookie
        assert client.get("/v1/models").status_code == 401  # a browser's cookie is not the API's key


def test_without_key_or_login_everything_stays_open_on_loopback(tmp_path: Path) -> None:
    with _client(tmp_path, {}) as client:
        assert client.get("/v1/models").status_code == 200
        assert client.get("/gradio_api/info").status_code == 200
