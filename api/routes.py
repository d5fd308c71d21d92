"""The API's routes: OpenAI's chat, models and embeddings, the collections' documents, and health."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api import chat
from api.errors import ApiError, from_rag_error, unknown_model
from api.schemas import ChatRequest, EmbeddingRequest
from rag.embedder import embedder_from_settings
from rag.errors import RagError
from rag.llm import describe_llm
from rag.llm_server import embedded_state
from rag.question import check_question
from rag.rerank import describe_reranker
from rag.store import list_collections
from service import NAME_MAX_BYTES, RagService
from service.accounts import Principal, Role
from service.route_roles import route_caller

MODEL_PREFIX = "rag:"
# ?wait=true holds a worker thread: past this, the answer is 202 with the job, as without it
WAIT_LIMIT_S = 600


# who is calling, let through by the route's entry in service/route_roles.py (api/server.py makes it a dependency of
# every route; a refusal is a RagError, answered in OpenAI's shape); the same call, so FastAPI makes it once
Caller = Annotated[Principal, Depends(route_caller)]


def collection_of(service: RagService, model: str, principal: Principal) -> str:
    """The collection a model name names (`docs` or `rag:docs`), if this caller may read it; one they may not is
    refused whether or not it exists."""
    name = model.removeprefix(MODEL_PREFIX)
    principal.require(name, Role.READER)
    try:
        known = list_collections(service.settings)
    except Exception as exc:  # a Qdrant server that cannot be reached fails in many types
        raise ApiError(
            503, f"cannot list the collections: {exc}", "server_error", "store_unavailable"
        ) from None
    if name not in known:
        raise unknown_model(model)
    return name


def api_router(service: RagService) -> APIRouter:
    """Every route; who may call them is decided by service.access, in front of every route of the server."""
    router = APIRouter()
    router.include_router(_openai_routes(service))
    router.include_router(_document_routes(service))

    @router.get("/health", tags=["Health"])
    async def health(principal: Caller) -> dict[str, Any]:
        return await run_in_threadpool(_health, service, principal)

    return router


def _openai_routes(service: RagService) -> APIRouter:
    router = APIRouter()
    settings = service.settings

    @router.post("/v1/chat/completions", tags=["OpenAI"])
    def chat_completions(request: ChatRequest, principal: Caller) -> Any:
        """OpenAI's chat completions; `model` is a collection. Extras in, as `rag`: top_k, top_n, rerank, mode,
        filter (documents, types, path, ingested_since, ingested_until)."""
        name = collection_of(service, request.model, principal)
        try:
            check_question(chat.question_and_history(request)[0], settings)  # before the embedder loads
            pipeline = service.pipeline(name)
            asked = request.rag.filter
            flt = service.search_filter(name, asked.request()) if asked else None
        except RagError as exc:
            raise from_rag_error(exc) from None
        if request.stream:
            return StreamingResponse(
                chat.stream(pipeline, request, request.model, flt), media_type="text/event-stream"
            )
        return chat.complete(pipeline, request, request.model, flt)

    @router.get("/v1/models", tags=["OpenAI"])
    def models(principal: Caller) -> dict[str, Any]:
        """One model per collection the caller may read."""
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "rag"}
                for name in principal.readable(list_collections(settings))
            ],
        }

    @router.post("/v1/embeddings", tags=["OpenAI"])
    def embeddings(request: EmbeddingRequest) -> dict[str, Any]:
        """The app's own embedder (the one its collections are built with), in OpenAI's shape."""
        texts = [request.input] if isinstance(request.input, str) else request.input
        embedder = embedder_from_settings(settings)
        vectors = embedder.embed(texts).astype(np.float32)
        tokens = sum(embedder.count_tokens(text) for text in texts)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _encoded(vector, request.encoding_format)}
                for i, vector in enumerate(vectors)
            ],
            "model": settings.embed_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    return router


def _document_routes(service: RagService) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/collections/{collection}/documents", tags=["Documents"])
    def documents(collection: str) -> dict[str, Any]:
        return {"object": "list", "data": [r.listing() for r in _service_call(service.documents, collection)]}

    @router.post("/v1/collections/{collection}/documents", tags=["Documents"], status_code=202)
    def upload(
        collection: str,
        files: Annotated[list[UploadFile], File()],
        response: Response,
        principal: Caller,
        wait: bool = False,
    ) -> dict[str, Any]:
        """Files or zips, saved as the UI's Documents tab does (same limits and rules), then ingested by a
        background job: 202 with the job, whose status is at .../jobs/{id}. `?wait=true` answers when it ends
        (200, with the summary as `ingest`), or after 10 minutes as without it."""
        with tempfile.TemporaryDirectory() as incoming:
            paths = [_save(file, Path(incoming)) for file in files]
            saved = _service_call(service.save_uploads, collection, paths, principal.name)
        job = _service_call(service.ingest_uploads, collection)
        body: dict[str, Any] = {
            "saved": saved.saved,
            "rejected": [{"file": name, "reason": why} for name, why in saved.rejected],
        }
        if wait and job.done.wait(WAIT_LIMIT_S):
            response.status_code = 200
            body["ingest"] = job.summary.as_dict() if job.summary else None
        return {**body, "job": job.status()}

    @router.get("/v1/collections/{collection}/jobs", tags=["Documents"])
    def jobs(collection: str) -> dict[str, Any]:
        """The collection's ingestion jobs, newest first: waiting, running, and recently finished."""
        return {"object": "list", "data": [job.status() for job in service.jobs.jobs(collection)]}

    @router.get("/v1/collections/{collection}/jobs/{job_id}", tags=["Documents"])
    def job_status(collection: str, job_id: str) -> dict[str, Any]:
        """Files done of total, chunks, the file being read, errors; the summary once it ends."""
        return dict(_service_call(service.jobs.get, job_id, collection).status())

    @router.post("/v1/collections/{collection}/jobs/{job_id}/cancel", tags=["Documents"])
    def cancel_job(collection: str, job_id: str, principal: Caller) -> dict[str, Any]:
        """A waiting job never starts; a running one stops at its next file: the files it finished stay, the
        rest are left for the next ingestion."""
        return dict(_service_call(service.cancel_job, job_id, collection, principal.name).status())

    @router.delete("/v1/collections/{collection}/documents/{doc_id}", tags=["Documents"])
    def delete(collection: str, doc_id: str, principal: Caller) -> dict[str, Any]:
        deleted = _service_call(service.delete_document, collection, doc_id, principal.name)
        return {"deleted": deleted, "id": doc_id}

    return router


def _encoded(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":  # what the openai client asks for by default: little-endian float32
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


def _save(file: UploadFile, folder: Path) -> str:
    name = Path(file.filename or "").name  # the name only: a path in it would choose where it goes
    if name in ("", ".", ".."):
        name = "upload"
    if len(os.fsencode(name)) > NAME_MAX_BYTES:
        raise ApiError(
            400,
            f"file name longer than {NAME_MAX_BYTES} bytes: {name[:40]}…; rename it",
            "invalid_request_error",
            "file_name_too_long",
            "files",
        )
    destination = folder / name
    with destination.open("wb") as out:
        shutil.copyfileobj(file.file, out)
    return str(destination)


def _service_call(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except RagError as exc:
        raise from_rag_error(exc) from None


def _health(service: RagService, principal: Principal) -> dict[str, Any]:
    settings = service.settings
    report: dict[str, Any] = {"status": "ok"}
    try:
        names = principal.readable(list_collections(settings))
        report["store"] = {
            "backend": "qdrant server" if settings.qdrant_url else "qdrant-edge",
            "collections": names,
        }
    except Exception as exc:  # a Qdrant server that cannot be reached fails in many types
        report["status"] = "degraded"
        report["store"] = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
        names = []
    report["embedder"] = {"model": settings.embed_model, "backend": settings.embed_backend}
    report["reranker"] = {name: describe_reranker(settings, name) for name in names}
    llm = describe_llm(settings)
    if llm["embedded"]:
        llm["state"] = embedded_state(settings)
    report["llm"] = llm
    return report
