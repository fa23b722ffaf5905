"""An application pool (IIS: an app pool under WAS): its workers, kept at their target.

Supervision converges, event by event: whenever a worker exits or the pool starts,
`converge` spawns until the pool has `maxProcesses` live workers that are not retiring.

Recycling (one path for every trigger): `recycle` marks the current workers retiring and
converges, which starts their replacements; each replacement that says READY takes new
requests and retires one old worker, which drains (finishes what it has, up to
`shutdownTimeLimit`) and exits. A replacement that never gets ready leaves the old worker
serving: a broken deployment does not take the pool down. A worker that exits
before it was ever ready is respawned after a growing delay (`RESTART_BACKOFF`), so a
broken deployment does not spin the CPU; a worker that served and then died is replaced
at once.

Requests in flight on a worker that dies are handed back to the listener's queue when
they can safely be sent again (see `Exchange.worker_lost`); the others get 502. Requests
still in the queue are never touched: they wait for the replacement.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import TYPE_CHECKING

from webgarden.aio import background
from webgarden.config.model import ApplicationConfig, PoolConfig
from webgarden.config.pools import RECYCLE_REASONS
from webgarden.events import EventLog
from webgarden.listener import errors
from webgarden.listener.pool_queue import PoolQueue
from webgarden.manager.cpu import CpuGovernor
from webgarden.manager.identity import Identity, IdentityError, access_problem, resolve
from webgarden.manager.process import WorkerProcess
from webgarden.manager.states import PoolState, WorkerState, next_pool_state
from webgarden.manager.template import Template, template_key
from webgarden.manager.triggers import RECYCLE_EVENTS, Triggers

if TYPE_CHECKING:
    from webgarden.listener.exchange import Exchange

_STARTING_OR_READY = frozenset({WorkerState.SPAWNING, WorkerState.STARTING, WorkerState.READY})

#: Delay before respawning a worker whose predecessor never became ready: first, cap.
RESTART_BACKOFF = (0.1, 10.0)


def resolve_identity(config: PoolConfig) -> Identity | None:
    """The pool's worker identity, checked to be usable (IdentityError: a line for the user)."""
    identity_type = getattr(config, "identity_type", "ApplicationPoolIdentity")
    identity = resolve(config.name, identity_type, getattr(config, "user_name", ""))
    if identity is not None:
        problem = access_problem(
            identity, sys.executable, [sys.prefix, os.getcwd(), *config.python_path]
        )
        if problem is not None:
            raise IdentityError(
                f"pool {config.name!r} runs its workers as {identity.user!r}, but {problem}; "
                "give the pool a user that can (processModel identityType=\"SpecificUser\" "
                "userName=...), or install Python and the application where it can read them"
            )
    return identity


class AppPool:
    #: False when the server cannot be a child subreaper: forked workers would not be its
    #: children, so every pool spawns directly (set once, at start).
    can_fork = True

    def __init__(
        self,
        config: PoolConfig,
        apps: list[ApplicationConfig],
        queue: PoolQueue,
        events: EventLog,
    ) -> None:
        self.config = config
        self.apps = apps
        self.queue = queue
        self.events = events
        self.identity: Identity | None = resolve_identity(config)
        self.state = PoolState.STOPPED
        self.workers: list[WorkerProcess] = []
        self.loop = asyncio.get_event_loop()
        self.failed_starts = 0  # consecutive workers that exited before they were ready
        self.ever_ready = False
        self.start_error: str | None = None
        self.failures: list[float] = []  # loop times of recent crashes and health failures
        self.triggers = Triggers(self)
        self.cpu = CpuGovernor(self)
        self.spawned = 0  # workers started so far (round robin over the affinity mask)
        self.compression = ""  # the server's compression rules, JSON, for new workers
        # Whether the pool wants workers now: always when AlwaysRunning; when OnDemand, from
        # the first request until the last worker shuts down for being idle.
        self.demand = config.start_mode == "AlwaysRunning"
        queue.on_demand = self._on_demand
        self.started = asyncio.Event()  # set when the first worker is ready, or start failed
        self.all_exited = asyncio.Event()
        self._respawn: asyncio.TimerHandle | None = None
        self.template: Template | None = None  # smart spawning: what new workers fork from
        self.direct_reason: str | None = None  # why this configuration spawns directly

    def transition(self, event: str) -> None:
        self.state = next_pool_state(self.state, event)
        self.events.emit("pool.state", pool=self.config.name, state=self.state.value)

    def start(self) -> None:
        self.transition("start")
        self.queue.take_offline(None)
        self.failures.clear()
        self.started.clear()
        self.all_exited.clear()
        self.demand = self.config.start_mode == "AlwaysRunning" or bool(self.queue.waiting)
        self.triggers.start()
        self.cpu.start()
        if not self.demand:  # OnDemand: started, with no worker until the first request
            self.transition("started")
            self.started.set()
        self.converge()

    def _on_demand(self) -> None:
        """A request is waiting and no worker serves: start them (IIS: demand start)."""
        if not self.demand and self.state in (PoolState.STARTING, PoolState.STARTED):
            self.demand = True
            self.events.emit("pool.demand_start", pool=self.config.name)
            self.converge()

    def converge(self) -> None:
        if self.state not in (PoolState.STARTING, PoolState.STARTED) or self._respawn:
            return
        if not self.demand:
            return
        live = [w for w in self.workers if self._holds_a_place(w)]
        for _ in range(self.config.max_processes - len(live)):
            worker = WorkerProcess(self, self.template_for_spawn())
            self.workers.append(worker)
            self.loop.create_task(worker.spawn())

    # -- smart spawning ---------------------------------------------------------------

    def template_for_spawn(self) -> Template | None:
        """The template a new worker forks from, started if need be; None: spawn directly."""
        if (self.config.spawn_method != "smart" or self.direct_reason is not None
                or not AppPool.can_fork):
            return None
        current = self.template
        if (current is None or current.failed or current.stale or current.retired
                or current.key != template_key(self)):
            if current is not None:
                current.retire()
            current = self.template = Template(self)
            current.start()
        current.users += 1
        return current

    def spawn_directly(self, reason: str) -> None:
        """Smart spawning cannot work for this configuration (until it changes)."""
        if self.direct_reason is None:
            self.direct_reason = reason
            self.events.emit("template.unforkable", pool=self.config.name, reason=reason,
                             action="workers are spawned directly")

    def popen(self, argv: list[str], pass_fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
        """Start one of the pool's processes (a worker, a template): `argv` plus the pool's
        Python path, as the pool's identity."""
        for path in (os.getcwd(), *self.config.python_path):
            argv = [*argv, "--path", path]
        switch: dict[str, object] = {}
        if self.identity is not None:
            switch = {"user": self.identity.uid, "group": self.identity.gid,
                      "extra_groups": list(self.identity.groups)}
        proc: subprocess.Popen[bytes] = subprocess.Popen(
            argv, pass_fds=pass_fds, stdin=subprocess.DEVNULL,
            **switch,  # type: ignore[call-overload]
        )
        return proc

    def on_template_exit(self, template: Template) -> None:
        if self.template is template:
            self.template = None

    def _renew_template(self) -> None:
        """After a recycle's replacements have forked, the next generation gets a fresh
        template (started once a replacement is ready, so it does not compete with them)."""
        if self.template is not None:
            self.template.retire()
            self.template = None

    def _holds_a_place(self, worker: WorkerProcess) -> bool:
        """Whether a worker counts toward maxProcesses. A retiring one does not: its
        replacement starts at once, except with disallowOverlappingRotation, when it holds
        its place until it has exited."""
        if not self.config.recycling.disallow_overlapping_rotation:
            return not worker.retiring and worker.state in _STARTING_OR_READY
        return worker.state in _STARTING_OR_READY or worker.state is WorkerState.DRAINING

    def _respawn_later(self) -> None:
        first, cap = RESTART_BACKOFF
        delay = min(first * 2 ** (self.failed_starts - 1), cap)

        def fire() -> None:
            self._respawn = None
            self.converge()

        self._respawn = self.loop.call_later(delay, fire)

    # -- callbacks from workers and links ---------------------------------------------

    def recycle(
        self,
        reason: str,
        config: PoolConfig | None = None,
        apps: list[ApplicationConfig] | None = None,
        workers: list[WorkerProcess] | None = None,
        **fields: object,
    ) -> None:
        """Replace `workers` (default: all), overlapped: new ones first, old ones drain once
        those are ready (with disallowOverlappingRotation: old ones first, the queue holds
        requests meanwhile). With a new `config` or `apps`, the replacements run them."""
        if config is not None:
            self.identity = resolve_identity(config)
            self.config = config
            self.queue.limit = config.queue_length
        if apps is not None:
            self.apps = apps
        if config is not None or apps is not None:
            self.direct_reason = None  # a new configuration deserves a new try
        candidates = self.workers if workers is None else workers
        old = [w for w in candidates if not w.retiring and w.alive
               and w.state is not WorkerState.ORPHANED]
        flags = self.config.recycling.log_event_on_recycle
        if reason in flags or reason not in RECYCLE_REASONS:  # not IIS's: always logged
            self.events.emit(
                "pool.recycle", pool=self.config.name, reason=reason,
                iis_event=RECYCLE_EVENTS.get(reason), pids=[w.pid for w in old], **fields,
            )
        overlap = not self.config.recycling.disallow_overlapping_rotation
        for worker in old:
            worker.retiring = True
            if worker.state is WorkerState.STARTING or not overlap:
                worker.drain()  # not serving yet, or no overlap wanted: it goes now
        self.demand = self.demand or bool(old)
        if self._respawn is not None:  # a fresh configuration deserves a fresh try
            self._respawn.cancel()
            self._respawn = None
            self.failed_starts = 0
        self.converge()
        self._renew_template()

    def on_ready(self, worker: WorkerProcess) -> None:
        self.failed_starts = 0
        self.ever_ready = True
        if worker.retiring:  # replaced while it was starting
            worker.drain()
            return
        worker.last_active = self.loop.time()
        self.triggers.worker_ready(worker)
        if worker.link is not None:
            self.queue.add_upstream(worker.link)
        if self.state is PoolState.STARTING:
            self.transition("started")
            self.started.set()
        for old in self.workers:  # one replacement ready: one retiring worker goes
            if old.retiring and old.state is WorkerState.READY:
                old.drain()
                break
        if self.template is None and self.config.spawn_method == "smart" and (
                self.direct_reason is None and AppPool.can_fork):
            self.template = Template(self)  # warm for the next worker this pool needs
            self.template.start()

    def on_link_free(self, worker: WorkerProcess) -> None:
        if worker.state is WorkerState.DRAINING:
            worker.stop_if_idle()
            return
        worker.last_active = self.loop.time()
        self.queue.pump()
        self.triggers.request_done(worker)

    def idle_shutdown(self, worker: WorkerProcess) -> None:
        """idleTimeout: the worker has had nothing to do for that long (IIS event 5186)."""
        if "IdleTimeout" in self.config.log_event_on_process_model:
            self.events.emit(
                "worker.idle_shutdown", pool=self.config.name, pid=worker.pid, iis_event=5186,
                idle_timeout=self.config.idle_timeout,
            )
        worker.retiring = True
        worker.drain()
        if not [w for w in self.workers if w.alive and not w.retiring]:
            self.demand = False  # the next request starts a worker on demand

    def on_link_lost(self, worker: WorkerProcess, lost: list[Exchange]) -> None:
        if worker.link is not None:
            self.queue.remove_upstream(worker.link)
        for ex in reversed(lost):
            if ex.worker_lost():
                self.events.emit(
                    "request.retry", pool=self.config.name, pid=worker.pid, method=ex.method,
                    url=ex.target.decode("latin-1"),
                )
                page = self.queue.requeue(ex)
                if page is not None and self.queue.reset_when_offline:
                    ex.conn.abort()  # TcpLevel
                elif page is not None:
                    ex.fail(page)
            elif not ex.abandoned:
                self.events.emit(
                    "request.failed", pool=self.config.name, pid=worker.pid, status=502,
                    method=ex.method, url=ex.target.decode("latin-1"),
                )

    def count_failure(self, worker: WorkerProcess, what: str) -> None:
        """A crash or a failed health rule. `rapidFailProtectionMaxCrashes` of them within
        `rapidFailProtectionInterval` stop the pool (IIS event 5002)."""
        failure = self.config.failure
        if not failure.rapid_fail_protection or self.state is not PoolState.STARTED:
            return
        now = self.loop.time()
        window = failure.rapid_fail_protection_interval
        self.failures = [t for t in self.failures if now - t < window] + [now]
        if len(self.failures) >= failure.rapid_fail_protection_max_crashes:
            self.rapid_fail()

    def rapid_fail(self) -> None:
        """Stop the pool: its requests get 503 at once (HttpLevel) or a reset (TcpLevel);
        `webgarden start apppool` brings it back."""
        failure = self.config.failure
        self.events.emit(
            "pool.rapid_fail", pool=self.config.name, iis_event=5002,
            failures=len(self.failures), interval=failure.rapid_fail_protection_interval,
        )
        reset = failure.load_balancer_capabilities == "TcpLevel"
        for ex in self.queue.take_offline(errors.APP_OFFLINE, reset=reset):
            if reset:
                ex.conn.abort()
            else:
                ex.fail(errors.APP_OFFLINE)
        self.failures.clear()
        self.begin_stop()
        background(self.stop(self.config.shutdown_time_limit))

    def on_worker_exit(self, worker: WorkerProcess) -> None:
        self.workers.remove(worker)
        crashed = (
            worker.failed is None
            and not worker.retiring
            and worker.exit_state in (WorkerState.STARTING, WorkerState.READY)
        )
        if crashed:
            self.events.emit(
                "worker.crash", pool=self.config.name, pid=worker.pid, iis_event=5009,
                code=worker.exit_code,
            )
            self.count_failure(worker, "crash")
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

    def begin_stop(self) -> None:
        """Enter Stopping now, so that nothing converges toward a target any more."""
        if self.state in (PoolState.STARTING, PoolState.STARTED):
            self.transition("stop")

    async def stop(self, timeout: float) -> None:
        """Serve what the queue holds, drain every worker; kill what is alive after `timeout`."""
        if self.queue.waiting and self.workers:
            emptied: asyncio.Future[None] = self.loop.create_future()

            def empty() -> None:
                if not emptied.done():
                    emptied.set_result(None)

            self.queue.when_empty = empty
            try:
                await asyncio.wait_for(emptied, timeout)
            except TimeoutError:
                self.events.emit(
                    "pool.queue_abandoned", pool=self.config.name, requests=len(self.queue.waiting)
                )
        self.begin_stop()
        if self._respawn is not None:
            self._respawn.cancel()
            self._respawn = None
        self.triggers.stop()
        self.cpu.stop()
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
        if self.template is not None:
            self.template.retire()
            self.template = None
        if self.state is PoolState.STOPPING:
            self.transition("stopped")
