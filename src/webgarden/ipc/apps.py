"""How the manager names an application to a worker or a template: one `--app` argument.

    module:callable                          interface and lifespan "auto" (the defaults)
    module:callable?interface=asgi&lifespan=on

A module path never contains "?", so the options cannot be mistaken for part of it. The
argument comes from the server's configuration, never from a worker; the worker checks the
values it is given (an unknown one is a load failure, not a guess).
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Protocol
from urllib.parse import parse_qsl, urlencode

Interface = Literal["wsgi", "asgi", "auto"]
Lifespan = Literal["auto", "on", "off"]
INTERFACES: tuple[Interface, ...] = ("wsgi", "asgi", "auto")
LIFESPANS: tuple[Lifespan, ...] = ("auto", "on", "off")


class AppArgument(NamedTuple):
    spec: str  # "module:callable"
    interface: Interface = "auto"
    lifespan: Lifespan = "auto"


class Application(Protocol):
    """What the argument says of a configured application (`config.sites.ApplicationConfig`)."""

    @property
    def app(self) -> str: ...
    @property
    def interface(self) -> str: ...
    @property
    def lifespan(self) -> str: ...


def app_argument(app: Application) -> str:
    return encode(app.app, app.interface, app.lifespan)


def encode(spec: str, interface: str = "auto", lifespan: str = "auto") -> str:
    options = {k: v for k, v in (("interface", interface), ("lifespan", lifespan)) if v != "auto"}
    return f"{spec}?{urlencode(options)}" if options else spec


def decode(argument: str) -> AppArgument:
    """The parts of an `--app` argument; ValueError names a bad option."""
    spec, _, query = argument.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    interface = options.pop("interface", "auto")
    lifespan = options.pop("lifespan", "auto")
    if options:
        raise ValueError(f"unknown application options {sorted(options)} in {argument!r}")
    if interface not in INTERFACES:
        raise ValueError(f"interface {interface!r} is not one of {', '.join(INTERFACES)}")
    if lifespan not in LIFESPANS:
        raise ValueError(f"lifespan {lifespan!r} is not one of {', '.join(LIFESPANS)}")
    return AppArgument(spec, interface, lifespan)
