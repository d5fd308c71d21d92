"""`rag serve`: the API and the chat UI in one process, one store, one model server."""

from __future__ import annotations

import fastapi
from fastapi.exceptions import RequestValidationError

from api.errors import ApiError, api_error_handler, validation_handler
from api.limits import BodyLimit
from api.routes import api_router
from rag.config import Settings
from rag.errors import RagError
from ui.access import Credentials
from ui.app import ChatApp
from ui.server import mount_ui, serve

JSON_LIMIT_BYTES = 4 << 20  # a chat request with a long history fits many times over


def api_app(
    settings: Settings, user: str | None = None, password: str | None = None
) -> tuple[fastapi.FastAPI, ChatApp]:
    """The FastAPI app: /v1 and /health, OpenAPI at /docs, the UI at / sharing the API's collections."""
    chat = ChatApp(settings)
    server = fastapi.FastAPI(
        title="offline-rag API",
        summary="OpenAI-compatible chat, models and embeddings over your document collections",
        docs_url="/docs",
        redoc_url=None,
    )
    server.add_exception_handler(ApiError, api_error_handler)
    server.add_exception_handler(RagError, api_error_handler)
    server.add_exception_handler(RequestValidationError, validation_handler)
    server.add_middleware(BodyLimit, json_bytes=JSON_LIMIT_BYTES, upload_bytes=settings.upload_max_bytes)
    server.include_router(api_router(chat.service))
    key = settings.api_key.get_secret_value() if settings.api_key else None
    return mount_ui(server, chat, Credentials.of(key, user, password)), chat


def run(settings: Settings, host: str, port: int, user: str | None, password: str | None) -> None:
    app, chat = api_app(settings, user, password)
    try:
        serve(app, host, port, "rag serve (API at /v1, docs at /docs, UI at /)", settings.trusted_proxies)
    finally:
        chat.service.close()
