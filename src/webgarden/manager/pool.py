"""An application pool (IIS: an app pool under WAS): the I/O around its supervisor.

The pool's policy (converge to the target, restart backoff, the rapid-fail window, the
overlap rule, classifying exits) is `manager.supervisor`, a pure core. `AppPool` is its
adapter: it turns what happens to processes and timers into the core's events, and
carries out the actions the core returns (spawn a `WorkerProcess`, drain it, arm a
respawn timer, take the pool offline, renew the template).

Recycling (one path for every trigger, `recycle`): the replacements start, each one that
says READY takes new requests and retires one old worker, which drains (finishes what it
has, up to `shutdownTimeLimit`) and exits. A replacement that never gets ready leaves the
old worker serving: a broken deployment does not take the pool down.

Configuration (one path for every change, `apply`): the new settings, then everything
derived from them is re-armed (recycling triggers, CPU governor, executionTimeout), then
the workers are recycled unless the change says to keep them.

The pool never touches a request: the listener (`listener.request_fate`) decides what
becomes of them and tells the pool only that a worker's link is lost or that a request on
a worker is late (`WorkerWatch`).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import TYPE_CHECKING

from webgarden.aio import background
from webgarden.config.model import ApplicationConfig, PoolConfig
from webgarden.config.pools import RECYCLE_REASONS
from webgarden.events import EventLog
from webgarden.listener import errors
from webgarden.listener.request_fate import RequestFate
from webgarden.manager.cpu import CpuGovernor
from webgarden.manager.identity import (
    Identity,
    IdentityError,
    access_problem,
    import_path,
    resolve,
    worker_command,
)
from webgarden.manager.process import WorkerProcess
from webgarden.manager.states import PoolState, WorkerState
from webgarden.manager.supervision import (
    Action,
    AllExited,
    CancelRespawn,
    ConfigApplied,
    Demand,
    Drain,
    Emit,
    Event,
    Exited,
    FailureCounted,
    GoOnline,
    IdleExpired,
    Orphaned,
    Policy,
    PoolStarted,
    Ready,
    RecycleRequested,
    RenewTemplate,
    RespawnIn,
    Serve,
    Spawn,
    Spawned,
    Start,
    StartFailed,
    Stop,
    Stopped,
    StopPool,
    TimerFired,
    WarmTemplate,
)
from webgarden.manager.supervisor import Supervisor
from webgarden.manager.template import Template, template_key
from webgarden.manager.triggers import RECYCLE_EVENTS, Triggers

if TYPE_CHECKING:
    from webgarden.listener.upstream import WorkerLink


def resolve_identity(config: PoolConfig) -> Identity | None:
    """The pool's worker identity, checked to be usable (IdentityError: a line for the user)."""
    identity_type = getattr(config, "identity_type", "ApplicationPoolIdentity")
    identity = resolve(config.name, identity_type, getattr(config, "user_name", ""))
    if identity is not None:
        problem = access_problem(identity, [sys.prefix, *import_path(config.python_path)])
        if problem is not None:
            raise IdentityError(
                f"pool {config.name!r} runs its workers as {identity.user!r}, who {problem}")
    return identity


#: Seconds a worker may live on after its link is lost before it is killed: a worker exits
#: by itself when its socket closes (in milliseconds), so one still alive is hung.
LINK_LOST_GRACE = 5.0


class AppPool:
    #: False when the server cannot be a child subreaper: forked workers would not be its
    #: children, so every pool spawns directly (set once, at start).
    can_fork = True

    def __init__(
        self,
        config: PoolConfig,
        apps: list[ApplicationConfig],
        requests: RequestFate,
        events: EventLog,
    ) -> None:
        self.config = config
        self.apps = apps
        self.requests = requests
        self.queue = requests.queue
        self.events = events
        self.identity: Identity | None = resolve_identity(config)
        self.supervisor = Supervisor(Policy.of(config))
        self.workers: list[WorkerProcess] = []
        self.loop = asyncio.get_event_loop()
        self.triggers = Triggers(self)
        self.cpu = CpuGovernor(self)
        self.spawned = 0  # workers started so far (round robin over the affinity mask)
        self.compression = ""  # the server's compression rules, JSON, for new workers
        requests.watch = self
        self.queue.on_demand = lambda: self._feed(Demand())
        self.started = asyncio.Event()  # set when the first worker is ready, or start failed
        self.all_exited = asyncio.Event()
        self._respawn: asyncio.TimerHandle | None = None
        self.template: Template | None = None  # smart spawning: what new workers fork from
        self.direct_reason: str | None = None  # why this configuration spawns directly

    @property
    def state(self) -> PoolState:
        return self.supervisor.state

    @property
    def start_error(self) -> str | None:
        return self.supervisor.start_error

    # -- the supervisor: events in, actions out -------------------------------------------

    def _feed(self, event: Event) -> None:
        actions = self.supervisor.handle(event, self.loop.time())
        for worker in self.workers:  # retiring is the supervisor's decision
            member = self.supervisor.members.get(worker.wid)
            if member is not None:
                worker.retiring = member.retiring
        for action in actions:
            self._do(action)

    def _do(self, action: Action) -> None:
        match action:
            case Spawn(wid):
                worker = WorkerProcess(self, self.template_for_spawn(), wid)
                self.workers.append(worker)
                self.loop.create_task(worker.spawn())
            case Serve(wid):
                self._serve(self._worker(wid))
            case Drain(wid):
                self._worker(wid).drain()
            case RespawnIn(seconds):
                self._respawn = self.loop.call_later(seconds, self._respawn_due)
            case CancelRespawn():
                if self._respawn is not None:
                    self._respawn.cancel()
                    self._respawn = None
            case StopPool():
                reset = self.config.failure.load_balancer_capabilities == "TcpLevel"
                self.queue.go_offline(errors.APP_OFFLINE, reset=reset)
                background(self.stop(self.config.shutdown_time_limit))
            case GoOnline():
                self.queue.go_online()
            case PoolStarted() | StartFailed():
                self.started.set()
            case AllExited():
                self.all_exited.set()
            case RenewTemplate():
                self._renew_template()
            case WarmTemplate():
                self._warm_template()
            case Emit(event, fields):
                self.events.emit(event, pool=self.config.name, **fields)

    def _worker(self, wid: int) -> WorkerProcess:
        return next(w for w in self.workers if w.wid == wid)

    def _respawn_due(self) -> None:
        self._respawn = None
        self._feed(TimerFired())

    def _serve(self, worker: WorkerProcess) -> None:
        worker.last_active = self.loop.time()
        self.triggers.worker_ready(worker)
        if worker.link is not None:
            self.requests.serve(worker.link, worker.pid)

    # -- configuration: the one path --------------------------------------------------

    def apply(self, config: PoolConfig, apps: list[ApplicationConfig] | None = None,
              recycle: bool = False) -> None:
        """Every configuration change of this pool comes here: the settings, then what is
        derived from them (triggers, CPU governor, executionTimeout) re-armed, then, with
        `recycle`, new workers for the new settings (reason ConfigChange)."""
        self.identity = resolve_identity(config)
        self.config = config
        self.queue.limit = config.queue_length
        if apps is not None:
            self.apps = apps
        self.direct_reason = None  # a new configuration deserves a new try
        if recycle:
            self._log_recycle("ConfigChange", self.supervisor.recycle_candidates(), {})
        self._feed(ConfigApplied(Policy.of(config), recycle=recycle))
        if self.state in (PoolState.STARTING, PoolState.STARTED):
            self._arm()

    def _arm(self) -> None:
        """(Re)start everything the configuration drives: each starts from scratch, so a
        setting that was removed leaves no timer behind."""
        self.triggers.start()
        self.cpu.start()
        self.requests.set_execution_timeout(self.config.execution_timeout)

    def _disarm(self) -> None:
        self.triggers.stop()
        self.cpu.stop()
        self.requests.set_execution_timeout(0)

    # -- life -------------------------------------------------------------------------

    def start(self) -> None:
        self.started.clear()
        self.all_exited.clear()
        self._arm()
        self._feed(Start(waiting=bool(self.queue.waiting)))

    def shut_down(self, page: errors.ErrorPage) -> None:
        """Take the pool offline (its requests get `page`) and stop it: an operator's stop,
        or a CPU limit's KillW3wp."""
        self.queue.go_offline(page)
        self._feed(Stop())
        background(self.stop(self.config.shutdown_time_limit))

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
        self._disarm()
        self._feed(Stop())
        try:
            await asyncio.wait_for(self.all_exited.wait(), timeout)
        except TimeoutError:
            for worker in list(self.workers):
                worker.kill()
            await asyncio.wait_for(self.all_exited.wait(), 5.0)
        if self.template is not None:
            self.template.retire()
            self.template = None
        self._feed(Stopped())

    def recycle(self, reason: str, workers: list[WorkerProcess] | None = None,
                **fields: object) -> None:
        """Replace `workers` (default: all), overlapped: new ones first, old ones drain once
        those are ready (with disallowOverlappingRotation: old ones first, the queue holds
        requests meanwhile)."""
        wids = None if workers is None else tuple(w.wid for w in workers)
        self._log_recycle(reason, self.supervisor.recycle_candidates(wids), fields)
        self._feed(RecycleRequested(reason, wids))

    def _log_recycle(self, reason: str, pids: list[int], fields: dict[str, object]) -> None:
        flags = self.config.recycling.log_event_on_recycle
        if reason in flags or reason not in RECYCLE_REASONS:  # not IIS's: always logged
            self.events.emit("pool.recycle", pool=self.config.name, reason=reason,
                             iis_event=RECYCLE_EVENTS.get(reason), pids=pids, **fields)

    # -- what workers report (process.WorkerOwner) ------------------------------------

    def on_spawned(self, worker: WorkerProcess) -> None:
        self.cpu.worker_started(worker.pid)
        self.spawned += 1
        self._feed(Spawned(worker.wid, worker.pid))

    def on_ready(self, worker: WorkerProcess) -> None:
        self._feed(Ready(worker.wid))

    def on_link_free(self, worker: WorkerProcess) -> None:
        if worker.state is WorkerState.DRAINING:
            worker.stop_if_idle()
            return
        worker.last_active = self.loop.time()
        self.queue.pump()
        self.triggers.request_done(worker)

    def withdraw(self, worker: WorkerProcess) -> None:
        """The worker leaves service (draining, orphaned): it gets no new request."""
        if worker.link is not None:
            self.requests.withdraw(worker.link)

    def count_failure(self, worker: WorkerProcess, what: str) -> None:
        """A failed health rule: it counts toward rapid-fail (IIS event 5002)."""
        self._feed(FailureCounted(worker.wid, what))

    def on_orphaned(self, worker: WorkerProcess) -> None:
        self.withdraw(worker)
        self._feed(Orphaned(worker.wid))

    def idle_shutdown(self, worker: WorkerProcess) -> None:
        """idleTimeout: the worker has had nothing to do for that long (IIS event 5186)."""
        self._feed(IdleExpired(worker.wid))

    def on_worker_exit(self, worker: WorkerProcess) -> None:
        self.workers.remove(worker)
        self._feed(Exited(worker.wid, worker.exit_code, worker.load_error))

    # -- what the listener reports (request_fate.WorkerWatch) -------------------------

    def link_lost(self, link: WorkerLink) -> None:
        """A worker's link is gone: the listener has dealt with its requests. The process
        normally exits at once; one that lives on without its link is hung: kill it."""
        worker = next((w for w in self.workers if w.link is link), None)
        if worker is not None and worker.state not in (WorkerState.EXITED,
                                                       WorkerState.ORPHANED):
            worker.add_timer(self.loop.call_later(LINK_LOST_GRACE, worker.kill))

    def request_late(self, link: WorkerLink, sid: int) -> None:
        """A request ran past executionTimeout (the listener answered 504): log the
        worker's stacks and replace it (it finishes, or is killed at shutdownTimeLimit)."""
        worker = next((w for w in self.workers if w.link is link), None)
        if worker is not None and not worker.retiring and worker.state is WorkerState.READY:
            background(worker.dump_stacks("executionTimeout"))
            self.recycle("ExecutionTimeout", workers=[worker])

    # -- smart spawning (template.TemplateOwner) --------------------------------------

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
        import path and identity, which the process becomes before it imports the app
        (`identity.worker_command`).

        In a session of its own: the terminal a (root) server was started from is then no
        controlling terminal of the app's, so it cannot push a command line into the
        operator's shell with TIOCSTI through the standard streams it inherits."""
        command, env = worker_command(argv, self.identity, self.config.python_path)
        return subprocess.Popen(command, pass_fds=pass_fds, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)

    def on_template_exit(self, template: Template) -> None:
        if self.template is template:
            self.template = None

    def _renew_template(self) -> None:
        """After a recycle's replacements have forked, the next generation gets a fresh
        template (started once a replacement is ready, so it does not compete with them)."""
        if self.template is not None:
            self.template.retire()
            self.template = None

    def _warm_template(self) -> None:
        """A worker is ready: a template, warm for the next worker this pool needs."""
        if self.template is None and self.config.spawn_method == "smart" and (
                self.direct_reason is None and AppPool.can_fork):
            self.template = Template(self)
            self.template.start()
