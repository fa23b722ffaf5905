"""A worker that hosts ASGI applications: one event loop (uvloop) on the main thread.

Theory of operation:

* The loop reads the channel itself: the socket stays blocking (WSGI threads write to it
  with `sendall`), and the loop reads it when epoll says it is readable, with
  `MSG_DONTWAIT`. The loop's own writes (one per turn, `ASGIHost.flush`) go through the
  same locked `Channel.send` and may block while the listener's receive buffer is full:
  the listener reads its workers eagerly, and response bodies are bounded by each
  stream's window, so that wait is short and bounded. There is no reader thread to hand
  frames across, so a request for an ASGI application starts its task in the same turn
  its frame is read, and the frames of one `recv` (often dozens of requests) are routed
  in one go.
* Routing is by the application index in each REQUEST: an ASGI app's stream goes to the
  `ASGIHost` (a task on this loop); a WSGI app's to the channel's request queue, which the
  WSGI threads pull from, exactly as in a WSGI-only worker. Body, CREDIT, FILE_DONE and
  ABORT frames update the stream as `Channel` does (waking WSGI threads on its condition)
  and wake the ASGI tasks waiting on it. So one worker hosts both kinds side by side.
* The capacity announced in READY is `asgiConcurrency` for the ASGI applications plus
  threads and prefetch for the WSGI ones: the listener's pull model and the pool's queue
  work unchanged.
* Startup: lifespan startup of each ASGI application (`worker.lifespan`) before READY; a
  failure is a load failure (ABORT on stream 0 with the app's message, `EXIT_LOAD_FAILED`).
* PING is answered by the loop, so a pong says the loop still turns: an ASGI app that
  blocks it is a hung worker, as an app holding the GIL is for WSGI.
* STOP: stop nothing abruptly. Keep reading (in-flight streams still need CREDIT and
  ABORT), wait for the ASGI tasks and the WSGI threads to finish, run lifespan shutdown,
  then exit `EXIT_OK`. The manager kills a worker still running after `shutdownTimeLimit`.
* EOF (the server is gone): exit at once, `EXIT_LISTENER_GONE`.
* SIGUSR2: faulthandler dumps every thread's stack from the signal handler (it needs no
  GIL), then a Python handler adds every asyncio task's stack: a hung coroutine is a task,
  not a thread.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import signal
import socket
import threading
from types import FrameType as PyFrame
from typing import Any, Literal, TextIO

import uvloop

from webgarden.compression import CompressionRules
from webgarden.ipc import frames, messages
from webgarden.ipc.frames import FLAG_END, FrameType
from webgarden.worker.asgi import ASGIApp, ASGIHost
from webgarden.worker.channel import RECV_SIZE, Channel, Stream
from webgarden.worker.lifespan import Lifespan, LifespanFailed
from webgarden.worker.wsgi import WSGIApp, WSGIHost

#: How the loop ended: STOP and the stop sequence done; a lifespan startup failed (ABORT
#: sent); the server is gone (EOF).
Outcome = Literal["stopped", "failed", "gone"]
#: Coroutines followed down one task's await chain in a stack dump.
MAX_AWAIT_DEPTH = 100
_STREAM_UPDATES = frozenset({FrameType.CREDIT, FrameType.FILE_DONE, FrameType.ABORT})


class Hosted:
    """One application as the worker serves it."""

    __slots__ = ("app", "interface", "lifespan", "spec")

    def __init__(self, app: Any, interface: str, spec: str, lifespan: str) -> None:
        self.app = app
        self.interface = interface  # "wsgi" or "asgi", resolved
        self.spec = spec
        self.lifespan = lifespan  # "auto", "on" or "off"


class LoopWorker:
    def __init__(
        self, channel: Channel, hosted: list[Hosted], pool: str, threads: int, prefetch: int,
        concurrency: int, compression: CompressionRules | None,
    ) -> None:
        self.channel = channel
        self.hosted = hosted
        self.loop = uvloop.new_event_loop()
        asgi_apps: dict[int, ASGIApp] = {
            i: h.app for i, h in enumerate(hosted) if h.interface == "asgi"}
        self.asgi = ASGIHost(asgi_apps, channel, pool, compression, self.loop)
        self.wsgi: WSGIHost | None = None
        self.threads: list[threading.Thread] = []
        if len(asgi_apps) < len(hosted):
            apps: list[WSGIApp] = [h.app for h in hosted]  # indices kept; ASGI ones unused
            self.wsgi = WSGIHost(apps, channel, pool, compression)
            self.threads = [threading.Thread(target=self.wsgi.serve_forever,
                                             name=f"wsgi-{i}", daemon=True)
                            for i in range(threads)]
        self.capacity = concurrency + (threads + prefetch if self.wsgi is not None else 0)
        self.lifespans = [
            Lifespan(h.app, h.spec, h.lifespan, self.asgi.states.setdefault(i, {}))
            for i, h in enumerate(hosted) if h.interface == "asgi" and h.lifespan != "off"
        ]
        self.stopping = False
        self.done: asyncio.Future[bool] = self.loop.create_future()  # True: STOP, False: EOF
        self._decoder = frames.FrameDecoder()
        self._buffer = bytearray(RECV_SIZE)
        self._view = memoryview(self._buffer)

    def run(self) -> Outcome:
        """Serve until STOP or EOF."""
        asyncio.set_event_loop(self.loop)
        try:
            return self.loop.run_until_complete(self._main())
        finally:
            self.asgi.flush()

    async def _main(self) -> Outcome:
        channel = self.channel
        for lifespan in self.lifespans:
            try:
                await lifespan.startup()
            except LifespanFailed as exc:
                payload = messages.encoder.encode(messages.Abort(str(exc)))
                channel.send_frame(FrameType.ABORT, 0, payload)
                return "failed"
        for thread in self.threads:
            thread.start()
        self.loop.add_reader(channel.sock.fileno(), self._on_readable)
        ready = messages.Ready(os.getpid(), self.capacity)
        channel.send_frame(FrameType.READY, 0, messages.encoder.encode(ready))
        if not await self.done:
            return "gone"
        # STOP: the listener dispatches nothing more; finish what runs.
        if self.asgi.tasks:
            await asyncio.wait(list(self.asgi.tasks))
        if self.threads:
            for _ in self.threads:
                channel.requests.put(None)
            await self.loop.run_in_executor(None, _join, self.threads)
        for lifespan in reversed(self.lifespans):
            await lifespan.shutdown()
        self.loop.remove_reader(channel.sock.fileno())
        return "stopped"

    # -- reading ------------------------------------------------------------------------

    def _on_readable(self) -> None:
        channel = self.channel
        try:
            n = channel.sock.recv_into(self._buffer, RECV_SIZE, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0
        try:
            if n:
                self._route(self._decoder.feed(self._view[:n]))
                return
        except frames.ProtocolError:
            pass
        self._closed()

    def _route(self, decoded: list[frames.Frame]) -> None:
        channel, asgi = self.channel, self.asgi
        streams = channel.streams
        decode_head = messages.request_decoder.decode
        for ftype, flags, sid, payload in decoded:
            if ftype == FrameType.REQUEST:
                stream = Stream(sid, decode_head(payload), bool(flags & FLAG_END))
                streams[sid] = stream
                if stream.head.app in asgi.apps or self.wsgi is None:
                    asgi.start(stream)  # (an unknown app index there: a 500, not a hang)
                else:
                    channel.requests.put(stream)
            elif ftype == FrameType.REQUEST_BODY:
                channel._on_body(sid, payload, flags)
                asgi.wake(sid)
            elif ftype in _STREAM_UPDATES:
                channel._on_update(ftype, sid, payload)
                asgi.wake(sid)
            elif ftype == FrameType.PING:
                asgi.write_frame(FrameType.PONG, 0, payload)
            elif ftype == FrameType.DRAIN:  # the recycle's deadline: WebSockets get 1012
                self.asgi.websockets.drain(messages.read_count(payload) / 1000)
            elif ftype == FrameType.STOP:
                self.stopping = True
                if not self.done.done():
                    self.done.set_result(True)

    def _closed(self) -> None:
        """EOF or an unreadable frame: the server is gone."""
        channel = self.channel
        self.loop.remove_reader(channel.sock.fileno())
        channel.closed = True
        with channel.cond:
            channel.cond.notify_all()
        self.asgi.wake_all()
        if not self.done.done():
            self.done.set_result(False)  # after STOP, the stop sequence still runs


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join()


def dump_tasks_on(signum: int, stacks: TextIO, loop: asyncio.AbstractEventLoop) -> None:
    """On `signum`, after faulthandler's thread dump, write every asyncio task's stack."""

    def handler(_signum: int, _frame: PyFrame | None) -> None:
        tasks = asyncio.all_tasks(loop)
        stacks.write(f"\nasyncio tasks ({len(tasks)}), most recent call last:\n")
        for task in tasks:
            stacks.write(f"Task {task.get_name()!r}:\n{task_stack(task)}")
        stacks.flush()

    # faulthandler's own handler first (it dumps the threads from C, with no GIL needed),
    # chained to Python's, which runs the handler above at the next bytecode of the loop.
    faulthandler.unregister(signum)
    signal.signal(signum, handler)
    faulthandler.register(signum, file=stacks, all_threads=True, chain=True)


def task_stack(task: asyncio.Task[Any]) -> str:
    """The frames a suspended task is awaiting in, outermost first: the whole chain of
    coroutines (Task.print_stack shows only the outermost frame of a suspended one)."""
    lines = []
    awaited: Any = task.get_coro()
    for _ in range(MAX_AWAIT_DEPTH):
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}\n')
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return "".join(lines)
