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
"""

from __future__ import annotations

import asyncio
import datetime
from typing import TYPE_CHECKING

import psutil

from webgarden.aio import background
from webgarden.listener import errors
from webgarden.manager.states import WorkerState

if TYPE_CHECKING:
    from webgarden.manager.pool import AppPool
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
#: Seconds between checks of requests against executionTimeout.
EXECUTION_CHECK_INTERVAL = 0.5


class Triggers:
    def __init__(self, pool: AppPool) -> None:
        self.pool = pool
        self.loop = asyncio.get_event_loop()
        self._handles: list[asyncio.TimerHandle] = []

    # -- pool-level timers --------------------------------------------------------------

    def start(self) -> None:
        self.stop()
        config = self.pool.config
        periodic = config.recycling.periodic_restart
        for seconds in periodic.schedule:
            self._schedule(seconds)
        if periodic.memory or periodic.private_memory:
            self._every(MEMORY_CHECK_INTERVAL, self._check_memory)
        if config.idle_timeout and config.start_mode != "AlwaysRunning":
            self._every(IDLE_CHECK_INTERVAL, self._check_idle)
        if config.execution_timeout:
            self._every(EXECUTION_CHECK_INTERVAL, self._check_execution)

    def stop(self) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()

    def _every(self, interval: float, check: object) -> None:
        def tick() -> None:
            check()  # type: ignore[operator]
            self._handles.append(self.loop.call_later(interval, tick))

        self._handles.append(self.loop.call_later(interval, tick))

    def _schedule(self, seconds_after_midnight: float) -> None:
        now = datetime.datetime.now()
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        at = midnight + datetime.timedelta(seconds=seconds_after_midnight)
        if at <= now:
            at += datetime.timedelta(days=1)

        def fire() -> None:
            self.pool.recycle("Schedule")
            self._schedule(seconds_after_midnight)

        self._handles.append(self.loop.call_later((at - now).total_seconds(), fire))

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

    def _check_execution(self) -> None:
        """executionTimeout: 504 for a request running too long; its worker's stacks are
        logged and it is recycled (it finishes, or is killed at shutdownTimeLimit)."""
        limit = self.pool.config.execution_timeout
        for worker in list(self.pool.workers):
            link = worker.link
            if link is None:
                continue
            late = [ex for ex in link.streams.values()
                    if not ex.done and ex.conn.listener.now - ex.since > limit]
            for ex in late:
                self.pool.events.emit(
                    "request.timeout", pool=self.pool.config.name, pid=worker.pid,
                    method=ex.method, url=ex.target.decode("latin-1"), limit=limit,
                )
                if not ex.started:
                    ex.fail(errors.GATEWAY_TIMEOUT)
                else:
                    ex.conn.abort()
            if late and not worker.retiring and worker.state is WorkerState.READY:
                background(worker.dump_stacks("executionTimeout"))
                self.pool.recycle("ExecutionTimeout", workers=[worker])

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
