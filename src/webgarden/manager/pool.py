"""An application pool (IIS: an app pool under WAS): its workers, kept at their target.

Supervision converges, event by event: whenever a worker exits or the pool starts,
`converge` spawns until the pool has `maxProcesses` live workers. A worker that exits
before it was ever ready is respawned after a growing delay (`RESTART_BACKOFF`), so a
broken deployment does not spin the CPU; a worker that served and then died is replaced
at once.

Requests in flight on a worker that dies are handed back to the listener's queue when
they can safely be sent again (see `Exchange.worker_lost`); the others get 502. Requests
still in the queue are never touched: they wait for the replacement.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from webgarden.config.model import ApplicationConfig, PoolConfig
from webgarden.listener.pool_queue import PoolQueue
from webgarden.manager.events import EventLog
from webgarden.manager.process import WorkerProcess
from webgarden.manager.states import PoolState, WorkerState, next_pool_state

if TYPE_CHECKING:
    from webgarden.listener.exchange import Exchange

#: Delay before respawning a worker whose predecessor never became ready: first, cap.
RESTART_BACKOFF = (0.1, 10.0)


class AppPool:
    def __init__(
        self,
        config: PoolConfig,
        apps: list[ApplicationConfig],
        queue: PoolQueue,
        events: EventLog,
    ) -> None:
        self.config = config
        self.app_specs = [app.app for app in apps]
        self.queue = queue
        self.events = events
        self.state = PoolState.STOPPED
        self.workers: list[WorkerProcess] = []
        self.loop = asyncio.get_event_loop()
        self.failed_starts = 0  # consecutive workers that exited before they were ready
        self.ever_ready = False
        self.start_error: str | None = None
        self.started = asyncio.Event()  # set when the first worker is ready, or start failed
        self.all_exited = asyncio.Event()
        self._respawn: asyncio.TimerHandle | None = None

    def transition(self, event: str) -> None:
        self.state = next_pool_state(self.state, event)
        self.events.emit("pool.state", pool=self.config.name, state=self.state.value)

    def start(self) -> None:
        self.transition("start")
        self.converge()

    def converge(self) -> None:
        if self.state not in (PoolState.STARTING, PoolState.STARTED) or self._respawn:
            return
        live = [
            w for w in self.workers
            if w.state in (WorkerState.SPAWNING, WorkerState.STARTING, WorkerState.READY)
        ]
        for _ in range(self.config.max_processes - len(live)):
            worker = WorkerProcess(self)
            self.workers.append(worker)
            self.loop.create_task(worker.spawn())

    def _respawn_later(self) -> None:
        first, cap = RESTART_BACKOFF
        delay = min(first * 2 ** (self.failed_starts - 1), cap)

        def fire() -> None:
            self._respawn = None
            self.converge()

        self._respawn = self.loop.call_later(delay, fire)

    # -- callbacks from workers and links ---------------------------------------------

    def on_ready(self, worker: WorkerProcess) -> None:
        self.failed_starts = 0
        self.ever_ready = True
        if worker.link is not None:
            self.queue.add_upstream(worker.link)
        if self.state is PoolState.STARTING:
            self.transition("started")
            self.started.set()

    def on_link_free(self, worker: WorkerProcess) -> None:
        if worker.state is WorkerState.DRAINING:
            worker.stop_if_idle()
        else:
            self.queue.pump()

    def on_link_lost(self, worker: WorkerProcess, lost: list[Exchange]) -> None:
        if worker.link is not None:
            self.queue.remove_upstream(worker.link)
        for ex in reversed(lost):
            if ex.worker_lost():
                self.events.emit(
                    "request.retry", pool=self.config.name, pid=worker.pid, method=ex.method,
                    url=ex.target.decode("latin-1"),
                )
                self.queue.requeue(ex)
            elif not ex.abandoned:
                self.events.emit(
                    "request.failed", pool=self.config.name, pid=worker.pid, status=502,
                    method=ex.method, url=ex.target.decode("latin-1"),
                )

    def on_worker_exit(self, worker: WorkerProcess) -> None:
        self.workers.remove(worker)
        if worker.ready_at is None:
            self.failed_starts += 1
            if not self.ever_ready and worker.load_error and self.state is PoolState.STARTING:
                self.start_error = worker.load_error
                self.started.set()
                return
        if not self.workers and self.state is PoolState.STOPPING:
            self.all_exited.set()
        if self.state in (PoolState.STARTING, PoolState.STARTED):
            if worker.ready_at is None:
                self._respawn_later()
            else:
                self.converge()

    # -- stopping ---------------------------------------------------------------------

    async def stop(self, timeout: float) -> None:
        """Drain every worker; kill those still alive after `timeout` seconds."""
        if self.state in (PoolState.STARTING, PoolState.STARTED):
            self.transition("stop")
        if self._respawn is not None:
            self._respawn.cancel()
            self._respawn = None
        if not self.workers:
            self.all_exited.set()
        for worker in list(self.workers):
            worker.drain()
        try:
            await asyncio.wait_for(self.all_exited.wait(), timeout)
        except TimeoutError:
            for worker in list(self.workers):
                worker.kill()
            await asyncio.wait_for(self.all_exited.wait(), 5.0)
        if self.state is PoolState.STOPPING:
            self.transition("stopped")
