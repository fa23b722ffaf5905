"""One application pool's request queue in the listener (IIS: the HTTP.sys request queue).

Rules:

* FIFO, bounded by the pool's `queueLength` (IIS default 1000). A request that finds it
  full is refused with 503 `QueueFull`; a request already queued is never dropped, except
  when its own client leaves (`remove`).
* Pull model: a request goes to a worker only while that worker runs fewer requests than
  the capacity it announced, and only to a worker that hosts the request's application
  (during a recycle after a configuration change, old and new workers may differ). Of
  the workers with room, the least busy gets it (a web garden spreads load; one worker
  takes everything up to its capacity).
* While no worker is in service (starting, restarting, recycling), requests wait here.
* A request whose worker died before answering, and that may be safely sent again, goes
  back to the *front* (`requeue`): it was first in line once already.
* Offline (`go_offline`: rapid-fail, a CPU-limit shutdown, an operator's stop): every
  request, waiting or new, is refused with the pool's page, or a reset at TcpLevel. The
  queue answers its waiting requests itself, so no caller has its own copy of that loop.
  A refused request needs only `fail(page)` and `conn.abort()`.

The queue knows workers only through the `Upstream` protocol, so it is tested without
processes or sockets.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, Protocol

from webgarden.listener import errors

Queued = Any  # a request, as far as the queue is concerned


class Upstream(Protocol):
    """What the queue needs of a worker link."""

    @property
    def inflight(self) -> int: ...

    @property
    def capacity(self) -> int: ...

    def serves(self, request: Queued) -> bool: ...

    def dispatch(self, request: Queued) -> None: ...


class PoolQueue:
    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.waiting: collections.deque[Queued] = collections.deque()
        self.upstreams: list[Upstream] = []  # workers in service, in the order they came
        self.offline: errors.ErrorPage | None = None  # set: every request gets this at once
        self.reset_when_offline = False  # TcpLevel: reset the connection instead of a page
        self.rejected = 0  # requests refused with QueueFull, since start
        self.when_empty: Callable[[], None] | None = None  # called once the queue empties
        self.on_demand: Callable[[], None] | None = None  # a request waits, no worker serves

    def submit(self, request: Queued) -> errors.ErrorPage | None:
        """Dispatch or enqueue; an error page when the request must be refused."""
        if self.offline is not None:
            return self.offline
        if not self.waiting:
            upstream = self._free(request)
            if upstream is not None:
                upstream.dispatch(request)
                return None
        if len(self.waiting) >= self.limit:
            self.rejected += 1
            return errors.QUEUE_FULL
        self.waiting.append(request)
        if not self.upstreams and self.on_demand is not None:
            self.on_demand()
        return None

    def go_offline(self, page: errors.ErrorPage, reset: bool = False) -> int:
        """Refuse every request with `page` from now on (IIS: a stopped pool's 503), and
        answer the ones waiting now, each once; with `reset` (loadBalancerCapabilities
        TcpLevel) their connections are reset instead. How many were answered."""
        self.offline = page
        self.reset_when_offline = reset
        refused = list(self.waiting)
        self.waiting.clear()
        for request in refused:
            self._refuse(request)
        self._check_empty()
        return len(refused)

    def go_online(self) -> None:
        self.offline = None
        self.reset_when_offline = False

    def _refuse(self, request: Queued) -> None:
        assert self.offline is not None
        if self.reset_when_offline:
            request.conn.abort()
        else:
            request.fail(self.offline)

    def requeue(self, request: Queued) -> None:
        """A request to send again after its worker died: it goes first. An offline pool
        refuses it instead, as it would a new request."""
        if self.offline is not None:
            self._refuse(request)
            return
        self.waiting.appendleft(request)
        self.pump()

    def remove(self, request: Queued) -> bool:
        try:
            self.waiting.remove(request)
        except ValueError:
            return False
        self._check_empty()
        return True

    def _check_empty(self) -> None:
        if not self.waiting and self.when_empty is not None:
            callback, self.when_empty = self.when_empty, None
            callback()

    def _free(self, request: Queued) -> Upstream | None:
        best: Upstream | None = None
        best_load = 0
        for upstream in self.upstreams:
            load = upstream.inflight
            if (
                load < upstream.capacity
                and (best is None or load < best_load)
                and upstream.serves(request)
            ):
                best, best_load = upstream, load
        return best

    def pump(self) -> None:
        """Give waiting requests to workers with room, in order."""
        waiting = self.waiting
        while waiting:
            upstream = self._free(waiting[0])
            if upstream is None:
                return  # first come, first served: the head of the line waits for its worker
            upstream.dispatch(waiting.popleft())
        self._check_empty()

    def add_upstream(self, upstream: Upstream) -> None:
        self.upstreams.append(upstream)
        self.pump()

    def remove_upstream(self, upstream: Upstream) -> None:
        if upstream in self.upstreams:
            self.upstreams.remove(upstream)

    @property
    def idle(self) -> bool:
        return not self.waiting and all(u.inflight == 0 for u in self.upstreams)
