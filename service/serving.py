"""Runs a web app (the UI, the API, or both) under uvicorn, after checking its port."""

from __future__ import annotations

import socket

import fastapi
import uvicorn

from rag.errors import RagError


def serve(app: fastapi.FastAPI, host: str, port: int, what: str, trusted_proxies: str | None = None) -> None:
    _check_port(host, port)
    print(f"{what}: http://{host}:{port}/ (Ctrl+C stops it)", flush=True)
    # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: one header per try then reset the login throttle
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        proxy_headers=trusted_proxies is not None,
        forwarded_allow_ips=trusted_proxies,
    )


def _check_port(host: str, port: int) -> None:
    """A taken port is one line before anything starts (uvicorn logs it and exits 3 after the models load)."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise RagError(
            f"cannot listen on {host}:{port}: {(exc.strerror or str(exc)).lower()}; choose another --port"
        ) from None
