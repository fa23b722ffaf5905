"""Real servers for tests: start `webgarden run` as a process, talk to it over real sockets.

Synchronization is on events, never on sleeps: the server binds port 0 and reports its
address in the `server.started` event; tests wait for event-log lines with `wait_event`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"

Event = dict[str, Any]


class ServerProcess:
    def __init__(self, args: list[str], tmp: Path, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.event_log = tmp / f"events-{time.monotonic_ns()}.jsonl"
        self.event_log.touch()
        self.stderr_path = tmp / f"stderr-{time.monotonic_ns()}.log"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        # SystemDrive: IIS's default log directory (%SystemDrive%\inetpub\logs\LogFiles)
        # lands in the test's own directory, not in /var/log/webgarden.
        full_env = {**os.environ, "PYTHONPATH": str(APPS), "PYTHONUNBUFFERED": "1",
                    "SystemDrive": str(tmp), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "webgarden", *args, "--event-log", str(self.event_log)],
            cwd=str(cwd or APPS),
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=full_env,
        )
        self._offset = 0
        self._seen: list[Event] = []
        try:
            started = self.wait_event(lambda e: e["event"] == "server.started", timeout=60)
        except BaseException:
            self.stop(timeout=5)  # never handed to the test: nobody else would stop it
            raise
        host, port = started["addresses"][0].rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.url = f"http://{host}:{port}"
        self.control = started.get("control")

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a `webgarden` admin verb against this server's control socket."""
        return subprocess.run(
            [sys.executable, "-m", "webgarden", *args, "--control", str(self.control)],
            capture_output=True, text=True, timeout=60,
        )

    # -- events -----------------------------------------------------------------------

    def events(self) -> list[Event]:
        with open(self.event_log, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            if line.strip():
                self._seen.append(json.loads(line))
        return self._seen

    def wait_event(self, predicate: Callable[[Event], bool], timeout: float = 30,
                   after: int = 0) -> Event:
        """The first event (from index `after`) that matches; waits for it, up to `timeout`."""
        deadline = time.monotonic() + timeout
        checked = after
        while True:
            events = self.events()
            for event in events[checked:]:
                if predicate(event):
                    return event
            checked = max(checked, len(events))
            if self.proc.poll() is not None and not self._more_pending():
                raise AssertionError(
                    f"server exited ({self.proc.returncode}) before the event; stderr:\n"
                    + self.stderr_path.read_text(errors="replace")[-3000:]
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching event within {timeout}s; events: {events[-10:]}")
            _wait_for_growth(self.event_log, self._offset, 0.05)

    def _more_pending(self) -> bool:
        return os.path.getsize(self.event_log) > self._offset

    def worker_pids(self) -> list[int]:
        """Pids of the workers alive now, by the event log."""
        alive: dict[int, bool] = {}
        for e in self.events():
            if e["event"] == "worker.ready":
                alive[e["pid"]] = True
            elif e["event"] == "worker.exit":
                alive.pop(e["pid"], None)
        return list(alive)

    # -- life -------------------------------------------------------------------------

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._stderr.close()
        return code

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


class _Inotify:
    """Wake when a file is written (inotify through ctypes): waits are events, not sleeps."""

    IN_MODIFY = 0x2
    IN_CLOEXEC = 0o2000000
    IN_NONBLOCK = 0o4000

    def __init__(self) -> None:
        import ctypes

        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(self.IN_CLOEXEC | self.IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.watched: set[str] = set()

    def wait(self, path: Path, timeout: float) -> None:
        import select

        if str(path) not in self.watched:
            self.libc.inotify_add_watch(self.fd, str(path).encode(), self.IN_MODIFY)
            self.watched.add(str(path))
        readable, _, _ = select.select([self.fd], [], [], timeout)
        if readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self.fd, 65536)


_INOTIFY = _Inotify()


def _wait_for_growth(path: Path, size: int, timeout: float) -> None:
    """Block until the file grows past `size`, up to `timeout`."""
    if os.path.getsize(path) <= size:
        _INOTIFY.wait(path, timeout)


class WorkerKiller:
    """SIGKILLs one of the server's workers every `period` seconds while in a `with` block
    (the fault's period is what a test states; it synchronizes nothing)."""

    def __init__(self, server: ServerProcess, period: float, pick: str = "round-robin") -> None:
        import threading

        self.server, self.period, self.pick = server, period, pick
        self.killed: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        import random

        while not self._stop.wait(self.period):
            pids = self.server.worker_pids()
            if not pids:
                continue
            victim = random.choice(pids) if self.pick == "random" else pids[
                len(self.killed) % len(pids)]
            try:
                os.kill(victim, signal.SIGKILL)
                self.killed.append(victim)
            except ProcessLookupError:
                pass

    def __enter__(self) -> WorkerKiller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def free_port() -> int:
    """A loopback port nobody listens on now (for a configuration file's binding)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raw_request(port: int, data: bytes, host: str = "127.0.0.1", timeout: float = 10) -> bytes:
    """Send raw bytes; read until the server closes the connection (or `timeout`)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


class Client:
    """A raw HTTP/1.1 client on one connection: send bytes, read whole responses in order."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 30) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(1 << 20)
        self.buf += chunk
        return bool(chunk)

    def read_response(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"closed before a response head: {self.buf!r}")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        if head_only or status in (204, 304) or status < 200:
            return status, headers, b""
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n and self._fill():
                pass
            body, self.buf = self.buf[:n], self.buf[n:]
        elif headers.get("transfer-encoding") == "chunked":
            body = self._read_chunked()
        else:
            while self._fill():
                pass
            body, self.buf = self.buf, b""
        return status, headers, body

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            while b"\r\n" not in self.buf:
                if not self._fill():
                    raise ConnectionError("closed inside a chunked body")
            size_line, _, self.buf = self.buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(self.buf) < size + 2:
                if not self._fill():
                    raise ConnectionError("closed inside a chunk")
            parts.append(self.buf[:size])
            self.buf = self.buf[size + 2 :]
            if size == 0:
                return b"".join(parts)

    def closed_by_server(self) -> bool:
        """True once the server has closed its side (reads EOF)."""
        try:
            return not self.buf and not self._fill()
        except (ConnectionResetError, TimeoutError):
            return True

    def close(self) -> None:
        self.sock.close()


def ensure_user(name: str, groups: tuple[str, ...] = ()) -> int:
    """The uid of system user `name`, created (no home, no shell) with supplementary
    `groups` (created too) if it does not exist. Needs root and useradd: skips otherwise."""
    import grp
    import pwd
    import shutil

    import pytest

    if os.geteuid() != 0:
        pytest.skip("switching worker users needs the tests to run as root")
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not installed (apt-get install passwd)")
    for group in groups:
        try:
            grp.getgrnam(group)
        except KeyError:
            subprocess.run(["groupadd", "--system", group], check=True)
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", name], check=True)
    if groups:
        subprocess.run(["usermod", "-a", "-G", ",".join(groups), name], check=True)
    return pwd.getpwnam(name).pw_uid
