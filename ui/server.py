"""The web server: one FastAPI app with the Gradio UI mounted, behind the login throttle; run by uvicorn."""

from __future__ import annotations

from collections.abc import Callable

import fastapi
import gradio as gr
from gradio.routes import App as GradioApp
from starlette.requests import HTTPConnection
from starlette.routing import Mount

from rag.config import Settings
from service.access import AccessGate, Credentials
from service.serving import serve
from service.throttle import LoginThrottle
from ui.app import CSS, ChatApp


def web_app(
    chat: ChatApp, user: str | None = None, password: str | None = None, api_key: str | None = None
) -> fastapi.FastAPI:
    """FastAPI rather than Gradio's own launch: middleware (the login throttle) can only be added to an app
    before it starts, and other routes (the API) can share the process."""
    server = fastapi.FastAPI(title="offline-rag", docs_url=None, redoc_url=None, openapi_url=None)
    return mount_ui(server, chat, Credentials.of(api_key, user, password))


def mount_ui(server: fastapi.FastAPI, chat: ChatApp, credentials: Credentials) -> fastapi.FastAPI:
    """The Gradio app at /, its login throttled per address, and every route of the server behind
    service.access's rule (the key or the login) when either is set."""
    server.add_middleware(LoginThrottle)
    demo = chat.build().queue(default_concurrency_limit=4)
    mounted = gr.mount_gradio_app(
        server,
        demo,
        path="/",
        auth=credentials.gradio_auth(),
        css=CSS,
        show_error=False,
        footer_links=["api"],
        max_file_size=chat.settings.upload_max_bytes,
        run_history=False,  # a record of every question in the browser's storage: not on a shared machine
    )
    server.add_middleware(AccessGate, credentials=credentials, sessions=_session_check(_gradio_app(mounted)))
    return mounted


def _gradio_app(server: fastapi.FastAPI) -> GradioApp:
    """The Gradio app mounted at / (mount_gradio_app returns the parent app, not it)."""
    mounts = [r.app for r in server.routes if isinstance(r, Mount) and isinstance(r.app, GradioApp)]
    return mounts[-1]


def _session_check(gradio_app: GradioApp) -> Callable[[HTTPConnection], bool]:
    """Whether a request carries a token Gradio's /login handed out (the cookies Gradio itself reads)."""

    def has_session(connection: HTTPConnection) -> bool:
        names = (f"access-token-{gradio_app.cookie_id}", f"access-token-unsecure-{gradio_app.cookie_id}")
        return any(connection.cookies.get(name) in gradio_app.tokens for name in names)

    return has_session


def launch(settings: Settings, host: str, port: int, user: str | None, password: str | None) -> None:
    chat = ChatApp(settings)
    chat.service.watch_configured()
    key = settings.api_key.get_secret_value() if settings.api_key else None
    try:
        serve(web_app(chat, user, password, key), host, port, "rag ui", settings.trusted_proxies)
    finally:
        chat.service.close()
