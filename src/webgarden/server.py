"""The server process: the listener and the manager on one uvloop event loop.

Start, in order: bind every address (a port in use fails before any worker starts);
start each pool and wait until its first worker is ready or cannot load its application
(then stop and say why, in one line); serve.

Signals only record (`_on_signal`); the main coroutine handles them by name.
SIGTERM or SIGINT shuts down as a numbered sequence:

1. stop accepting connections;
2. close idle keep-alive connections; busy ones close after their response
   (`Connection: close`);
3. wait, up to the longest `shutdownTimeLimit`, until every in-flight and queued request
   is answered;
4. stop the workers (STOP, then SIGKILL after their `shutdownTimeLimit`);
5. close what is left and exit 0.

A second SIGTERM or SIGINT during the sequence skips the waiting.

SIGHUP, or a change to the configuration file, reloads it (`reload`): a file that does not
load, names a user that cannot be used or an address that cannot be bound is refused, the
reason logged (`config.rejected`), and the running configuration keeps serving. Otherwise
only what changed changes: added pools start, removed pools drain and stop, pools whose
settings or applications changed are recycled (overlapped: no request is lost), added
bindings start accepting and removed ones stop, established connections carry on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from collections.abc import Callable

import msgspec

from webgarden.admin.control import ControlError, ControlServer, call
from webgarden.admin.verbs import handler
from webgarden.aio import background
from webgarden.compression import CompressionRules
from webgarden.config.model import ServerConfig
from webgarden.config.unenforced import announce
from webgarden.events import EventLog
from webgarden.listener import errors
from webgarden.listener.pool_queue import PoolQueue
from webgarden.listener.request_fate import RequestFate
from webgarden.listener.server import BindError, Listener
from webgarden.manager import reaper
from webgarden.manager.identity import IdentityError
from webgarden.manager.pool import AppPool, resolve_identity
from webgarden.manager.template import CLAIMED


class StartupError(Exception):
    """The server cannot start. The message is one line for the user."""


class Server:
    def __init__(
        self, config: ServerConfig, config_path: str | None = None,
        control_path: str | None = None,
        adjust: Callable[[ServerConfig], ServerConfig] | None = None,
    ) -> None:
        # `adjust`: what the command line says over the file (serve --interface), applied
        # to the file at every reload as it was at start.
        self.adjust = adjust
        self.config = config
        self.config_path = config_path
        self.control: ControlServer | None = None
        self.control_path = control_path
        self._watcher: asyncio.Task[None] | None = None
        self.events = EventLog(config.event_log)
        self.signals: asyncio.Queue[str] = asyncio.Queue()
        self.queues = {p.name: PoolQueue(p.name, p.queue_length) for p in config.pools}
        try:
            self.pools = {
                p.name: AppPool(p, config.applications_of(p.name),
                                RequestFate(self.queues[p.name], self.events), self.events)
                for p in config.pools
            }
        except IdentityError as exc:
            raise StartupError(str(exc)) from None
        self._share_compression(config)
        self.listener = Listener(config, self.queues, self.events)
        self.stopping = False
        self._reaper: asyncio.TimerHandle | None = None

    def _share_compression(self, config: ServerConfig) -> None:
        """Dynamic responses are compressed by the workers, with the server's rules."""
        rules = msgspec.json.encode(CompressionRules.from_config(config.web_server)).decode()
        for pool in self.pools.values():
            pool.compression = rules

    def _on_signal(self, signum: int) -> None:
        self.signals.put_nowait(signal.Signals(signum).name)

    async def start(self) -> None:
        # Signals are recorded from the first moment: one that comes while the server starts
        # is handled as soon as it serves, never by the default action (death).
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, self._on_signal, signum)
        self.events.hold()
        if not reaper.become_subreaper():
            self.events.emit("server.no_subreaper", action="workers are spawned directly")
            AppPool.can_fork = False
        self._reaper = loop.call_later(reaper.STRAY_REAP_INTERVAL, self._reap_strays)
        try:
            self.listener.bind()
        except BindError as exc:
            self.events.discard()
            raise StartupError(str(exc)) from None
        if self.control_path:
            await self._start_control(self.control_path)
        for pool in self.pools.values():
            pool.start()
        await asyncio.gather(*(pool.started.wait() for pool in self.pools.values()))
        for pool in self.pools.values():
            if pool.start_error is not None:
                self.events.discard()
                await self._stop_pools(5.0)
                self.listener.stop_accepting()
                if self.control is not None:
                    self.control.close()
                raise StartupError(
                    f"pool {pool.config.name!r} cannot load its application: {pool.start_error}"
                )
        await self.listener.serve()
        self.events.release()
        announce(self.events, self.config.unsupported)  # config.unsupported, one per setting
        self.events.emit(
            "server.started",
            pid=os.getpid(),
            addresses=[f"{h}:{p}" for h, p in self.listener.addresses()],
            pools=list(self.pools),
            control=self.control_path,
        )

    def _reap_strays(self) -> None:
        for pid, code in reaper.reap_strays(CLAIMED):  # every worker and template
            self.events.emit("process.reaped", pid=pid, code=code)
        self._reaper = asyncio.get_running_loop().call_later(
            reaper.STRAY_REAP_INTERVAL, self._reap_strays)

    async def _start_control(self, path: str) -> None:
        try:
            call(path, {"verb": "list", "object": "apppools"}, timeout=2)
        except (ControlError, OSError, ValueError):
            pass  # nobody answers there: the path is free (or stale, and will be replaced)
        else:
            self.listener.stop_accepting()
            raise StartupError(
                f"another webgarden server answers on the control socket {path}; "
                "give this one its own (--control PATH)"
            )
        self.control = ControlServer(path, handler(self))
        try:
            await self.control.start()
        except OSError as exc:
            self.listener.stop_accepting()
            raise StartupError(f"cannot create the control socket {path}: {exc.strerror}") from None

    async def run(self) -> int:
        await self.start()
        return await self.run_started()

    async def run_started(self) -> int:
        if self.config_path is not None:
            self._watcher = asyncio.ensure_future(self._watch(self.config_path))
        while True:
            name = await self.signals.get()
            self.events.emit("server.signal", signal=name)
            if name in ("SIGTERM", "SIGINT"):
                break
            if name in ("SIGHUP", "FILE_CHANGED"):
                await self.reload()
        if self._watcher is not None:
            self._watcher.cancel()
        await self.shutdown()
        return 0

    async def _watch(self, path: str) -> None:
        """Turn changes of the configuration file into reloads (inotify, via watchfiles)."""
        try:
            from watchfiles import awatch
        except ImportError as exc:  # SIGHUP still reloads; say why saving the file does not
            self.events.emit("config.watch_unavailable", file=path, error=str(exc))
            return

        directory = os.path.dirname(os.path.abspath(path))
        target = os.path.abspath(path)
        async for changes in awatch(directory, debounce=200, step=50):
            if any(os.path.abspath(changed) == target for _, changed in changes):
                self.signals.put_nowait("FILE_CHANGED")

    async def reload(self) -> None:
        from webgarden.config.loader import ConfigError, diff, load

        assert self.config_path is not None
        try:
            new = load(self.config_path)
            if self.adjust is not None:
                new = self.adjust(new)
        except ConfigError as exc:
            self.events.emit("config.rejected", file=self.config_path, error=str(exc))
            return
        announce(self.events, new.unsupported)
        change = diff(self.config, new)
        if not change:
            self.events.emit("config.unchanged", file=self.config_path)
            return
        try:
            added = {
                name: AppPool(new.pool(name), new.applications_of(name),
                              RequestFate(PoolQueue(name, new.pool(name).queue_length),
                                          self.events), self.events)
                for name in change.pools_added
            }
            for name in change.pools_changed:
                resolve_identity(new.pool(name))  # refuse a user that cannot be used
            opened = self.listener.prepare(new)
        except (IdentityError, BindError) as exc:
            self.events.emit("config.rejected", file=self.config_path, error=str(exc))
            return
        for name, pool in added.items():
            self.pools[name] = pool
            self.queues[name] = pool.queue
        await self.listener.apply(new, dict(self.queues), opened)
        for pool in added.values():
            pool.start()
        for pool_change in change.pool_changes:
            # One path for every change of a pool's configuration (AppPool.apply); without
            # recycle (disallowRotationOnConfigChange) the workers are kept.
            name = pool_change.name
            self.pools[name].apply(new.pool(name), new.applications_of(name)
                                   if pool_change.recycle else None, recycle=pool_change.recycle)
        self._share_compression(new)
        self._reroute_queued(new)
        for name in change.pools_removed:
            background(self._retire_pool(name))
        self.config = new
        self.events.emit(
            "config.applied", file=self.config_path, pools_added=sorted(change.pools_added),
            pools_removed=sorted(change.pools_removed),
            pools_recycled=sorted(change.pools_to_recycle),
            bindings=[f"{a}:{p}" for a, p in sorted(self.listener.sockets)],
        )

    def _reroute_queued(self, new: ServerConfig) -> None:
        """Requests still queued follow their site and path to the new configuration's
        application: the workers that will serve them host the new one, not the old."""
        apps = {(site.name, app.path): app for site in new.sites for app in site.applications}
        for queue in list(self.queues.values()):
            for ex in list(queue.waiting):
                if ex.route is None:
                    continue
                app = apps.get((ex.route.site, ex.route.app.path))
                if app == ex.app:
                    continue  # unchanged
                queue.remove(ex)
                if app is None:
                    ex.fail(errors.NOT_FOUND)
                    continue
                ex.app = app
                ex.route = dataclasses.replace(ex.route, app=app, pool=app.pool)
                target = self.queues[app.pool]
                ex.pool = target
                page = target.submit(ex)
                if page is not None:
                    ex.fail(page)

    async def _retire_pool(self, name: str) -> None:
        """A pool the new configuration removed: serve what it holds, then stop it."""
        pool = self.pools[name]
        await pool.stop(pool.config.shutdown_time_limit)
        self.pools.pop(name, None)
        self.queues.pop(name, None)

    async def shutdown(self) -> None:
        limit = max((p.shutdown_time_limit for p in self.config.pools), default=90.0)
        self.events.emit("server.stopping", limit=limit)
        # 1. stop accepting; 2. close idle connections, the rest after their response
        self.listener.stop_accepting()
        self.listener.drain()
        # 3. wait for in-flight and queued requests (a second signal cuts it short)
        drained = asyncio.ensure_future(self.listener.wait_drained(limit))
        interrupted = asyncio.ensure_future(self.signals.get())
        await asyncio.wait({drained, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        interrupted.cancel()
        if not drained.done() or not drained.result():
            drained.cancel()
            self.events.emit("server.drain_incomplete", connections=len(self.listener.connections))
        # 4. stop the workers; 5. close what is left
        await self._stop_pools(limit if drained.done() else 1.0)
        for pool in self.pools.values():
            pool.cpu.remove_cgroup()
        self.listener.abort_all()
        self.listener.close()
        if self.control is not None:
            self.control.close()
        if self._reaper is not None:
            self._reaper.cancel()
        self.events.emit("server.stopped")
        self.events.close()

    async def _stop_pools(self, timeout: float) -> None:
        await asyncio.gather(*(pool.stop(timeout) for pool in self.pools.values()))
