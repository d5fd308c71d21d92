"""`rag serve`: the API and the chat UI in one process, one service, one store, one model server. Composed here,
where both front ends may be imported (they never import each other)."""

from __future__ import annotations

import fastapi

from api.server import api_app
from rag.config import Settings
from service import RagService
from service.serving import serve
from ui.app import ChatApp
from ui.server import mount_ui


def api_and_ui(
    settings: Settings, user: str | None, password: str | None
) -> tuple[fastapi.FastAPI, RagService]:
    """/v1 and /health, OpenAPI at /docs, the UI at /, over one service; everything behind service.access."""
    service = RagService(settings)
    service.watch_configured()
    app = mount_ui(api_app(service), ChatApp(settings, service), service.credentials(user, password))
    return app, service


def run(settings: Settings, host: str, port: int, user: str | None, password: str | None) -> None:
    app, service = api_and_ui(settings, user, password)
    what = "rag serve (API at /v1, docs at /docs, UI at /)"
    try:
        serve(app, host, port, what, settings.trusted_proxies, service.credentials(user, password))
    finally:
        service.close()
