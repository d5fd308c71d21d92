"""The web server: one FastAPI app with the Gradio UI mounted, behind the login throttle; run by uvicorn."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import fastapi
import gradio as gr
from fastapi.responses import FileResponse, HTMLResponse, Response
from gradio.routes import App as GradioApp
from pydantic import StringConstraints
from starlette.requests import HTTPConnection
from starlette.routing import Mount

from rag.config import Settings
from rag.errors import RagError
from service import RagService
from service.access import AccessGate, Credentials, Session, SessionBook
from service.accounts import Forbidden, NotLoggedIn, Principal
from service.route_roles import route_caller
from service.serving import serve
from service.throttle import LoginThrottle
from service.viewer import (
    MAX_QUOTE_CHARS,
    MAX_QUOTES,
    SourceView,
    original_file,
    page_png,
    source_view,
    view_html,
)
from ui import citations
from ui.app import CSS, ChatApp


def web_app(chat: ChatApp, user: str | None = None, password: str | None = None) -> fastapi.FastAPI:
    """FastAPI rather than Gradio's own launch: middleware (the login throttle) can only be added to an app
    before it starts, and other routes (the API) can share the process."""
    server = fastapi.FastAPI(title="offline-rag", docs_url=None, redoc_url=None, openapi_url=None)
    return mount_ui(server, chat, chat.service.credentials(user, password))


def mount_ui(server: fastapi.FastAPI, chat: ChatApp, credentials: Credentials) -> fastapi.FastAPI:
    """The Gradio app at /, its login throttled per address, and every route of the server behind
    service.access's rule (the key or the login) when either is set."""
    book = SessionBook(credentials.session_hours)
    server.add_middleware(
        LoginThrottle, issued=book.issued
    )  # it sees /login's answers: the tokens it hands out
    server.include_router(
        viewer_routes(chat.service)
    )  # before the UI's mount at /, which would take its paths
    demo = chat.build().queue(default_concurrency_limit=4)
    mounted = gr.mount_gradio_app(
        server,
        demo,
        path="/",
        auth=credentials.gradio_auth(),
        css=CSS + citations.CSS,
        head=citations.HEAD,
        show_error=False,
        footer_links=["api"],
        max_file_size=chat.settings.upload_max_bytes,
        run_history=False,  # a record of every question in the browser's storage: not on a shared machine
    )
    sessions = _session_check(_gradio_app(mounted), book)
    server.add_middleware(AccessGate, credentials=credentials, sessions=sessions)
    return mounted


def _gradio_app(server: fastapi.FastAPI) -> GradioApp:
    """The Gradio app mounted at / (mount_gradio_app returns the parent app, not it)."""
    mounts = [r.app for r in server.routes if isinstance(r, Mount) and isinstance(r.app, GradioApp)]
    return mounts[-1]


def _session_check(gradio_app: GradioApp, book: SessionBook) -> Callable[[HTTPConnection], Session | None]:
    """The live session a request carries: a token Gradio's /login handed out (in the cookies Gradio itself reads),
    its user, and when it was handed out. A token past RAG_SESSION_HOURS is taken from Gradio too, so its page must
    log in again."""
    began = book.began

    def session(connection: HTTPConnection) -> Session | None:
        names = (f"access-token-{gradio_app.cookie_id}", f"access-token-unsecure-{gradio_app.cookie_id}")
        for token in (connection.cookies.get(name) for name in names):
            if token is None or token not in gradio_app.tokens:
                continue
            start = began(token)
            if start is None:
                gradio_app.tokens.pop(token, None)
                return None
            user = gradio_app.tokens.get(token)
            return (str(user), start) if user is not None else None
        return None

    return session


def launch(settings: Settings, host: str, port: int, user: str | None, password: str | None) -> None:
    chat = ChatApp(settings)
    chat.service.watch_configured()
    try:
        app = web_app(chat, user, password)
        serve(app, host, port, "rag ui", settings.trusted_proxies, chat.service.credentials(user, password))
    finally:
        chat.service.close()


def _viewer_caller(request: fastapi.Request) -> Principal:
    """The caller, if their role lets them read the collection (service/route_roles.py)."""
    try:
        return route_caller(request)
    except NotLoggedIn as exc:
        raise fastapi.HTTPException(401, str(exc)) from None
    except Forbidden as exc:
        raise fastapi.HTTPException(403, str(exc)) from None


# the sentences to mark, from the answer: a few, each a sentence (citation_url sends at most 5)
Quotes = Annotated[
    list[Annotated[str, StringConstraints(max_length=MAX_QUOTE_CHARS)]] | None,
    fastapi.Query(max_length=MAX_QUOTES),
]  # the sentences to mark, from the answer


def viewer_routes(service: RagService) -> fastapi.APIRouter:
    """/view/COLLECTION/DOC_ID?chunk=N&hl=...: a cited passage in its document (service/viewer.py); its PDF page
    as an image; its original file. Behind the same access rule as every route of the server."""
    router = fastapi.APIRouter(dependencies=[fastapi.Depends(_viewer_caller)])

    def view_of(collection: str, doc_id: str, chunk: int) -> SourceView:
        try:
            return source_view(service.collection(collection), doc_id, chunk)
        except RagError as exc:
            raise fastapi.HTTPException(404, str(exc)) from None

    @router.get("/view/{collection}/{doc_id}", response_class=HTMLResponse, include_in_schema=False)
    def view(collection: str, doc_id: str, chunk: int = 0, hl: Quotes = None) -> str:
        return view_html(view_of(collection, doc_id, chunk), hl or [])

    @router.get("/view/{collection}/{doc_id}/page/{page}.png", include_in_schema=False)
    def page(collection: str, doc_id: str, page: int, chunk: int = 0, hl: Quotes = None) -> Response:
        shown = view_of(collection, doc_id, chunk)
        try:
            return Response(page_png(shown, page, hl or []), media_type="image/png")
        except RagError as exc:
            raise fastapi.HTTPException(404, str(exc)) from None

    @router.get("/view/{collection}/{doc_id}/file", include_in_schema=False)
    def original(collection: str, doc_id: str) -> FileResponse:
        record = view_of(collection, doc_id, 0).record
        try:
            path = original_file(record)
        except RagError as exc:
            raise fastapi.HTTPException(404, str(exc)) from None
        return FileResponse(path, filename=path.name)

    return router
