"""One worker process as the manager sees it: spawn, watch, stop, kill.

The process is started with one end of a socketpair (`--fd`); the other end becomes a
`WorkerLink` on the server's loop. Its exit is noticed through a pidfd registered with the
loop (no polling, no SIGCHLD handler), and its state moves only through the table in
`manager.states`. Exit codes are the worker's named codes (`worker.main.EXIT_*`); a
negative code is the signal that ended it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from webgarden.ipc import messages
from webgarden.ipc.frames import FrameType
from webgarden.listener.upstream import WorkerLink
from webgarden.manager.states import WorkerState, next_worker_state

if TYPE_CHECKING:
    from webgarden.manager.pool import AppPool

#: Socket buffer for the listener <-> worker socketpair, each direction.
SOCKET_BUFFER = 1024 * 1024


class WorkerProcess:
    def __init__(self, pool: AppPool) -> None:
        self.pool = pool
        self.state = WorkerState.SPAWNING
        self.pid = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.link: WorkerLink | None = None
        self.started_at = time.time()
        self.ready_at: float | None = None
        self.exit_code: int | None = None
        self.load_error: str | None = None
        self.retiring = False  # being replaced: drains once its replacement is ready
        self.loop = asyncio.get_event_loop()
        self._pidfd = -1
        self._timers: list[asyncio.TimerHandle] = []

    def transition(self, event: str) -> None:
        self.state = next_worker_state(self.state, event)

    async def spawn(self) -> None:
        pool = self.pool
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for sock in (parent, child):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        argv = [sys.executable, "-m", "webgarden.worker", "--fd", str(child.fileno())]
        argv += ["--pool", pool.config.name, "--threads", str(pool.config.threads)]
        argv += ["--prefetch", str(pool.config.worker_prefetch)]
        apps = pool.apps  # this worker's generation: a recycle may change the pool's list
        for app in apps:
            argv += ["--app", app.app]
        for path in (os.getcwd(), *pool.config.python_path):
            argv += ["--path", path]
        identity = pool.identity
        switch: dict[str, object] = {}
        if identity is not None:
            switch = {"user": identity.uid, "group": identity.gid,
                      "extra_groups": list(identity.groups)}
        try:
            self.proc = subprocess.Popen(
                argv, pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, **switch  # type: ignore[call-overload]
            )
        except OSError as exc:
            parent.close()
            self.load_error = f"cannot start a worker process: {exc}"
            self.transition("exit")
            pool.on_worker_exit(self)
            return
        finally:
            child.close()
        self.pid = self.proc.pid
        self.transition("spawned")
        self._pidfd = os.pidfd_open(self.pid)
        self.loop.add_reader(self._pidfd, self._on_exit)
        pool.events.emit(
            "worker.start", pool=pool.config.name, pid=self.pid,
            user=identity.user if identity else None,
        )
        self._timers.append(
            self.loop.call_later(pool.config.startup_time_limit, self._startup_expired)
        )
        _, self.link = await self.loop.create_unix_connection(
            lambda: WorkerLink(
                self._on_control,
                lambda link, lost: pool.on_link_lost(self, lost),
                lambda link: pool.on_link_free(self),
            ),
            sock=parent,
        )
        self.link.apps = {app: index for index, app in enumerate(apps)}

    # -- messages from the worker -----------------------------------------------------

    def _on_control(self, ftype: int, payload: bytes) -> None:
        if ftype == FrameType.READY:
            ready = messages.ready_decoder.decode(payload)
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
        elif ftype == FrameType.ABORT:
            self.load_error = messages.abort_decoder.decode(payload).reason
            self.pool.events.emit(
                "worker.load_failed", pool=self.pool.config.name, pid=self.pid,
                error=self.load_error,
            )

    # -- lifecycle --------------------------------------------------------------------

    def _on_exit(self) -> None:
        self.loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        for timer in self._timers:
            timer.cancel()
        assert self.proc is not None
        self.exit_code = code = self.proc.wait()
        self.transition("exit")
        fields: dict[str, object] = {"pool": self.pool.config.name, "pid": self.pid}
        if code < 0:
            fields["signal"] = signal.Signals(-code).name
        else:
            fields["code"] = code
        self.pool.events.emit("worker.exit", **fields)
        if self.link is not None:
            self.link.close()
        self.pool.on_worker_exit(self)

    def _startup_expired(self) -> None:
        if self.state in (WorkerState.SPAWNING, WorkerState.STARTING):
            self.pool.events.emit(
                "worker.startup_timeout", pool=self.pool.config.name, pid=self.pid,
                limit=self.pool.config.startup_time_limit,
            )
            self.kill()

    def drain(self) -> None:
        """Out of service: no new requests; STOP once the last one ends."""
        if self.state in (WorkerState.EXITED, WorkerState.ORPHANED):
            return
        self.transition("drain")
        if self.link is not None:
            self.pool.queue.remove_upstream(self.link)
        self._timers.append(
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
            self.kill()

    def kill(self) -> None:
        if self.pid and self.state is not WorkerState.EXITED:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    @property
    def alive(self) -> bool:
        return self.state is not WorkerState.EXITED
