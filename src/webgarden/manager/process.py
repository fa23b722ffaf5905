"""One worker process as the manager sees it: spawn, watch, stop, kill.

The process is started with one end of a socketpair (`--fd`); the other end becomes a
`WorkerLink` on the server's loop. A second socketpair, SOCK_SEQPACKET (`--descriptor-fd`),
carries only the files a worker passes for the zero-copy path (`ipc.descriptors`).

The worker runs application code: what it says on stream 0 is checked here before the
manager acts on it (THREAT_MODEL.md). READY once, naming the worker's own pid, with a
capacity from 1 to the threads and prefetch it was started with; ABORT (a load failure)
only before READY, its reason cut to `messages.MAX_REASON`. A violation, here or in the
link, closes the link, logs `worker.violation`, counts toward rapid-fail and kills the
worker, which the pool replaces. Its exit is noticed through a pidfd registered with the
loop (no polling, no SIGCHLD handler), and its state moves only through the table in
`manager.states`. Exit codes are the worker's named codes (`worker.main.EXIT_*`); a
negative code is the signal that ended it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Protocol

import msgspec

from webgarden.aio import background
from webgarden.config.model import ApplicationConfig
from webgarden.events import exit_fields
from webgarden.ipc import messages
from webgarden.ipc.apps import app_argument
from webgarden.ipc.frames import FrameType
from webgarden.listener.upstream import WorkerLink
from webgarden.manager.states import WorkerState, next_worker_state
from webgarden.manager.template import (
    CLAIMED,
    Template,
    TemplateError,
    TemplateLoadFailed,
    TemplateStale,
)

if TYPE_CHECKING:
    from webgarden.config.model import PoolConfig
    from webgarden.events import EventLog
    from webgarden.listener.request_fate import RequestFate
    from webgarden.manager.identity import Identity

#: Socket buffer for the listener <-> worker socketpair, each direction.
SOCKET_BUFFER = 1024 * 1024
#: How long to wait for a hung worker's stack dump before killing it anyway, seconds.
STACK_DUMP_WAIT = 2.0
#: How long the worker's faulthandler may go on writing once its dump has begun, seconds.
STACK_DUMP_GRACE = 0.1
#: Timer handles a worker keeps before the fired and cancelled ones are dropped.
TIMERS_BEFORE_PRUNING = 16
#: Bytes of stack dump kept per worker.
MAX_STACKS = 256 * 1024
#: Bytes read from the stack pipe per loop turn: a pipe's default capacity.
STACK_READ = 64 * 1024


class WorkerOwner(Protocol):
    """What a worker needs of its pool, and how it reports to it (the pool is handed in;
    this module never imports it)."""

    config: PoolConfig
    apps: list[ApplicationConfig]
    events: EventLog
    identity: Identity | None
    requests: RequestFate
    compression: str
    spawned: int

    def popen(self, argv: list[str], pass_fds: tuple[int, ...]) -> subprocess.Popen[bytes]: ...
    def template_for_spawn(self) -> Template | None: ...
    def on_spawned(self, worker: WorkerProcess) -> None: ...
    def on_ready(self, worker: WorkerProcess) -> None: ...
    def on_link_free(self, worker: WorkerProcess) -> None: ...
    def withdraw(self, worker: WorkerProcess) -> None: ...
    def count_failure(self, worker: WorkerProcess, what: str) -> None: ...
    def on_orphaned(self, worker: WorkerProcess) -> None: ...
    def on_worker_exit(self, worker: WorkerProcess) -> None: ...
    def recycle(self, reason: str, workers: list[WorkerProcess] | None = None,
                **fields: object) -> None: ...


def _threads(pid: int) -> list[int]:
    """The thread ids of a process (its pid alone if /proc cannot say)."""
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [pid]


class WorkerProcess:
    def __init__(self, pool: WorkerOwner, template: Template | None = None, wid: int = 0
                 ) -> None:
        self.pool = pool
        self.wid = wid  # the supervisor's name for it
        self.template = template  # smart spawning: fork from it (it counts this worker)
        self.forked = False  # forked from a template, not started as a new interpreter
        self.state = WorkerState.SPAWNING
        self.pid = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.link: WorkerLink | None = None
        self.started_at = time.time()
        self.ready_at: float | None = None
        self.exit_code: int | None = None
        self.load_error: str | None = None
        self.retiring = False  # being replaced: drains once its replacement is ready
        self.failed: str | None = None  # why the manager gave up on it (no crash to count then)
        self.exit_state: WorkerState | None = None  # its state when it exited
        self._ping_deadline: asyncio.TimerHandle | None = None
        self.last_active = 0.0  # loop time of its last finished request (idleTimeout)
        self.cpu: int | None = None  # the CPU it is pinned to (smpAffinitized)
        self.loop = asyncio.get_event_loop()
        self._pidfd = -1
        self._timers: list[asyncio.TimerHandle] = []
        self._stacks_fd = -1
        self._stacks = b""  # what the worker's faulthandler wrote
        self._stacks_arrived: asyncio.Future[None] | None = None
        self.said_ready = False
        self.capacity_limit = 0  # threads + prefetch it was started with (READY's bound)

    def transition(self, event: str) -> None:
        self.state = next_worker_state(self.state, event)

    def add_timer(self, handle: asyncio.TimerHandle) -> None:
        """A timer that dies with the worker. Timers that fired or were cancelled are
        dropped now and then, so a worker that lives for months (two timers a ping) does
        not keep every handle it ever had."""
        timers = self._timers
        if len(timers) >= TIMERS_BEFORE_PRUNING:
            now = self.loop.time()
            self._timers = timers = [t for t in timers if not t.cancelled() and t.when() > now]
        timers.append(handle)

    async def spawn(self) -> None:
        template, self.template = self.template, None
        pool = self.pool
        if self.state is not WorkerState.SPAWNING:  # drained before it started: never mind
            if template is not None:
                template.release()
            self.transition("exit")
            pool.on_worker_exit(self)
            return
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for sock in (parent, child):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        # Files for the zero-copy path travel here by SCM_RIGHTS: the stream socket is read
        # through a transport that drops ancillary data.
        fd_parent, fd_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.capacity_limit = pool.config.worker_capacity_bound
        stacks_read, stacks_write = os.pipe()
        os.set_blocking(stacks_read, False)
        apps = pool.apps  # this worker's generation: a recycle may change the pool's list
        try:
            if template is not None:
                await self._fork(template, child.fileno(), stacks_write, fd_child.fileno())
            if not self.pid:
                self._exec(child.fileno(), stacks_write, fd_child.fileno(), apps)
                CLAIMED.add(self.pid)
        except (OSError, TemplateLoadFailed) as exc:
            parent.close()
            fd_parent.close()
            os.close(stacks_read)
            if isinstance(exc, TemplateLoadFailed):
                self.load_error = str(exc)
                pool.events.emit("worker.load_failed", pool=pool.config.name, pid=None,
                                 error=self.load_error)
            else:
                self.load_error = f"cannot start a worker process: {exc}"
            self.transition("exit")
            pool.on_worker_exit(self)
            return
        finally:
            child.close()
            fd_child.close()
            os.close(stacks_write)
        self._stacks_fd = stacks_read
        self.loop.add_reader(stacks_read, self._read_stacks)
        if self.drained_while_spawning():
            self.kill()
        else:
            self.transition("spawned")
        self._pin()
        self._pidfd = os.pidfd_open(self.pid)
        self.loop.add_reader(self._pidfd, self._on_exit)
        pool.on_spawned(self)
        identity = pool.identity
        pool.events.emit(
            "worker.start", pool=pool.config.name, pid=self.pid,
            user=identity.user if identity else None, cpu=self.cpu,
            spawn="fork" if self.forked else "exec",
        )
        self.add_timer(
            self.loop.call_later(pool.config.startup_time_limit, self._startup_expired)
        )
        # The link exists before the connection does: a forked worker can say READY within
        # a millisecond, and its READY may be read before create_unix_connection returns.
        link = self.link = WorkerLink(
            self._on_control,
            pool.requests.link_lost,  # the listener decides what becomes of its requests
            lambda link: pool.on_link_free(self),
            lambda link, rule, detail: self.on_violation(rule, detail),
        )
        link.apps = {app: index for index, app in enumerate(apps)}
        link.attach_descriptors(fd_parent)
        await self.loop.create_unix_connection(lambda: link, sock=parent)

    def drained_while_spawning(self) -> bool:
        """Retired while it waited for its template: it is killed as soon as it exists."""
        return self.state is not WorkerState.SPAWNING

    async def _fork(self, template: Template, fd: int, stacks_fd: int, descriptor_fd: int
                    ) -> None:
        """Fork from the pool's template (a stale one is replaced once). Leaves `pid` at 0
        when the worker must be started directly instead; TemplateLoadFailed goes up."""
        try:
            for attempt in range(2):
                try:
                    self.pid = await template.fork(fd, stacks_fd, descriptor_fd)
                except TemplateStale:
                    fresh = self.pool.template_for_spawn() if attempt == 0 else None
                    if fresh is None:
                        return
                    template.release()
                    template = fresh
                    continue
                except TemplateError as exc:
                    self.pool.events.emit("worker.fork_failed", pool=self.pool.config.name,
                                          reason=str(exc), action="spawned directly")
                    return
                self.forked = True
                return
        finally:
            template.release()

    def _exec(self, fd: int, stacks_fd: int, descriptor_fd: int, apps: list[ApplicationConfig]
              ) -> None:
        """Start the worker as a new interpreter (spawnMethod="direct", or no template)."""
        pool = self.pool
        argv = [sys.executable, "-m", "webgarden.worker", "--fd", str(fd)]
        argv += ["--pool", pool.config.name, "--threads", str(pool.config.threads)]
        argv += ["--prefetch", str(pool.config.worker_prefetch)]
        argv += ["--asgi-concurrency", str(pool.config.asgi_concurrency)]
        if pool.compression:
            argv += ["--compression", pool.compression]
        argv += ["--stacks-fd", str(stacks_fd), "--descriptor-fd", str(descriptor_fd)]
        for app in apps:
            argv += ["--app", app_argument(app)]
        self.proc = pool.popen(argv, (fd, stacks_fd, descriptor_fd))
        self.pid = self.proc.pid

    # -- messages from the worker -----------------------------------------------------

    def _on_control(self, ftype: int, payload: bytes) -> None:
        """A stream-0 frame of a type a worker may send (the link checked the type)."""
        if ftype == FrameType.READY:
            problem = self._check_ready(payload)
            if problem is not None:
                if self.link is not None:
                    self.link.violate("bad-ready", problem)
                return
            ready = messages.ready_decoder.decode(payload)
            self.said_ready = True
            if self.link is not None:
                self.link.capacity = ready.capacity
            if self.state is WorkerState.STARTING:
                self.transition("ready")
                self.ready_at = time.time()
                self.pool.events.emit(
                    "worker.ready",
                    pool=self.pool.config.name,
                    pid=self.pid,
                    capacity=ready.capacity,
                    startup_ms=round((self.ready_at - self.started_at) * 1000, 1),
                )
                self.pool.on_ready(self)
                self._schedule_ping()
        elif ftype == FrameType.RECYCLE:  # the app asked (IIS: ISAPI reported unhealthy)
            if self.state is WorkerState.READY and not self.retiring:
                self.pool.recycle("IsapiUnhealthy", workers=[self])
        elif ftype == FrameType.PONG:
            if self._ping_deadline is not None:
                self._ping_deadline.cancel()
                self._ping_deadline = None
        elif ftype == FrameType.ABORT:
            try:
                reason = messages.abort_decoder.decode(payload).reason
            except msgspec.DecodeError as exc:
                reason = f"an unreadable load failure ({exc})"
            if self.said_ready and self.link is not None:
                self.link.violate("late-load-failure", "ABORT on stream 0 after READY")
                return
            if self.load_error is not None and self.link is not None:
                # A worker that failed to load says so once, and exits: each ABORT would be
                # an event line, and one sent in a loop would fill the event log.
                self.link.violate("second-load-failure", "a second ABORT on stream 0")
                return
            self.load_error = messages.reason_shown(reason)
            self.pool.events.emit(
                "worker.load_failed", pool=self.pool.config.name, pid=self.pid,
                error=self.load_error,
            )

    def _check_ready(self, payload: bytes) -> str | None:
        """Why a READY is not believed, or None."""
        if self.said_ready:
            return "a second READY"
        try:
            ready = messages.ready_decoder.decode(payload)
        except msgspec.DecodeError as exc:
            return f"an unreadable READY ({exc})"
        if ready.pid != self.pid:
            return f"READY names pid {ready.pid}, not the worker's {self.pid}"
        if not 1 <= ready.capacity <= self.capacity_limit:
            return (f"READY claims a capacity of {ready.capacity}, outside 1.."
                    f"{self.capacity_limit} (threads, prefetch and asgiConcurrency)")
        return None

    def on_violation(self, rule: str, detail: str) -> None:
        """The worker broke a rule of the link (its link closes itself): log why, count it
        toward rapid-fail, and kill it; the pool replaces it. No stack dump and no orphaning:
        a worker that breaks the protocol may be hostile, and is given nothing more."""
        pool = self.pool
        pool.events.emit("worker.violation", pool=pool.config.name, pid=self.pid, reason=rule,
                         detail=detail[: messages.MAX_REASON])
        if self.failed is None:
            self.failed = f"violation: {rule}"
            pool.count_failure(self, "violation")
        pool.withdraw(self)
        self.kill()

    def _pin(self) -> None:
        """smpAffinitized: each worker on one CPU of smpProcessorAffinityMask, round robin."""
        cpu = self.pool.config.cpu
        if not cpu.smp_affinitized:
            return
        mask = cpu.smp_processor_affinity_mask | (cpu.smp_processor_affinity_mask2 << 32)
        cpus = sorted(c for c in os.sched_getaffinity(0) if mask >> c & 1)
        if not cpus:
            self.pool.events.emit("pool.affinity_failed", pool=self.pool.config.name,
                                  iis_event=5058, mask=hex(mask))
            return
        chosen = cpus[self.pool.spawned % len(cpus)]
        try:
            # Affinity is per thread: a forked worker may already run its request threads.
            for tid in _threads(self.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(tid, {chosen})
        except OSError as exc:
            self.pool.events.emit("pool.affinity_failed", pool=self.pool.config.name,
                                  iis_event=5058, error=exc.strerror)
            return
        self.cpu = chosen

    # -- health -----------------------------------------------------------------------

    def _schedule_ping(self) -> None:
        """pingingEnabled: every pingInterval a PING; no PONG within pingResponseTime fails it."""
        config = self.pool.config
        if config.pinging_enabled and self.state in (WorkerState.READY, WorkerState.DRAINING):
            self.add_timer(self.loop.call_later(config.ping_interval, self._ping))

    def _ping(self) -> None:
        if self.link is None or self.link.closed or self.state is WorkerState.EXITED:
            return
        if self._ping_deadline is None:
            self.link.send_control(FrameType.PING)
            self._ping_deadline = self.loop.call_later(
                self.pool.config.ping_response_time, self._ping_failed
            )
            self.add_timer(self._ping_deadline)
        self._schedule_ping()

    def _ping_failed(self) -> None:
        self._ping_deadline = None
        if self.state not in (WorkerState.READY, WorkerState.DRAINING):
            return
        self.pool.events.emit(
            "worker.ping_failed", pool=self.pool.config.name, pid=self.pid, iis_event=5010,
            limit=self.pool.config.ping_response_time,
        )
        self.give_up("pingResponseTime")

    def give_up(self, reason: str) -> None:
        """The worker failed a health rule: it counts toward rapid-fail; then it is orphaned
        (orphanWorkerProcess) or its stacks are logged and it is killed."""
        if self.failed is not None or self.state is WorkerState.EXITED:
            return
        self.failed = reason
        self.pool.count_failure(self, reason)
        if self.pool.config.failure.orphan_worker_process:
            self.orphan(reason)
        else:
            background(self.kill_with_stacks(reason))

    def orphan(self, reason: str) -> None:
        """Out of service but alive, for a debugger; orphanActionExe runs with its pid."""
        self.transition("orphan")
        failure = self.pool.config.failure
        self.pool.events.emit(
            "worker.orphaned", pool=self.pool.config.name, pid=self.pid, reason=reason
        )
        if failure.orphan_action_exe:
            params = failure.orphan_action_params.replace("%1%", str(self.pid))
            try:
                subprocess.Popen([failure.orphan_action_exe, *params.split()],
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as exc:
                self.pool.events.emit("worker.orphan_action_failed", pid=self.pid, error=str(exc))
        self.pool.on_orphaned(self)

    # -- lifecycle --------------------------------------------------------------------

    def _read_stacks(self, final: bool = False) -> None:
        """What the worker's faulthandler wrote: one read per call, so a worker (or a child
        of it) writing without end gets one turn of the loop, never the loop. `final`: the
        worker exited; the pipe is closed after this read, since a child of the worker may
        hold its write end forever (no EOF would come, and the reader would stay)."""
        if self._stacks_fd < 0:
            return
        try:
            data = os.read(self._stacks_fd, STACK_READ)
        except BlockingIOError:
            data = None
        if final or data == b"":  # the worker is gone
            self.loop.remove_reader(self._stacks_fd)
            os.close(self._stacks_fd)
            self._stacks_fd = -1
        if not data:
            return
        if len(self._stacks) < MAX_STACKS:
            self._stacks += data[: MAX_STACKS - len(self._stacks)]
        if self._stacks_arrived is not None and not self._stacks_arrived.done():
            self._stacks_arrived.set_result(None)

    async def dump_stacks(self, reason: str) -> None:
        """Log the Python stacks of all the worker's threads (`worker.stacks`)."""
        if self.state is WorkerState.EXITED or not self.pid:
            return
        self._stacks = b""
        self._stacks_arrived = self.loop.create_future()
        try:
            os.kill(self.pid, signal.SIGUSR2)
            await asyncio.wait_for(self._stacks_arrived, STACK_DUMP_WAIT)
            # The dump is written from the signal handler, thread after thread, in one go;
            # a moment more lets it finish.
            await asyncio.sleep(STACK_DUMP_GRACE)
        except (TimeoutError, ProcessLookupError):
            pass
        self._read_stacks()
        self.pool.events.emit(
            "worker.stacks", pool=self.pool.config.name, pid=self.pid, reason=reason,
            stacks=self._stacks.decode("utf-8", "replace"),
        )

    async def kill_with_stacks(self, reason: str) -> None:
        """Log the Python stacks of all the worker's threads, then SIGKILL it."""
        await self.dump_stacks(reason)
        self.kill()

    def _on_exit(self) -> None:
        self._read_stacks(final=True)  # whatever is left in the pipe
        self.loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        for timer in self._timers:
            timer.cancel()
        self.exit_code = code = self._reap()
        CLAIMED.discard(self.pid)
        self.exit_state = self.state
        self.transition("exit")
        self.pool.events.emit("worker.exit", pool=self.pool.config.name, pid=self.pid,
                              **exit_fields(code))
        if self.link is not None:
            self.link.close()
        self.pool.on_worker_exit(self)

    def _reap(self) -> int:
        """The exit code of the process (it has exited: its pidfd is readable). A forked
        worker is the server's child through PR_SET_CHILD_SUBREAPER, so it is reaped here
        as a directly started one is."""
        if self.proc is not None:
            return self.proc.wait()
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            return -signal.SIGKILL  # not our child (no subreaper): its code is unknown
        return os.waitstatus_to_exitcode(status)

    def _startup_expired(self) -> None:
        if self.state in (WorkerState.SPAWNING, WorkerState.STARTING):
            self.pool.events.emit(
                "worker.startup_timeout", pool=self.pool.config.name, pid=self.pid,
                limit=self.pool.config.startup_time_limit,
            )
            self.give_up("startupTimeLimit")

    def drain(self) -> None:
        """Out of service: no new requests; STOP once the last one ends."""
        if self.state in (WorkerState.EXITED, WorkerState.ORPHANED):
            return
        self.transition("drain")
        self.pool.withdraw(self)
        if self.link is not None and not self.link.closed:
            # The worker closes its WebSockets (1012) before this limit runs out: a
            # socket's life is the client's, so only the drain's deadline ends it.
            limit_ms = min(int(self.pool.config.shutdown_time_limit * 1000), 0xFFFFFFFF)
            self.link.send_control(FrameType.DRAIN, messages.count_payload(limit_ms))
        self.add_timer(
            self.loop.call_later(self.pool.config.shutdown_time_limit, self._shutdown_expired)
        )
        self.stop_if_idle()

    def stop_if_idle(self) -> None:
        if self.state is WorkerState.DRAINING and (self.link is None or self.link.inflight == 0):
            if self.link is not None and not self.link.closed:
                self.link.send_control(FrameType.STOP)
            elif self.link is None:
                self.kill()

    def _shutdown_expired(self) -> None:
        if self.state is WorkerState.DRAINING:
            self.pool.events.emit(
                "worker.shutdown_timeout", pool=self.pool.config.name, pid=self.pid,
                iis_event=5013, limit=self.pool.config.shutdown_time_limit,
            )
            background(self.kill_with_stacks("shutdownTimeLimit"))

    def kill(self) -> None:
        if self.pid and self.state is not WorkerState.EXITED:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    @property
    def alive(self) -> bool:
        return self.state is not WorkerState.EXITED
