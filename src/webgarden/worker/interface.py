"""Which interface an application speaks, WSGI or ASGI, told from the callable itself.

Rules (uvicorn's `--interface auto`, made stricter so a mistake is one line at start, never
a 500 at request time):

* a coroutine function, or an object whose `__call__` is one (Starlette, FastAPI, Django's
  `ASGIHandler`, Quart), is ASGI;
* otherwise its positional parameters decide: three (scope, receive, send) is ASGI, two
  (environ, start_response) is WSGI;
* a callable whose signature says neither (`*args`, or no signature at all) is WSGI, the
  interface webgarden always served, unless the configuration says `asgi`.

An explicit interface that contradicts what the callable plainly is (an async callable of
three parameters served as WSGI, a plain two-parameter function as ASGI) is a load failure
that names the interface to use.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

Kind = Literal["wsgi", "asgi"]


class InterfaceMismatch(Exception):
    """The configuration names an interface the callable plainly does not speak."""


def detect(obj: Any) -> Kind | None:
    """What the callable is plainly, or None when it cannot be told."""
    if not inspect.isclass(obj):
        call = getattr(obj, "__call__", None)  # noqa: B004 (a bound method: no self)
        if inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(call):
            return "asgi"
    count = _positional(obj)  # a class's signature is its __init__'s, without self
    if count == 2:
        return "wsgi"
    if count == 3:
        return "asgi"
    return None


def _positional(callable_: Any) -> int | None:
    """Positional parameters a call passes, or None if it takes *args or has no signature."""
    try:
        signature = inspect.signature(callable_)
    except (TypeError, ValueError):
        return None
    count = 0
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            return None
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def resolve(obj: Any, spec: str, configured: str) -> Kind:
    """The interface to serve `obj` with, given the configured one ("auto", "wsgi", "asgi").
    InterfaceMismatch names the interface to use instead."""
    found = detect(obj)
    if configured == "auto":
        return found or "wsgi"
    if found is not None and found != configured:
        article = "an" if found == "asgi" else "a"
        raise InterfaceMismatch(
            f"{spec!r} is {article} {found.upper()} application ({_shape(found)}), not "
            f"{configured.upper()}: serve it with --interface {found} "
            f'(interface="{found}" in the configuration), or leave it to auto'
        )
    return "asgi" if configured == "asgi" else "wsgi"


def _shape(kind: Kind) -> str:
    return ("async __call__(scope, receive, send)" if kind == "asgi"
            else "__call__(environ, start_response)")
