"""What each UI action needs: every handler the UI wires to an event is wrapped by `needs` (a role in the collection
it is given, or any user, or nothing for layout), which checks the request's login before the handler runs. The
README's table of UI actions lists them, and tests/test_users.py fails for an event whose handler has no `needs`,
so an action added later cannot be open by omission."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from rag.errors import RagError
from service.accounts import Principal, Role

F = TypeVar("F", bound=Callable[..., Any])
ANY_USER = "any user"
LAYOUT = "none (layout only)"


def needs(
    role: Role | None,
    of: str = "collection",
    refused: Callable[[str], Any] | None = None,
    fallback: Callable[[Any], str] | None = None,
) -> Callable[[F], F]:
    """The handler runs only for a logged-in user (any user when role is None) whose role in the collection named by
    its argument `of` (or, when that is empty, `fallback(owner)`) is `role` or above. Refused, it runs
    `refused(reason)` for its outputs, or raises gr.Error (a notice in the page). The handler's owner has
    `principal_of(user) -> Principal`; the handler takes `request: gr.Request | None = None`."""

    def wrap(fn: F) -> F:
        signature = inspect.signature(fn)
        if "request" not in signature.parameters:
            raise TypeError(f"{fn.__qualname__} must take request: gr.Request to be guarded")

        def reason(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
            bound = signature.bind_partial(*args, **kwargs).arguments
            request = bound.get("request")
            owner = bound["self"]
            try:
                principal: Principal = owner.principal_of(getattr(request, "username", None))
                if role is not None:
                    named = str(bound.get(of) or "").strip() or (fallback(owner) if fallback else "")
                    principal.require(_chosen(named), role)
            except RagError as exc:
                return str(exc)
            return None

        if inspect.isgeneratorfunction(fn):

            def generator(*args: Any, **kwargs: Any) -> Any:
                why = reason(args, kwargs)
                if why is None:
                    yield from fn(*args, **kwargs)
                else:
                    yield _refusal(why, refused)

            wrapper: Any = generator
        else:

            def plain(*args: Any, **kwargs: Any) -> Any:
                why = reason(args, kwargs)
                return fn(*args, **kwargs) if why is None else _refusal(why, refused)

            wrapper = plain
        functools.update_wrapper(wrapper, fn)
        wrapper.needs = role.label if role is not None else ANY_USER
        return wrapper  # type: ignore[no-any-return]

    return wrap


def layout(fn: F) -> F:
    """A handler that only shows or hides parts of the page: it reads and changes no data, so needs no login."""
    fn.needs = LAYOUT  # type: ignore[attr-defined]
    return fn


@layout
def hidden() -> Any:
    return gr.update(visible=False)


@layout
def shown() -> Any:
    return gr.update(visible=True)


def _chosen(name: str) -> str:
    if not name:
        raise RagError(
            "choose a collection first (Settings); if there is none, ask an admin for access to one"
        )
    return name


def _refusal(why: str, refused: Callable[[str], Any] | None) -> Any:
    if refused is None:
        raise gr.Error(why, print_exception=False)
    return refused(why)
