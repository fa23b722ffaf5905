"""A pool's template process (smart spawning): imports the applications once, then forks
workers that are ready in milliseconds.

The manager starts it with `--control-fd` (a SOCK_SEQPACKET socket, messages in
`ipc.spawn`), the pool's applications, its import path and, under a root server, its
identity: started as root, it becomes the pool's user before it imports anything of the
applications (`worker.privileges`). It imports the worker's own modules and every
application, says `Loaded`, and then answers each `Fork`:

* If a module file it imported changed on disk since (mtime or size), it answers `Stale`
  and forks nothing: the manager replaces it with a fresh template, so a worker never runs
  code older than the files. The check stats every imported module's file, about a
  millisecond for a Flask application.
* Otherwise it forks twice: the intermediate child forks the worker and exits at once.
  The server is a child subreaper (PR_SET_CHILD_SUBREAPER), so the worker is re-parented
  to the server, which reaps it and reads its exit code as it does for any worker. The
  worker waits for that re-parenting, sets its parent-death signal to the server's death,
  and runs `worker.main.serve` on the descriptors that came with the Fork.

The template never serves a request and starts no thread (a fork copies only the thread
that calls it): if importing an application started threads, it answers `Unforkable` and
exits, and the manager spawns that pool's workers directly. `gc.freeze()` before the first
fork keeps the imported objects out of the workers' garbage collections, so their pages
stay shared with the template.

EOF on the control socket (the manager closed it, or the server is gone) ends the template;
so does the server's death (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import socket
import sys
import threading
import time
import traceback

from webgarden.ipc import spawn
from webgarden.worker import privileges
from webgarden.worker.main import (
    APP_PATHS,
    EXIT_LOAD_FAILED,
    EXIT_OK,
    AppLoadError,
    load_app,
    serve,
)

EXIT_UNFORKABLE = 5  # the applications started threads at import
#: How long a new worker waits to be re-parented to the server, seconds.
REPARENT_WAIT = 1.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="webgarden-template")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--app", action="append", default=[], required=True)
    privileges.add_arguments(parser)
    return parser.parse_args(argv)


def module_files() -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of the file of every imported module that has one."""
    files: dict[str, tuple[int, int]] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path not in files:
            try:
                st = os.stat(path)
            except OSError:
                continue
            files[path] = (st.st_mtime_ns, st.st_size)
    return files


def first_changed(files: dict[str, tuple[int, int]]) -> str | None:
    for path, (mtime, size) in files.items():
        try:
            st = os.stat(path)
        except OSError:
            return path
        if st.st_mtime_ns != mtime or st.st_size != size:
            return path
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    privileges.die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    control = socket.socket(fileno=args.control_fd)
    control.setblocking(True)

    def send(message: spawn.FromTemplate) -> None:
        control.send(spawn.encoder.encode(message))

    try:
        APP_PATHS[:] = privileges.enter_pool(args)  # as the pool's user from here on
    except (privileges.PrivilegeError, OSError) as exc:
        send(spawn.LoadFailed(f"cannot become the pool's user: {exc}"))
        return EXIT_LOAD_FAILED

    started = time.perf_counter()
    try:
        for spec in args.app:
            load_app(spec)
    except AppLoadError as exc:
        send(spawn.LoadFailed(str(exc)))
        return EXIT_LOAD_FAILED
    if threading.active_count() > 1:
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.main_thread())
        send(spawn.Unforkable(f"importing the application started threads ({names})"))
        return EXIT_UNFORKABLE
    files = module_files()
    sys.stdout.flush()  # what the import printed is printed once, not again by each fork
    sys.stderr.flush()
    gc.collect()
    gc.freeze()
    send(spawn.Loaded(os.getpid(), round((time.perf_counter() - started) * 1000, 1), len(files)))

    while True:
        data, fds, _, _ = socket.recv_fds(control, spawn.MAX_MESSAGE, spawn.FORK_FDS)
        if not data:
            return EXIT_OK  # the manager is done with this template
        try:
            request = spawn.fork_decoder.decode(data)
            if len(fds) != spawn.FORK_FDS:
                send(spawn.ForkFailed(f"a Fork came with {len(fds)} descriptors"))
                continue
            changed = first_changed(files)
            if changed is not None:
                send(spawn.Stale(privileges.shown(changed)))
                continue
            try:
                pid = fork_worker(request, fds, control, args.app)
            except OSError as exc:
                send(spawn.ForkFailed(f"cannot fork a worker: {exc}"))
            else:
                send(spawn.Forked(pid))
        finally:
            for fd in fds:
                os.close(fd)


def fork_worker(
    request: spawn.Fork, fds: list[int], control: socket.socket, specs: list[str]
) -> int:
    """Fork a worker through an intermediate process that exits at once; return its pid."""
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(read_end)
            middle = os.getpid()
            worker = os.fork()
            if worker == 0:
                os.close(write_end)
                become_worker(request, fds, control, specs, middle)
            os.write(write_end, worker.to_bytes(4, "big"))
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        reported = os.read(read_end, 4)
    finally:
        os.close(read_end)
        os.waitpid(middle, 0)
    if len(reported) != 4:
        raise OSError("the intermediate process could not fork")
    return int.from_bytes(reported, "big")


def become_worker(
    request: spawn.Fork, fds: list[int], control: socket.socket, specs: list[str], middle: int
) -> None:
    """The forked worker: never returns. `middle` is the intermediate process's pid."""
    code = 1
    try:
        control.close()
        deadline = time.monotonic() + REPARENT_WAIT
        while os.getppid() == middle and time.monotonic() < deadline:
            os.sched_yield()  # the intermediate process exits right after the fork
        if os.getppid() == request.server_pid:
            privileges.die_with_parent()
        code = serve(fds[0], request.pool, specs, request.threads, request.prefetch, fds[1],
                     request.compression, descriptor_fd=fds[2],
                     asgi_concurrency=request.asgi_concurrency)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
