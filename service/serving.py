"""Runs a web app (the UI, the API, or both) under uvicorn, after checking its port."""

from __future__ import annotations

import ipaddress
import socket
import sys

import fastapi
import uvicorn

from rag.errors import RagError
from service.access import Credentials


def serve(
    app: fastapi.FastAPI,
    host: str,
    port: int,
    what: str,
    trusted_proxies: str | None = None,
    credentials: Credentials | None = None,
) -> None:
    _check_port(host, port)
    print(f"{what}: http://{host}:{port}/ (Ctrl+C stops it)", flush=True)
    if credentials is not None and not credentials.required and not _loopback(host):
        print(
            f"warning: no users, no RAG_API_KEY and no UI login: anyone who can reach {host}:{port} can read and "
            "change every collection; add one: rag users add NAME --admin",
            file=sys.stderr,
            flush=True,
        )
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


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may be reachable from elsewhere
        return False
