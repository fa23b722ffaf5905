"""A pool's template process as the manager sees it (smart spawning, `spawnMethod="smart"`).

The template (`worker.template`) imports the pool's applications once; a new worker is then
a fork of it, ready in milliseconds instead of the interpreter start plus every import.

Lifetime, as the pool drives it:

* started when the pool first needs a worker (as root under a root server: it becomes the
  pool's identity before it imports the applications, `worker.privileges`);
* shared by every worker spawned until the pool recycles: a recycle's replacements fork
  from it, then it is *retired*: it stops once the forks it owes are done, and the pool
  starts a fresh template as soon as a replacement is ready, so the next generation's
  workers run what is on disk then, module-level state included;
* replaced at once if a module file it imported changed (`Stale`), so no worker ever runs
  code older than its files;
* given up for the pool's current configuration if importing the applications started
  threads (`Unforkable`): its workers are then spawned directly, as `spawnMethod="direct"`.

A worker that cannot be forked because the template died or failed to fork is spawned
directly instead: smart spawning is only ever a shortcut. An application that cannot be
imported fails in the template exactly as it would in a worker (`worker.load_failed`).
A root server runs the template at a lower CPU priority (`TEMPLATE_NICE`) while it
imports, so that renewing it after a recycle takes CPU from no request; once loaded it gets
the server's priority back, which every worker forked from it inherits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from webgarden.events import exit_fields
from webgarden.ipc import messages, spawn
from webgarden.ipc.apps import app_argument

if TYPE_CHECKING:
    from webgarden.config.model import ApplicationConfig, PoolConfig
    from webgarden.events import EventLog
    from webgarden.manager.identity import Identity

TemplateKey = tuple[tuple[str, ...], tuple[str, ...], int | None]

#: Every worker and template pid the server has claimed, across pools. A template runs the
#: application's code, so the pid it reports is checked against this before the server,
#: perhaps root, acts on it (`check_forked`), and the stray reaper never takes these.
CLAIMED: set[int] = set()

#: The template's nice value while it imports: its load competes with no request. Once it
#: has loaded it gets the server's own priority back, so that the workers it forks inherit
#: it; only a root server may give that back (`CAN_RENICE`), so only a root server lowers it.
TEMPLATE_NICE = 10
CAN_RENICE = os.geteuid() == 0


class TemplateError(Exception):
    """No worker can be forked from this template; the worker is spawned directly."""


class TemplateStale(TemplateError):
    """A module file changed since the template imported it."""


class TemplateLoadFailed(Exception):
    """The applications cannot be imported (the message is the one-line reason)."""


class TemplateOwner(Protocol):
    """What a template needs of its pool, and how it reports to it (the pool is handed in;
    this module never imports it)."""

    config: PoolConfig
    apps: list[ApplicationConfig]
    events: EventLog
    identity: Identity | None
    compression: str

    def popen(self, argv: list[str], pass_fds: tuple[int, ...]) -> subprocess.Popen[bytes]: ...
    def spawn_directly(self, reason: str) -> None: ...
    def on_template_exit(self, template: Template) -> None: ...


def template_key(pool: TemplateOwner) -> TemplateKey:
    """What a template's imports depend on: a change means a new template."""
    uid = pool.identity.uid if pool.identity is not None else None
    return tuple(app_argument(app) for app in pool.apps), tuple(pool.config.python_path), uid


class Template:
    def __init__(self, pool: TemplateOwner) -> None:
        self.pool = pool
        self.key = template_key(pool)
        self.loop = asyncio.get_event_loop()
        self.pid = 0
        self.users = 0  # workers that will fork from it
        self.retired = False  # stop once `users` is 0
        self.stale = False
        self.exited = False
        self.failed = False  # it never loaded, or is gone: no new worker waits for it
        self.loaded: asyncio.Future[spawn.Loaded] = self.loop.create_future()
        self._pending: collections.deque[asyncio.Future[spawn.FromTemplate]] = (
            collections.deque()
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._pidfd = -1
        self._load_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        pool = self.pool
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-m", "webgarden.worker.template",
                "--control-fd", str(child.fileno()), "--pool", pool.config.name]
        for app in self.key[0]:
            argv += ["--app", app]
        try:
            self._proc = pool.popen(argv, (child.fileno(),))
        except OSError as exc:
            parent.close()
            self.exited = True
            self._finish(TemplateError(f"cannot start the template process: {exc}"))
            return
        finally:
            child.close()
        self.pid = self._proc.pid
        CLAIMED.add(self.pid)
        if CAN_RENICE:  # it prepares the next generation: in the background of the serving
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, self.pid, TEMPLATE_NICE)
        parent.setblocking(False)
        self._sock = parent
        self.loop.add_reader(parent.fileno(), self._on_readable)
        self._pidfd = os.pidfd_open(self.pid)
        self.loop.add_reader(self._pidfd, self._on_exit)
        limit = pool.config.startup_time_limit
        self._load_timer = self.loop.call_later(limit, self._load_expired, limit)
        pool.events.emit("template.start", pool=pool.config.name, pid=self.pid)

    async def fork(self, fd: int, stacks_fd: int, descriptor_fd: int) -> int:
        """Fork a worker that serves socket `fd`, dumps its stacks to `stacks_fd` and passes
        files on `descriptor_fd`; its pid.

        Raises TemplateLoadFailed (the applications cannot be imported), TemplateStale, or
        TemplateError (anything else: spawn the worker directly)."""
        await asyncio.shield(self.loaded)
        if self.stale or self._sock is None:
            raise TemplateStale("the template is out of date") if self.stale else TemplateError(
                "the template is gone")
        config = self.pool.config
        request = spawn.Fork(config.name, config.threads, config.worker_prefetch,
                             self.pool.compression, os.getpid(), config.asgi_concurrency)
        reply: asyncio.Future[spawn.FromTemplate] = self.loop.create_future()
        try:
            socket.send_fds(self._sock, [spawn.encoder.encode(request)],
                            [fd, stacks_fd, descriptor_fd])
        except OSError as exc:
            raise TemplateError(f"cannot reach the template: {exc}") from None
        self._pending.append(reply)
        answer = await reply
        if isinstance(answer, spawn.Forked):
            return answer.pid  # checked and claimed in _dispatch
        if isinstance(answer, spawn.Stale):
            if not self.stale:
                self.stale = True
                self.pool.events.emit("template.stale", pool=config.name, pid=self.pid,
                                      changed=answer.path)
            raise TemplateStale(answer.path)
        raise TemplateError(getattr(answer, "reason", "unexpected answer"))

    def release(self) -> None:
        """A worker is done forking from this template."""
        self.users -= 1
        if self.retired and self.users <= 0:
            self.stop()

    def retire(self) -> None:
        """No new worker will use this template: stop it once the forks it owes are done."""
        self.retired = True
        if self.users <= 0:
            self.stop()

    def stop(self) -> None:
        self.retired = True
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self.pid and not self.exited:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)  # it runs no request: nothing to finish
        self._finish(TemplateError("the template was stopped"))

    # -- events -----------------------------------------------------------------------

    def _on_readable(self) -> None:
        while self._sock is not None:
            try:
                data = self._sock.recv(spawn.MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._finish(TemplateError("the template closed its socket"))
                return
            try:
                message = spawn.from_template.decode(data)
            except ValueError as exc:
                self._violation(f"an unreadable message ({exc})")
                return
            self._dispatch(message)

    def _violation(self, reason: str) -> None:
        """The template broke the spawn protocol: it runs the application's code, so it may
        be hostile. Say why, and stop it; its pool's workers are then spawned directly."""
        self.pool.events.emit("template.violation", pool=self.pool.config.name, pid=self.pid,
                              reason=reason[: spawn.MAX_MESSAGE])
        self._finish(TemplateError(f"the template broke the spawn protocol: {reason}"))
        self.stop()

    def _out_of_turn(self, message: spawn.FromTemplate) -> str | None:
        """Why `message` is not what the template may say now, or None. Load reports come
        once, before any fork; fork answers only answer a Fork, in order."""
        name = type(message).__name__
        if isinstance(message, spawn.Loaded | spawn.LoadFailed | spawn.Unforkable):
            return f"{name} after the load was reported" if self.loaded.done() else None
        return None if self._pending else f"{name} answers no Fork"

    def _dispatch(self, message: spawn.FromTemplate) -> None:
        name = self.pool.config.name
        problem = self._out_of_turn(message)
        if problem is not None:
            self._violation(problem)
            return
        if isinstance(message, spawn.Loaded):
            if self._load_timer is not None:
                self._load_timer.cancel()
            if CAN_RENICE:  # loaded: what it forks now serves at the server's priority
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, self.pid, os.getpriority(os.PRIO_PROCESS, 0))
            self.pool.events.emit("template.ready", pool=name, pid=self.pid,
                                  load_ms=message.load_ms, modules=message.modules)
            if not self.loaded.done():
                self.loaded.set_result(message)
        elif isinstance(message, spawn.LoadFailed):
            self._finish(TemplateLoadFailed(messages.reason_shown(message.reason)))
        elif isinstance(message, spawn.Unforkable):
            self.pool.spawn_directly(message.reason)
            self._finish(TemplateError(message.reason))
        else:
            reply = self._pending.popleft()
            if isinstance(message, spawn.Forked):
                problem = self.check_forked(message.pid)
                if problem is not None:
                    self.pool.events.emit("template.bad_pid", pool=self.pool.config.name,
                                          pid=self.pid, reported=message.pid, problem=problem)
                    message = spawn.ForkFailed(f"the template reported pid {message.pid}, "
                                               f"which {problem}")
                else:
                    CLAIMED.add(message.pid)  # before the worker could exit unclaimed
            if not reply.done():
                reply.set_result(message)
            if problem is not None:  # it lied about a pid: it forks nothing more
                self.stop()

    def check_forked(self, pid: int) -> str | None:
        """Why `pid` is not a worker this template just forked, or None. It must be a
        child of the server (re-parented when the template's intermediate process exited),
        run as the pool's user, and be claimed by nobody yet."""
        if pid in CLAIMED or pid <= 1:
            return "the server already knows"
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return "does not exist"
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        uid = self.pool.identity.uid if self.pool.identity is not None else os.geteuid()
        if int(fields.get("PPid", "0")) != os.getpid():
            return "is not a child of the server"
        if int(fields.get("Uid", "-1 ").split()[0]) != uid:
            return "does not run as the pool's user"
        return None

    def _load_expired(self, limit: float) -> None:
        self._load_timer = None
        if not self.loaded.done():
            self.pool.events.emit("template.startup_timeout", pool=self.pool.config.name,
                                  pid=self.pid, limit=limit)
            self._finish(TemplateLoadFailed(
                f"the applications were not imported within startupTimeLimit ({limit:g} s)"))
            self.stop()

    def _on_exit(self) -> None:
        self._on_readable()  # a Forked it sent before it died still counts
        self.loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self.exited = True
        assert self._proc is not None
        code = self._proc.wait()
        CLAIMED.discard(self.pid)
        fields = exit_fields(code)
        self.pool.events.emit("template.exit", pool=self.pool.config.name, pid=self.pid,
                              **fields)
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        self._finish(TemplateError(f"the template exited ({fields.get('signal', code)})"))
        self.pool.on_template_exit(self)

    def _finish(self, error: Exception) -> None:
        """Whoever still waits on this template gets `error`."""
        if self._load_timer is not None:
            self._load_timer.cancel()
            self._load_timer = None
        self.failed = True
        if not self.loaded.done():
            self.loaded.set_exception(error)
            self.loaded.exception()  # retrieved: no "never retrieved" warning if unused
        while self._pending:
            reply = self._pending.popleft()
            if not reply.done():
                reply.set_exception(error)
