"""Errors in OpenAI's shape ({"error": {"message", "type", "param", "code"}}), so its clients raise the right type."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from rag.errors import (
    BadCollectionName,
    BadFilter,
    BadQuestion,
    CollectionExists,
    CollectionNotFound,
    DocumentNotFound,
    JobNotFound,
    RagError,
    StoreLockedError,
)
from service.accounts import Forbidden, NotLoggedIn

# The asker's mistakes, by type: (status, OpenAI error type, code, param).
CLIENT_ERRORS: dict[type[RagError], tuple[int, str, str, str | None]] = {
    BadFilter: (400, "invalid_request_error", "bad_filter", "rag.filter"),  # before BadQuestion, its base
    BadQuestion: (400, "invalid_request_error", "bad_question", "messages"),
    BadCollectionName: (400, "invalid_request_error", "bad_collection_name", None),
    CollectionNotFound: (404, "invalid_request_error", "collection_not_found", None),
    CollectionExists: (409, "invalid_request_error", "collection_exists", None),
    DocumentNotFound: (404, "invalid_request_error", "document_not_found", None),
    JobNotFound: (404, "invalid_request_error", "job_not_found", None),
    NotLoggedIn: (401, "invalid_request_error", "invalid_api_key", None),
    Forbidden: (403, "permission_error", "forbidden", None),
}


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, kind: str, code: str | None = None, param: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.kind, self.code, self.param)


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def from_rag_error(exc: RagError) -> ApiError:
    """The asker's mistake is a 4xx; a held store a 503 (try again); anything else the app's side, a 500."""
    for kind, (status, error_type, code, param) in CLIENT_ERRORS.items():
        if isinstance(exc, kind):
            return ApiError(status, str(exc), error_type, code, param)
    if isinstance(exc, StoreLockedError):
        return ApiError(503, str(exc), "server_error", "store_locked")
    return ApiError(500, str(exc), "rag_error")


def unknown_model(name: str) -> ApiError:
    return ApiError(
        404,
        f"the model {name!r} does not exist: models are the collections (GET /v1/models)",
        "invalid_request_error",
        "model_not_found",
        "model",
    )


async def api_error_handler(_: Request, exc: Exception) -> JSONResponse:
    error = exc if isinstance(exc, ApiError) else from_rag_error(exc)  # type: ignore[arg-type]
    return JSONResponse(error.body(), status_code=error.status)


async def validation_handler(_: Request, exc: Exception) -> JSONResponse:
    """Bad JSON or a missing field: 400 with the first problem named, as OpenAI does."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    first: dict[str, Any] = dict(errors[0]) if errors else {"loc": (), "msg": str(exc)}
    if first.get("type") == "json_invalid":  # its loc is ("body", 31): a character offset, not a parameter
        where = first["loc"][-1] if first["loc"] else "?"
        problem = (first.get("ctx") or {}).get("error", first["msg"])
        message = f"the body is not valid JSON: {problem} at character {where}"
        return JSONResponse(error_body(message, "invalid_request_error", None, None), status_code=400)
    param = ".".join(str(part) for part in first["loc"] if part != "body") or None
    message = f"{param}: {first['msg']}" if param else str(first["msg"])
    return JSONResponse(error_body(message, "invalid_request_error", None, param), status_code=400)
