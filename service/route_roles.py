"""What each web route needs (the API's and the citation viewer's): a role in the collection the route names, or
only a user. Every such route is in ROUTE_ROLES; one missing from it is refused to everyone (and
tests/test_users.py fails), so a route added later cannot be open by omission. The README's table is this one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from service.access import principal_of
from service.accounts import Forbidden, NotLoggedIn, Principal, Role


@dataclass(frozen=True)
class Need:
    role: Role | None  # None: any user (what they see is still only theirs)
    named_by: (
        str  # where the collection is named: "path" ({collection}), "model" (the request's model), "" (none)
    )
    note: str


def _in_path(role: Role, note: str) -> Need:
    return Need(role, "path", note)


COLLECTION = "/v1/collections/{collection}"
ROUTE_ROLES: Mapping[tuple[str, str], Need] = {
    ("POST", "/v1/chat/completions"): Need(Role.READER, "model", "ask a collection (the model)"),
    ("GET", "/v1/models"): Need(None, "", "lists only the collections the user may read"),
    ("POST", "/v1/embeddings"): Need(None, "", "the app's embedder; reads no collection"),
    ("GET", f"{COLLECTION}/documents"): _in_path(Role.READER, "list its documents"),
    ("POST", f"{COLLECTION}/documents"): _in_path(Role.EDITOR, "upload and ingest"),
    ("DELETE", f"{COLLECTION}/documents/{{doc_id}}"): _in_path(Role.EDITOR, "delete a document"),
    ("GET", f"{COLLECTION}/jobs"): _in_path(Role.READER, "its ingestion jobs"),
    ("GET", f"{COLLECTION}/jobs/{{job_id}}"): _in_path(Role.READER, "one job's progress"),
    ("POST", f"{COLLECTION}/jobs/{{job_id}}/cancel"): _in_path(Role.EDITOR, "cancel a job"),
    ("GET", "/health"): Need(None, "", "lists only the collections the user may read"),
    ("GET", "/view/{collection}/{doc_id}"): _in_path(Role.READER, "a cited passage in its document"),
    ("GET", "/view/{collection}/{doc_id}/page/{page}.png"): _in_path(Role.READER, "a PDF page, highlighted"),
    ("GET", "/view/{collection}/{doc_id}/file"): _in_path(Role.READER, "the original file"),
}


def route_caller(request: Request) -> Principal:
    """Who is calling this route, let through by its entry in ROUTE_ROLES (the front ends' dependency)."""
    route = getattr(request.scope.get("route"), "path", request.url.path)
    return check_route(principal_of(request), request.method, route, request.path_params)


def check_route(principal: Principal | None, method: str, route: str, params: Mapping[str, Any]) -> Principal:
    """The caller, if the route's table entry lets them through (a role in the collection of its path); a route
    with no entry is refused to everyone. "model" routes check the model's collection themselves."""
    if principal is None:
        raise NotLoggedIn("not logged in: send a bearer key, or log in to the UI")
    need = ROUTE_ROLES.get((method, route))
    if need is None:
        raise Forbidden(f"{method} {route} has no role in service/route_roles.py: refused to everyone")
    if need.role is not None and need.named_by == "path":
        principal.require(str(params.get("collection", "")), need.role)
    return principal
