"""The API's FastAPI app: /v1 and /health over a service, OpenAPI at /docs; `rag serve` mounts the UI beside it
(cli/serve.py), so both share one store and one model server."""

from __future__ import annotations

import fastapi
from fastapi import Depends
from fastapi.exceptions import RequestValidationError

from api.errors import ApiError, api_error_handler, validation_handler
from api.limits import BodyLimit
from api.routes import api_router
from rag.errors import RagError
from service import RagService
from service.route_roles import route_caller

JSON_LIMIT_BYTES = 4 << 20  # a chat request with a long history fits many times over


def api_app(service: RagService) -> fastapi.FastAPI:
    """The API alone; who may call it is decided in front of every route of the server (service.access)."""
    server = fastapi.FastAPI(
        title="offline-rag API",
        summary="OpenAI-compatible chat, models and embeddings over your document collections",
        docs_url="/docs",
        redoc_url=None,
    )
    server.add_exception_handler(ApiError, api_error_handler)
    server.add_exception_handler(RagError, api_error_handler)
    server.add_exception_handler(RequestValidationError, validation_handler)
    server.add_middleware(
        BodyLimit, json_bytes=JSON_LIMIT_BYTES, upload_bytes=service.settings.upload_max_bytes
    )
    server.include_router(api_router(service), dependencies=[Depends(route_caller)])  # every route: its role
    return server
