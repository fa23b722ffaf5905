"""ASGI lifespan for one application in one worker (uvicorn's `--lifespan auto|on|off`).

Rules:

* Startup runs in each worker before it says READY, never in a smart-spawning template
  (which only imports): a connection opened at startup belongs to one process.
* `lifespan.startup.failed` is a load failure carrying the app's message, in every mode;
  so is an exception before startup completes with `lifespan="on"`. With "auto" such an
  exception means the app does not do lifespan (Django's handler raises on the scope
  type): logged once, and the worker serves without it.
* Shutdown runs when the worker stops (STOP: a drain, a recycle, the server's stop); the
  manager kills a worker still running after `shutdownTimeLimit`, so that is its bound.
* `state` is the dict the app fills at startup; each request's scope gets a shallow copy.

The phases are data (STYLE.md 2): `Phase`, and the `_NEXT` table of what each message or
event moves it to; anything else is an error that names the phase and the event.
"""

from __future__ import annotations

import asyncio
import logging
from enum import Enum
from typing import Any

from webgarden.worker.asgi import ASGI_VERSION, ASGIApp, Message

log = logging.getLogger("webgarden.worker")


class Phase(Enum):
    IDLE = "idle"
    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"  # the app raised before startup completed, in "auto" mode


_NEXT: dict[tuple[Phase, str], Phase] = {
    (Phase.IDLE, "startup"): Phase.STARTING,
    (Phase.STARTING, "lifespan.startup.complete"): Phase.STARTED,
    (Phase.STARTING, "lifespan.startup.failed"): Phase.FAILED,
    (Phase.STARTING, "raised"): Phase.FAILED,
    (Phase.STARTING, "unsupported"): Phase.UNSUPPORTED,
    (Phase.STARTING, "returned"): Phase.UNSUPPORTED,
    (Phase.STARTED, "shutdown"): Phase.STOPPING,
    (Phase.STARTED, "returned"): Phase.STOPPED,
    (Phase.STARTED, "raised"): Phase.FAILED,
    (Phase.STOPPING, "lifespan.shutdown.complete"): Phase.STOPPED,
    (Phase.STOPPING, "lifespan.shutdown.failed"): Phase.FAILED,
    (Phase.STOPPING, "raised"): Phase.FAILED,
    (Phase.STOPPING, "returned"): Phase.STOPPED,
}


class LifespanError(Exception):
    """An illegal lifespan message or event for the current phase."""


class LifespanFailed(Exception):
    """Startup failed: the message is the app's, for the load failure's one line."""


class Lifespan:
    def __init__(self, app: ASGIApp, spec: str, mode: str, state: dict[str, Any]) -> None:
        self.app = app
        self.spec = spec
        self.mode = mode  # "auto" or "on"
        self.state = state
        self.phase = Phase.IDLE
        self.message = ""  # the app's failure message
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _move(self, event: str) -> None:
        try:
            self.phase = _NEXT[self.phase, event]
        except KeyError:
            raise LifespanError(
                f"lifespan of {self.spec}: {event!r} is not allowed while {self.phase.value}"
            ) from None
        self._changed.set()

    async def startup(self) -> None:
        """Run the app's startup; LifespanFailed carries its message."""
        self._move("startup")
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self._inbox.put({"type": "lifespan.startup"})
        if await self._leave(Phase.STARTING) is Phase.FAILED:
            if "\n" in self.message.strip():  # a traceback (Starlette sends one): log it,
                log.error("lifespan startup of %s failed: %s", self.spec, self.message)
            raise LifespanFailed(  # and give the load failure its last line
                f"lifespan startup of {self.spec} failed: {last_line(self.message)}")
        if self.phase is Phase.UNSUPPORTED:
            log.info("%s does not support ASGI lifespan; serving it without", self.spec)

    async def shutdown(self) -> None:
        if self.phase is not Phase.STARTED:
            return
        self._move("shutdown")
        await self._inbox.put({"type": "lifespan.shutdown"})
        if await self._leave(Phase.STOPPING) is Phase.FAILED:
            log.error("lifespan shutdown of %s failed: %s", self.spec, self.message)

    async def _leave(self, phase: Phase) -> Phase:
        """Wait until the app's messages move the lifespan out of `phase`; the new phase."""
        while self.phase is phase:
            self._changed.clear()
            await self._changed.wait()
        return self.phase

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if self.phase is Phase.STARTING and self.mode == "auto":
                self._move("unsupported")
                return
            self.message = f"{type(exc).__name__}: {exc}"
            log.exception("lifespan of %s raised", self.spec)
            if self.phase in (Phase.STARTING, Phase.STARTED, Phase.STOPPING):
                self._move("raised")
            if not isinstance(exc, Exception):
                raise
        else:
            if self.phase is Phase.STARTING and self.mode == "on":
                self.message = "the application returned without completing startup"
                self._move("raised")
            elif self.phase in (Phase.STARTING, Phase.STARTED, Phase.STOPPING):
                self._move("returned")

    async def _receive(self) -> Message:
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if not isinstance(kind, str) or not kind.startswith("lifespan."):
            raise LifespanError(f"lifespan of {self.spec}: unexpected message {kind!r}")
        if kind.endswith(".failed"):
            self.message = str(message.get("message", "")) or "(no message)"
        self._move(kind)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"
