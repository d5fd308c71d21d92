"""The web server: one FastAPI app with the Gradio UI mounted, behind the login throttle; run by uvicorn."""

from __future__ import annotations

import socket

import fastapi
import gradio as gr
import uvicorn

from rag.config import Settings
from rag.errors import RagError
from ui.app import CSS, ChatApp
from ui.throttle import LoginThrottle


def web_app(chat: ChatApp, user: str | None = None, password: str | None = None) -> fastapi.FastAPI:
    """FastAPI rather than Gradio's own launch: middleware (the login throttle) can only be added to an app
    before it starts, and other routes (the API) can share the process."""
    server = fastapi.FastAPI(title="offline-rag", docs_url=None, redoc_url=None, openapi_url=None)
    return mount_ui(server, chat, user, password)


def mount_ui(
    server: fastapi.FastAPI, chat: ChatApp, user: str | None, password: str | None
) -> fastapi.FastAPI:
    """The Gradio app at /, its login (if set) throttled per address."""
    server.add_middleware(LoginThrottle)
    demo = chat.build().queue(default_concurrency_limit=4)
    return gr.mount_gradio_app(
        server,
        demo,
        path="/",
        auth=(user, password) if user and password else None,
        css=CSS,
        show_error=False,
        footer_links=["api"],
        max_file_size=chat.settings.upload_max_bytes,
    )


def serve(app: fastapi.FastAPI, host: str, port: int, what: str) -> None:
    _check_port(host, port)
    print(f"{what}: http://{host}:{port}/ (Ctrl+C stops it)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def launch(settings: Settings, host: str, port: int, user: str | None, password: str | None) -> None:
    chat = ChatApp(settings)
    try:
        serve(web_app(chat, user, password), host, port, "rag ui")
    finally:
        chat.service.close()


def _check_port(host: str, port: int) -> None:
    """A taken port is one line before anything starts (uvicorn logs it and exits 3 after the models load)."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise RagError(
            f"cannot listen on {host}:{port}: {(exc.strerror or str(exc)).lower()}; choose another --port"
        ) from None
