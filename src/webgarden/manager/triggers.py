"""When a pool's workers are recycled or shut down (IIS: periodicRestart, idleTimeout).

Every trigger ends in the pool's one recycle path (`AppPool.recycle`), with its IIS reason:

| reason          | what                                               | IIS event |
|-----------------|----------------------------------------------------|-----------|
| Time            | a worker `periodicRestart/@time` old               | 5074      |
| Requests        | a worker served `periodicRestart/@requests`        | 5075      |
| Schedule        | a time of day in `periodicRestart/schedule`        | 5076      |
| Memory          | a worker's virtual memory above `@memory` KB       | 5077      |
| PrivateMemory   | a worker's private memory above `@privateMemory` KB | 5117     |
| IsapiUnhealthy  | the application asked (`webgarden.worker.request_recycle`) | 2299 |
| OnDemand        | `webgarden recycle apppool`                        |           |
| ConfigChange    | the pool's configuration changed                   |           |

Private memory is psutil's USS (unique set size: the pages only this process maps, what
the system gets back when it exits); virtual memory is the VMS. Both are sampled every
`MEMORY_CHECK_INTERVAL` seconds, only for pools that set a limit.

Idle shutdown (`processModel/@idleTimeout`): a worker with no request in flight for that
long is stopped (event 5186) unless the pool is `AlwaysRunning`; the next request waits
in the queue while a worker starts on demand.

`start` arms the timers from the pool's configuration *now*, after cancelling every one
it armed before: the pool calls it from its one configuration path (`AppPool.apply`), so
a limit a reload adds takes effect and a schedule it removes leaves no timer. `armed`
names what is armed, for `webgarden list apppools`.

(`executionTimeout` is the listener's: `listener.request_fate`.)
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import psutil

from webgarden.manager.states import WorkerState

if TYPE_CHECKING:
    from webgarden.config.model import PoolConfig
    from webgarden.manager.process import WorkerProcess

RECYCLE_EVENTS: dict[str, int | None] = {
    "Time": 5074,
    "Requests": 5075,
    "Schedule": 5076,
    "Memory": 5077,
    "PrivateMemory": 5117,
    "IsapiUnhealthy": 2299,
    "OnDemand": None,
    "ConfigChange": None,
    "ExecutionTimeout": None,  # webgarden's executionTimeout
}

#: Seconds between memory samples of a pool's workers (when it sets a memory limit).
MEMORY_CHECK_INTERVAL = 1.0
#: Seconds between idle checks; idleTimeout has a granularity of a minute anyway.
IDLE_CHECK_INTERVAL = 1.0


class TriggerTarget(Protocol):
    """What the triggers need of their pool, and how they report to it."""

    config: PoolConfig
    workers: list[WorkerProcess]

    def recycle(self, reason: str, workers: list[WorkerProcess] | None = None,
                **fields: object) -> None: ...
    def idle_shutdown(self, worker: WorkerProcess) -> None: ...


class Triggers:
    def __init__(self, pool: TriggerTarget) -> None:
        self.pool = pool
        self.loop = asyncio.get_event_loop()
        self._handles: list[asyncio.TimerHandle] = []
        self.armed: list[str] = []  # what is armed, as the configuration says it

    # -- pool-level timers --------------------------------------------------------------

    def start(self) -> None:
        self.stop()
        config = self.pool.config
        periodic = config.recycling.periodic_restart
        for seconds in periodic.schedule:
            self._schedule(seconds)
            self.armed.append(f"schedule {_clock(seconds)}")
        if periodic.memory:
            self.armed.append(f"memory {periodic.memory} KB")
        if periodic.private_memory:
            self.armed.append(f"privateMemory {periodic.private_memory} KB")
        if periodic.memory or periodic.private_memory:
            self._every(MEMORY_CHECK_INTERVAL, self._check_memory)
        if config.idle_timeout and config.start_mode != "AlwaysRunning":
            self._every(IDLE_CHECK_INTERVAL, self._check_idle)
            self.armed.append(f"idleTimeout {_clock(config.idle_timeout)}")
        if periodic.time:
            self.armed.append(f"time {_clock(periodic.time)}")
        if periodic.requests:
            self.armed.append(f"requests {periodic.requests}")

    def stop(self) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        self.armed.clear()

    def _every(self, interval: float, check: Callable[[], None]) -> None:
        # One handle, replaced in place: the list does not grow with every tick.
        slot = len(self._handles)

        def tick() -> None:
            check()
            self._handles[slot] = self.loop.call_later(interval, tick)

        self._handles.append(self.loop.call_later(interval, tick))

    def _schedule(self, seconds_after_midnight: float) -> None:
        """A recycle at this time of day, every day (the wall clock: a time of day is)."""
        slot = len(self._handles)

        def fire() -> None:
            self.pool.recycle("Schedule")
            self._handles[slot] = self._next(seconds_after_midnight, fire)

        self._handles.append(self._next(seconds_after_midnight, fire))

    def _next(self, seconds_after_midnight: float, fire: Callable[[], None]
              ) -> asyncio.TimerHandle:
        now = datetime.datetime.now()
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        at = midnight + datetime.timedelta(seconds=seconds_after_midnight)
        if at <= now:
            at += datetime.timedelta(days=1)
        return self.loop.call_later((at - now).total_seconds(), fire)

    def _check_memory(self) -> None:
        periodic = self.pool.config.recycling.periodic_restart
        for worker in self._serving():
            try:
                process = psutil.Process(worker.pid)
                vms_kb = process.memory_info().vms // 1024
                uss_kb = process.memory_full_info().uss // 1024 if periodic.private_memory else 0
            except (psutil.Error, OSError):
                continue
            if periodic.memory and vms_kb > periodic.memory:
                self.pool.recycle("Memory", workers=[worker], measured_kb=vms_kb)
            elif periodic.private_memory and uss_kb > periodic.private_memory:
                self.pool.recycle("PrivateMemory", workers=[worker], measured_kb=uss_kb)

    def _check_idle(self) -> None:
        limit = self.pool.config.idle_timeout
        now = self.loop.time()
        for worker in self._serving():
            link = worker.link
            if link is not None and link.inflight == 0 and now - worker.last_active >= limit:
                self.pool.idle_shutdown(worker)

    def _serving(self) -> list[WorkerProcess]:
        return [
            w for w in self.pool.workers if w.state is WorkerState.READY and not w.retiring
        ]

    # -- per-worker triggers ------------------------------------------------------------

    def worker_ready(self, worker: WorkerProcess) -> None:
        lifetime = self.pool.config.recycling.periodic_restart.time
        if lifetime:

            def old_enough() -> None:
                if worker.state is WorkerState.READY and not worker.retiring:
                    self.pool.recycle("Time", workers=[worker])

            worker.add_timer(self.loop.call_later(lifetime, old_enough))

    def request_done(self, worker: WorkerProcess) -> None:
        limit = self.pool.config.recycling.periodic_restart.requests
        link = worker.link
        if limit and link is not None and link.served >= limit and not worker.retiring:
            self.pool.recycle("Requests", workers=[worker], served=link.served)


def _clock(seconds: float) -> str:
    """A time span as the configuration writes it (hh:mm:ss)."""
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
