"""A worker process (IIS: w3wp.exe): one process of one pool, started by the manager.

The manager <-> worker contract:

* The worker gets its socketpair end as `--fd`, its pool's applications as `--app`
  (repeated, in the order the listener indexes them) and its thread count.
* It loads every application, then sends READY with its capacity: its threads plus its
  prefetch, the requests it may hold beyond those running (as w3wp keeps several receives
  outstanding on its HTTP.sys queue). Prefetched requests let the listener and the worker
  batch their frames; a prefetched request whose client left is skipped, not run.
* A load failure sends ABORT on stream 0 with a one-line reason and exits with
  `EXIT_LOAD_FAILED`.
* It answers PING with PONG from its reader thread, so a ping measures whether the
  interpreter still runs Python at all (an app holding the GIL in C fails it).
* STOP: finish what runs, then exit `EXIT_OK`. The listener sends STOP only after it has
  stopped dispatching to this worker.
* EOF on the socket (the server is gone) ends the process at once, and so does the server's
  death (PR_SET_PDEATHSIG), so a worker never outlives its server.
* SIGUSR2 writes the Python stacks of all its threads to `--stacks-fd` (faulthandler), so
  the manager can log them before it kills a worker that is hung.
* SIGINT and SIGTERM are ignored: a Ctrl-C in a terminal reaches the whole process group,
  and systemd's default KillMode signals every process of the unit; the server, not each
  worker, decides how to shut down (STOP, then SIGKILL after `shutdownTimeLimit`).
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from typing import Any

import msgspec

import webgarden.worker
from webgarden.compression import CompressionRules
from webgarden.config.pools import ASGI_CONCURRENCY
from webgarden.ipc import apps, messages
from webgarden.ipc.frames import FrameType
from webgarden.worker import interface, privileges
from webgarden.worker.channel import Channel
from webgarden.worker.loop import Hosted, LoopWorker, dump_tasks_on
from webgarden.worker.wsgi import WSGIHost

EXIT_OK = 0
EXIT_LOAD_FAILED = 3  # the application could not be imported or is not callable
EXIT_LISTENER_GONE = 4  # the socketpair closed under us

#: Set by `--verbose` on `run` or `serve` (inherited): a failed import prints its traceback.
VERBOSE_ENV = "WEBGARDEN_VERBOSE"
#: The pool's import path as this process reaches it: a failed import is located in the
#: deepest frame under one of these (the application's code, not a library's).
APP_PATHS: list[str] = []


class AppLoadError(Exception):
    """The application named in the configuration cannot be loaded. The message is one line."""


def load_app(argument: str) -> Hosted:
    """Import the application an `--app` argument names (`ipc.apps`) and tell its interface
    (`worker.interface`); AppLoadError says, in one line, why it cannot be served."""
    try:
        spec, configured, lifespan = apps.decode(argument)
    except ValueError as exc:
        raise AppLoadError(str(exc)) from None
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise AppLoadError(f"{spec!r} is not of the form 'module:callable'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the app's own import errors are the user's to see
        if os.environ.get(VERBOSE_ENV):
            text = "".join(traceback.format_exception(exc))
            sys.stderr.write(privileges.shown_text(text))
            sys.stderr.flush()
        place = failing_line(exc)
        raise AppLoadError(
            f"cannot import module {module_name!r}: {place + ': ' if place else ''}"
            f"{type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise AppLoadError(f"{spec!r} is a {type(obj).__name__}, not a callable application")
    try:
        kind = interface.resolve(obj, spec, configured)
    except interface.InterfaceMismatch as exc:
        raise AppLoadError(str(exc)) from None
    return Hosted(obj, kind, spec, lifespan)


def failing_line(exc: BaseException) -> str:
    """"file:line" of the frame that failed: the deepest in the application's code (under
    APP_PATHS), else the deepest outside the import machinery; "" if there is none."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f"{privileges.shown(exc.filename)}:{exc.lineno}"
    machinery = (os.path.dirname(importlib.__file__) + "/", load_app.__code__.co_filename)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(("<", *machinery))]
    roots = tuple(p.rstrip("/") + "/" for p in APP_PATHS)
    mine = [f for f in frames if roots and f.filename.startswith(roots)]
    if not (mine or frames):
        return ""
    frame = (mine or frames)[-1]
    return f"{privileges.shown(frame.filename)}:{frame.lineno}"


def _rules(text: str) -> CompressionRules | None:
    if not text:
        return None
    rules = msgspec.json.decode(text, type=CompressionRules)
    return rules if rules.dynamic and rules.dynamic_codings else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="webgarden-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--app", action="append", default=[], required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--prefetch", type=int, default=0)
    parser.add_argument("--asgi-concurrency", type=int, default=ASGI_CONCURRENCY)
    privileges.add_arguments(parser)
    parser.add_argument("--stacks-fd", type=int, default=-1)
    parser.add_argument("--descriptor-fd", type=int, default=-1,
                        help="SOCK_SEQPACKET socket for passing files to the listener")
    parser.add_argument("--compression", default="",
                        help="the server's compression rules, JSON (dynamic responses)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    privileges.die_with_parent()
    try:
        APP_PATHS[:] = privileges.enter_pool(args)  # as the pool's user from here on
    except (privileges.PrivilegeError, OSError) as exc:
        channel = Channel(socket.socket(fileno=args.fd))
        reason = f"cannot become the pool's user: {exc}"
        channel.send_frame(FrameType.ABORT, 0, messages.encoder.encode(messages.Abort(reason)))
        return EXIT_LOAD_FAILED
    return serve(args.fd, args.pool, args.app, args.threads, args.prefetch, args.stacks_fd,
                 args.compression, descriptor_fd=args.descriptor_fd,
                 asgi_concurrency=args.asgi_concurrency)


def serve(
    fd: int, pool: str, specs: list[str], threads: int, prefetch: int, stacks_fd: int,
    compression: str, descriptor_fd: int = -1, asgi_concurrency: int = ASGI_CONCURRENCY,
) -> int:
    """Run the worker on socket `fd`: load `specs` (already imported when forked from a
    template), start `threads`, say READY, serve until STOP. Returns the exit code."""
    stacks = None
    if stacks_fd >= 0:
        # SIGUSR2 dumps every thread's stack to the manager, from inside the signal handler:
        # faulthandler needs no GIL, so it works even when the app holds the interpreter.
        stacks = os.fdopen(stacks_fd, "w", buffering=1)
        faulthandler.register(signal.SIGUSR2, file=stacks, all_threads=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s webgarden worker[{os.getpid()}] {pool}: %(message)s",
        force=True,
    )
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    # The descriptor socket carries files for the zero-copy path (SCM_RIGHTS) to the
    # listener; without it, wsgi.file_wrapper is read and sent as body frames.
    fd_sock = socket.socket(fileno=descriptor_fd) if descriptor_fd >= 0 else None
    channel = Channel(sock, fd_sock)
    try:
        hosted = [load_app(spec) for spec in specs]
    except AppLoadError as exc:
        channel.send_frame(FrameType.ABORT, 0, messages.encoder.encode(messages.Abort(str(exc))))
        return EXIT_LOAD_FAILED

    webgarden.worker._channel = channel  # for request_recycle()
    if any(h.interface == "asgi" for h in hosted):
        # One event loop for the ASGI apps (and threads for any WSGI app beside them).
        worker = LoopWorker(channel, hosted, pool, threads, prefetch, asgi_concurrency,
                            _rules(compression))
        if stacks is not None:
            dump_tasks_on(signal.SIGUSR2, stacks, worker.loop)
        outcome = worker.run()
        if outcome == "gone":
            os._exit(EXIT_LISTENER_GONE)  # the server is gone: nobody will read our answers
        return EXIT_LOAD_FAILED if outcome == "failed" else EXIT_OK
    host = WSGIHost([h.app for h in hosted], channel, pool, _rules(compression))
    workers = [
        threading.Thread(target=host.serve_forever, name=f"wsgi-{i}", daemon=True)
        for i in range(threads)
    ]
    for thread in workers:
        thread.start()
    ready = messages.Ready(os.getpid(), threads + prefetch)
    channel.send_frame(FrameType.READY, 0, messages.encoder.encode(ready))

    stopping = threading.Event()

    def on_control(ftype: int, payload: bytes) -> None:
        if ftype == FrameType.STOP:
            stopping.set()
            sock.shutdown(socket.SHUT_RD)  # ends run_reader

    channel.run_reader(on_control)
    if not stopping.is_set():
        os._exit(EXIT_LISTENER_GONE)  # the server is gone: nobody will read our answers
    for _ in workers:
        channel.requests.put(None)
    for thread in workers:
        thread.join()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
