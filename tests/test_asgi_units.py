"""The sans-IO parts of ASGI hosting: interface detection, the --app argument, the
lifespan phase table. No sockets."""

from __future__ import annotations

import asyncio
import functools

import pytest

from webgarden.ipc import apps
from webgarden.worker.interface import InterfaceMismatch, detect, resolve
from webgarden.worker.lifespan import Lifespan, LifespanError, LifespanFailed, Phase


async def asgi_function(scope, receive, send) -> None:
    pass


def wsgi_function(environ, start_response) -> list[bytes]:
    return []


class AsgiInstance:
    async def __call__(self, scope, receive, send) -> None:
        pass


class WsgiInstance:
    def __call__(self, environ, start_response) -> list[bytes]:
        return []


class WsgiClass:  # instantiated per request: the class's iterable instance is the response
    def __init__(self, environ, start_response) -> None:
        pass


def test_the_callables_shape_tells_its_interface() -> None:
    assert detect(asgi_function) == "asgi" and detect(AsgiInstance()) == "asgi"
    assert detect(wsgi_function) == "wsgi" and detect(WsgiInstance()) == "wsgi"
    assert detect(WsgiClass) == "wsgi"
    assert detect(lambda *args: None) is None  # cannot be told: WSGI unless configured
    assert detect(functools.partial(asgi_function)) == "asgi"  # a partial of a coroutine fn


def test_frameworks_are_told_apart_without_being_configured() -> None:
    fastapi = pytest.importorskip("fastapi")
    flask = pytest.importorskip("flask")
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler

    assert detect(fastapi.FastAPI()) == "asgi"
    assert detect(flask.Flask("x")) == "wsgi"
    assert detect(ASGIHandler.__new__(ASGIHandler)) == "asgi"
    assert detect(WSGIHandler.__new__(WSGIHandler)) == "wsgi"


def test_auto_falls_back_to_wsgi_and_a_contradiction_names_the_interface_to_use() -> None:
    assert resolve(lambda *args: None, "m:x", "auto") == "wsgi"
    assert resolve(lambda *args: None, "m:x", "asgi") == "asgi"  # the configuration decides
    with pytest.raises(InterfaceMismatch, match="serve it with --interface wsgi"):
        resolve(wsgi_function, "m:wsgi_function", "asgi")
    with pytest.raises(InterfaceMismatch, match=r"is an ASGI application .* --interface asgi"):
        resolve(asgi_function, "m:asgi_function", "wsgi")


def test_the_app_argument_round_trips_and_refuses_unknown_options() -> None:
    assert apps.encode("m:app") == "m:app"
    argument = apps.encode("m:app", "asgi", "on")
    assert apps.decode(argument) == ("m:app", "asgi", "on")
    assert apps.decode("m:app") == ("m:app", "auto", "auto")
    for bad in ("m:app?interface=cgi", "m:app?lifespan=maybe", "m:app?user=root", "m:app?x"):
        with pytest.raises(ValueError):
            apps.decode(bad)


def _run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def test_lifespan_moves_through_its_phases_and_carries_state() -> None:
    async def app(scope, receive, send) -> None:
        assert (await receive())["type"] == "lifespan.startup"
        scope["state"]["db"] = "pool"
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})

    async def main() -> tuple[Phase, Phase, dict]:
        state: dict = {}
        lifespan = Lifespan(app, "m:app", "on", state)
        await lifespan.startup()
        started = lifespan.phase
        await lifespan.shutdown()
        return started, lifespan.phase, state

    assert _run(main()) == (Phase.STARTED, Phase.STOPPED, {"db": "pool"})


def test_a_failed_startup_carries_the_apps_last_line_and_auto_tolerates_no_lifespan() -> None:
    async def failing(scope, receive, send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed",
                    "message": "Traceback ...\n  File x\nOSError: no database"})

    async def raising(scope, receive, send) -> None:
        raise ValueError("http only")

    async def main() -> list[str]:
        said = []
        try:
            await Lifespan(failing, "m:failing", "auto", {}).startup()
        except LifespanFailed as exc:
            said.append(str(exc))
        unsupported = Lifespan(raising, "m:raising", "auto", {})
        await unsupported.startup()
        said.append(unsupported.phase.value)
        try:
            await Lifespan(raising, "m:raising", "on", {}).startup()
        except LifespanFailed as exc:
            said.append(str(exc))
        return said

    assert _run(main()) == [
        "lifespan startup of m:failing failed: OSError: no database",
        "unsupported",
        "lifespan startup of m:raising failed: ValueError: http only",
    ]


def test_a_lifespan_message_out_of_turn_is_an_error_naming_the_phase() -> None:
    async def app(scope, receive, send) -> None:
        await send({"type": "lifespan.shutdown.complete"})  # before startup completed

    async def main() -> str:
        lifespan = Lifespan(app, "m:app", "on", {})
        with pytest.raises(LifespanFailed) as failed:
            await lifespan.startup()
        return str(failed.value)

    message = _run(main())
    assert "'lifespan.shutdown.complete' is not allowed while starting" in message
    assert LifespanError.__name__ in message
