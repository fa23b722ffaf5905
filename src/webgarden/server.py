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
"""

from __future__ import annotations

import asyncio
import os
import signal

from webgarden.config.model import ServerConfig
from webgarden.listener.pool_queue import PoolQueue
from webgarden.listener.server import BindError, Listener
from webgarden.manager.events import EventLog
from webgarden.manager.identity import IdentityError
from webgarden.manager.pool import AppPool


class StartupError(Exception):
    """The server cannot start. The message is one line for the user."""


class Server:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.events = EventLog(config.event_log)
        self.signals: asyncio.Queue[str] = asyncio.Queue()
        self.queues = {p.name: PoolQueue(p.name, p.queue_length) for p in config.pools}
        try:
            self.pools = {
                p.name: AppPool(p, config.applications_of(p.name), self.queues[p.name], self.events)
                for p in config.pools
            }
        except IdentityError as exc:
            raise StartupError(str(exc)) from None
        self.listener = Listener(config, self.queues, self.events)
        self.stopping = False

    def _on_signal(self, signum: int) -> None:
        self.signals.put_nowait(signal.Signals(signum).name)

    async def start(self) -> None:
        self.events.hold()
        try:
            self.listener.bind()
        except BindError as exc:
            self.events.discard()
            raise StartupError(str(exc)) from None
        for pool in self.pools.values():
            pool.start()
        await asyncio.gather(*(pool.started.wait() for pool in self.pools.values()))
        for pool in self.pools.values():
            if pool.start_error is not None:
                self.events.discard()
                await self._stop_pools(5.0)
                self.listener.stop_accepting()
                raise StartupError(
                    f"pool {pool.config.name!r} cannot load its application: {pool.start_error}"
                )
        await self.listener.serve()
        self.events.release()
        self.events.emit(
            "server.started",
            pid=os.getpid(),
            addresses=[f"{h}:{p}" for h, p in self.listener.addresses()],
            pools=list(self.pools),
        )

    async def run(self) -> int:
        await self.start()
        return await self.run_started()

    async def run_started(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, self._on_signal, signum)
        while True:
            name = await self.signals.get()
            self.events.emit("server.signal", signal=name)
            if name in ("SIGTERM", "SIGINT"):
                break
        await self.shutdown()
        return 0

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
        self.listener.abort_all()
        self.listener.close()
        self.events.emit("server.stopped")
        self.events.close()

    async def _stop_pools(self, timeout: float) -> None:
        await asyncio.gather(*(pool.stop(timeout) for pool in self.pools.values()))
