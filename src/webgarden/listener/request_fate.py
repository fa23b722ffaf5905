"""What becomes of a pool's requests when a worker fails them (IIS: HTTP.sys's side of the line).

As in IIS, the manager (WAS) never touches a request: the listener owns every request's
fate, and this module is where it is decided, once for every path:

* **A worker's link is lost** (`link_lost`): each request on it that may safely be sent
  again (idempotent, fully received, no response byte sent, not retried before:
  `Exchange.worker_lost`) goes back to the front of the queue; the others get 502, or a
  cut connection if their response had begun. Requests still in the queue are untouched.
* **A request runs past `executionTimeout`** (checked every `EXECUTION_CHECK_INTERVAL`):
  504, or a cut connection if its response had begun. Not a WebSocket: it has no
  execution time, only its worker's pings and, at a drain, `shutdownTimeLimit`.
* **A pool goes offline**: `PoolQueue.go_offline` answers what waits.

The manager then hears only what concerns processes, through the `WorkerWatch` it hands
in: "the link of worker W is lost" and "request N on worker W is late". It decides about
the worker (recycle it, kill it); it never sees the requests.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from webgarden.listener import errors
from webgarden.listener.pool_queue import PoolQueue

if TYPE_CHECKING:
    from webgarden.events import EventLog
    from webgarden.listener.exchange import Exchange
    from webgarden.listener.upstream import WorkerLink

#: Seconds between checks of running requests against executionTimeout (the limit is in
#: whole seconds in the configuration: a 504 comes at most half a second late).
EXECUTION_CHECK_INTERVAL = 0.5


class WorkerWatch(Protocol):
    """What the manager hears from the listener about a pool's workers."""

    def link_lost(self, link: WorkerLink) -> None: ...

    def request_late(self, link: WorkerLink, sid: int) -> None: ...


class RequestFate:
    """One pool's requests on their workers: the listener's decisions about them."""

    def __init__(self, queue: PoolQueue, events: EventLog) -> None:
        self.queue = queue
        self.events = events
        self.watch: WorkerWatch | None = None
        self.links: dict[WorkerLink, int] = {}  # links that took requests -> worker pid
        self.execution_timeout = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pool(self) -> str:
        return self.queue.name

    def serve(self, link: WorkerLink, pid: int) -> None:
        """A worker is in service: it takes the queue's requests from now on."""
        self.links[link] = pid
        self.queue.add_upstream(link)

    def withdraw(self, link: WorkerLink) -> None:
        """A worker leaves service (draining, orphaned): no new requests; the ones it runs
        stay watched until they end."""
        self.queue.remove_upstream(link)

    # -- a lost worker ------------------------------------------------------------------

    def link_lost(self, link: WorkerLink, lost: list[Exchange]) -> None:
        """The worker's socket closed with `lost` in flight: retry once, or 502."""
        pid = self.links.pop(link, None)
        self.queue.remove_upstream(link)
        for ex in reversed(lost):  # requeued to the front: reversed keeps their order
            if ex.worker_lost():
                self._emit("request.retry", ex, pid)
                self.queue.requeue(ex)
            elif not ex.abandoned:
                self._emit("request.failed", ex, pid, status=502)
        if self.watch is not None:
            self.watch.link_lost(link)

    # -- executionTimeout -----------------------------------------------------------------

    def set_execution_timeout(self, seconds: float) -> None:
        """Arm (or, with 0, disarm) the check of running requests against the limit."""
        self.execution_timeout = seconds
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if seconds:
            self._timer = asyncio.get_event_loop().call_later(
                EXECUTION_CHECK_INTERVAL, self._check_late)

    def _check_late(self) -> None:
        self._timer = asyncio.get_event_loop().call_later(
            EXECUTION_CHECK_INTERVAL, self._check_late)
        limit = self.execution_timeout
        for link, pid in list(self.links.items()):
            # A WebSocket is exempt: it lives as long as its client wants (its worker's
            # pings end a dead one), and a drain gives it shutdownTimeLimit, then 1012.
            late = [(sid, ex) for sid, ex in link.streams.items()
                    if not (ex.done or ex.abandoned) and ex.websocket is None
                    and ex.conn.listener.now - ex.since > limit]
            for sid, ex in late:
                self._emit("request.timeout", ex, pid, limit=limit)
                if ex.started:
                    ex.conn.abort()  # the answer has begun: it can only be cut
                else:
                    ex.fail(errors.GATEWAY_TIMEOUT)
                if self.watch is not None:
                    self.watch.request_late(link, sid)

    def close(self) -> None:
        self.set_execution_timeout(0)

    def _emit(self, event: str, ex: Exchange, pid: int | None, **fields: object) -> None:
        self.events.emit(event, pool=self.pool, pid=pid, method=ex.method,
                         url=ex.target.decode("latin-1"), **fields)
