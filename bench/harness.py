"""Reusable pieces for webgarden's benchmarks (stdlib, plus psutil from the venv if present).

- `Server`: a server under test. One or more processes (`Proc`) started in order, each in
  its own session (process group), each awaited by polling a connect to its TCP port or
  Unix socket with a bounded deadline; then one GET checks the response body. `stop()`
  sends SIGTERM to each process group it started (reverse order), SIGKILL after a bounded
  wait, and removes the server's temp dir. Use it as a context manager.
- `measure(url, duration)`: one `wrk` run, parsed into a `WrkResult`.
- `nginx_conf()` / `nginx_proc()`: an unprivileged nginx that keeps everything (pid,
  temp paths, error log) inside a temp dir, started as `nginx -c CONF -p PREFIX`.
- `find_tool()`, `module_available()`, `free_port()`, `rotate()`: small helpers.

Only processes this module started are ever signalled, by pid / process-group id.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is a webgarden dependency
    psutil = None

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
APPS_DIR = BENCH_DIR / "apps"
VENV_BIN = Path(sys.executable).parent  # not resolved: keep the venv's bin/
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class ServerError(Exception):
    """A server could not start (or answered wrongly). The message says why."""


# --------------------------------------------------------------------------- helpers


def find_tool(name: str) -> str | None:
    """Path of an executable: the venv's bin, PATH, then the sbin dirs (nginx lives there)."""
    candidate = VENV_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    return shutil.which(name, path=os.pathsep.join(SBIN_DIRS))


def module_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def free_port(host: str = HOST) -> int:
    """A currently free TCP port on host (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def rotate(items: Sequence, shift: int) -> list:
    """rotate([A, B, C, D], 1) == [B, C, D, A]."""
    if not items:
        return []
    shift %= len(items)
    return list(items[shift:]) + list(items[:shift])


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- requirements


@dataclass(frozen=True)
class Requirement:
    """Something a server needs: an executable ("tool") or an importable module."""

    kind: str  # "tool" | "module"
    name: str
    hint: str

    def satisfied(self) -> bool:
        if self.kind == "tool":
            return find_tool(self.name) is not None
        return module_available(self.name)


def tool(name: str, apt: str | None = None) -> Requirement:
    """An executable; apt names the Debian package(s) to suggest."""
    return Requirement("tool", name, f"Debian: apt-get install {apt or name}")


def module(name: str, extra: str | None = "bench") -> Requirement:
    """A module importable from this Python; extra names the pyproject extra providing it."""
    target = f"'.[{extra}]'" if extra else "."
    return Requirement("module", name, f"pip install -e {target}")


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """One process of a server. `ready` is ("tcp", (host, port)) or ("unix", path)."""

    name: str
    argv: list[str]
    ready: tuple[str, object]
    cwd: Path | None = None
    env: dict[str, str] | None = None
    stop_signal: int = signal.SIGTERM
    # filled in by Server.start
    popen: subprocess.Popen | None = None
    log: Path | None = None
    descendants: list = field(default_factory=list)


def _connect_once(kind: str, target: object, timeout: float = 0.5) -> bool:
    family = socket.AF_UNIX if kind == "unix" else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(target)  # type: ignore[arg-type]
        except OSError:
            return False
        return True


def wait_connectable(proc: Proc, deadline: float) -> None:
    """Poll a connect to proc.ready until it succeeds, proc exits, or deadline passes."""
    kind, target = proc.ready
    while True:
        assert proc.popen is not None
        code = proc.popen.poll()
        if code is not None:
            raise ServerError(
                f"{proc.name} exited with code {code} before accepting connections; "
                f"last output:\n{_tail(proc.log) if proc.log else ''}"
            )
        if (kind != "unix" or os.path.exists(str(target))) and _connect_once(kind, target):
            return
        if time.monotonic() >= deadline:
            raise ServerError(
                f"{proc.name} did not accept connections on {target} in time; "
                f"last output:\n{_tail(proc.log) if proc.log else ''}"
            )
        time.sleep(0.05)  # poll interval


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET `url` (http, or https without verifying the certificate: a readiness check)."""
    match = re.match(r"(https?)://([^:/]+):(\d+)(/.*)?$", url)
    if not match:
        raise ValueError(f"unsupported url {url!r}")
    conn: http.client.HTTPConnection
    if match[1] == "https":
        context = ssl._create_unverified_context()
        conn = http.client.HTTPSConnection(match[2], int(match[3]), timeout=timeout,
                                           context=context)
    else:
        conn = http.client.HTTPConnection(match[2], int(match[3]), timeout=timeout)
    try:
        conn.request("GET", match[4] or "/")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- Server

Builder = Callable[["Server", Path, int], list[Proc]]


class Server:
    """A server under test, started fresh in its own temp dir.

    build(server, tmp, port) returns the processes to start, in order; the last one is
    expected to serve http://127.0.0.1:port/. `inspect(server, tmp)` (optional) runs
    after stop, before the temp dir is removed, and returns notes (problems seen).
    """

    def __init__(
        self,
        key: str,
        label: str,
        build: Builder,
        *,
        requires: Sequence[Requirement] = (),
        path: str = "/",
        expect_body: bytes | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 15.0,
        inspect: Callable[[Server, Path], list[str]] | None = None,
        description: str = "",
    ) -> None:
        self.key = key
        self.label = label
        self.build = build
        self.requires = list(requires)
        self.path = path
        self.expect_body = expect_body
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.inspect = inspect
        self.description = description
        self.port: int | None = None
        self.tmp: Path | None = None
        self.procs: list[Proc] = []
        self.notes: list[str] = []

    # -- requirements
    def missing(self) -> list[Requirement]:
        return [r for r in self.requires if not r.satisfied()]

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{self.label} is not started")
        return f"http://{HOST}:{self.port}{self.path}"

    # -- lifecycle
    def start(self) -> None:
        self.notes = []
        self.tmp = Path(tempfile.mkdtemp(prefix=f"wgbench-{self.key}-"))
        # Traversable (not listable) by others: nginx started as root runs its workers as
        # an unprivileged user, which must reach Unix sockets in here.
        os.chmod(self.tmp, 0o711)
        self.port = free_port()
        try:
            self.procs = self.build(self, self.tmp, self.port)
            deadline = time.monotonic() + self.start_timeout
            for proc in self.procs:
                proc.log = self.tmp / f"{proc.name}.out"
                with open(proc.log, "wb") as out:
                    proc.popen = subprocess.Popen(
                        proc.argv,
                        cwd=proc.cwd,
                        env=proc.env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                wait_connectable(proc, deadline)
            status, body = http_get(self.url, timeout=max(1.0, deadline - time.monotonic()))
            if status != 200 or (self.expect_body is not None and body != self.expect_body):
                raise ServerError(
                    f"{self.label}: GET {self.url} answered {status} {body[:80]!r}, "
                    f"expected 200 {self.expect_body!r}"
                )
        except ServerError:
            self.stop()
            raise
        except Exception as exc:
            self.stop()
            raise ServerError(f"{self.label}: {exc!r}") from exc
        except BaseException:  # KeyboardInterrupt, SystemExit: still clean up
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process started, newest first; remove the temp dir."""
        for proc in reversed(self.procs):
            self._stop_proc(proc)
        if self.inspect is not None and self.tmp is not None:
            try:
                self.notes.extend(self.inspect(self, self.tmp))
            except Exception as exc:  # an inspection problem must not leak servers
                self.notes.append(f"inspect failed: {exc!r}")
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp = None
        self.procs = []

    def _stop_proc(self, proc: Proc) -> None:
        popen = proc.popen
        if popen is None:
            return
        if popen.poll() is None and psutil is not None:
            with contextlib.suppress(psutil.Error):
                proc.descendants = psutil.Process(popen.pid).children(recursive=True)
        if popen.poll() is None:
            # start_new_session=True: the pgid is popen.pid, and the leader is alive.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, proc.stop_signal)
            try:
                popen.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.notes.append(
                    f"{proc.name} ignored {signal.Signals(proc.stop_signal).name} for "
                    f"{self.stop_timeout:.0f}s; SIGKILLed its process group"
                )
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
        else:
            popen.wait()
        if popen.returncode not in (0, -proc.stop_signal, None):
            self.notes.append(
                f"{proc.name} exited with code {popen.returncode}; last output:\n"
                + (_tail(proc.log) if proc.log else "")
            )
        # Children that outlived their parent (psutil checks pid + create time, so a
        # reused pid is never signalled).
        if psutil is not None and proc.descendants:
            _, alive = psutil.wait_procs(proc.descendants, timeout=5)
            for child in alive:
                with contextlib.suppress(psutil.Error):
                    child.kill()
            if alive:
                self.notes.append(
                    f"{proc.name}: {len(alive)} child process(es) outlived it; SIGKILLed"
                )
            psutil.wait_procs(alive, timeout=5)
        proc.popen = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests_per_sec: float
    requests: int
    seconds: float
    latency_avg_ms: float | None
    latency_max_ms: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    socket_errors: dict[str, int]
    non_2xx_3xx: int
    command: list[str]
    output: str

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx_3xx

    def as_dict(self, with_output: bool = False) -> dict:
        data = {
            "requests_per_sec": self.requests_per_sec,
            "requests": self.requests,
            "seconds": self.seconds,
            "latency_avg_ms": self.latency_avg_ms,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p99_ms": self.latency_p99_ms,
            "latency_max_ms": self.latency_max_ms,
            "socket_errors": self.socket_errors,
            "non_2xx_3xx": self.non_2xx_3xx,
            "command": self.command,
        }
        if with_output:
            data["output"] = self.output
        return data


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float | None:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(match[1]) * _UNITS_MS[match[2]] if match else None


def parse_wrk(output: str, command: list[str]) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if not rps:
        raise ValueError(f"no Requests/sec in wrk output:\n{output}")
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", output, re.M)
    latency = re.search(r"^\s*Latency\s+(\S+)\s+\S+\s+(\S+)", output, re.M)
    p50 = re.search(r"^\s*50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s*99%\s+(\S+)", output, re.M)
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    seconds = (_ms(total[2] + total[3]) or 0.0) / 1000.0 if total else 0.0
    return WrkResult(
        requests_per_sec=float(rps[1]),
        requests=int(total[1]) if total else 0,
        seconds=seconds,
        latency_avg_ms=_ms(latency[1]) if latency else None,
        latency_max_ms=_ms(latency[2]) if latency else None,
        latency_p50_ms=_ms(p50[1]) if p50 else None,
        latency_p99_ms=_ms(p99[1]) if p99 else None,
        socket_errors=(
            dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True))
            if sock
            else {}
        ),
        non_2xx_3xx=int(non2xx[1]) if non2xx else 0,
        command=command,
        output=output,
    )


def measure(
    url: str,
    duration: float,
    *,
    connections: int = 100,
    threads: int = 1,
    latency: bool = True,
    extra_args: Sequence[str] = (),
) -> WrkResult:
    """One `wrk -t{threads} -c{connections} -d{duration}s URL` run.

    Bounded: wrk stops itself after `duration`; the subprocess is killed if it has not
    exited 30 s later.
    """
    wrk = find_tool("wrk")
    if wrk is None:
        raise ServerError("wrk is not installed (apt-get install wrk)")
    seconds = max(1, round(duration))
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s"]
    if latency:
        command.append("--latency")
    command += [*extra_args, url]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    if done.returncode != 0:
        raise ServerError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout, command)


# --------------------------------------------------------------------------- nginx


def nginx_conf(prefix: Path, http_body: str, *, worker_connections: int = 1024) -> str:
    """A complete nginx.conf confined to prefix: pid, temp paths and error log inside it.

    http_body goes inside `http { ... }` (upstreams, servers). Access log is off.
    """
    p = prefix
    return f"""\
daemon off;
master_process on;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log warn;

events {{
    worker_connections {worker_connections};
}}

http {{
    access_log off;
    client_body_temp_path {p}/client_body_temp;
    proxy_temp_path {p}/proxy_temp;
    fastcgi_temp_path {p}/fastcgi_temp;
    uwsgi_temp_path {p}/uwsgi_temp;
    scgi_temp_path {p}/scgi_temp;

{http_body}
}}
"""


def nginx_proc(prefix: Path, conf_text: str, port: int, name: str = "nginx") -> Proc:
    """Write prefix/nginx.conf and return the Proc for `nginx -c CONF -p PREFIX`.

    `-e` points the startup error log into prefix too (otherwise nginx first tries its
    compiled-in /var/log/nginx/error.log).
    """
    nginx = find_tool("nginx")
    if nginx is None:
        raise ServerError("nginx is not installed (apt-get install nginx)")
    conf = prefix / "nginx.conf"
    conf.write_text(conf_text)
    return Proc(
        name=name,
        argv=[nginx, "-c", str(conf), "-p", f"{prefix}/", "-e", str(prefix / "error.log")],
        ready=("tcp", (HOST, port)),
        cwd=prefix,
        # SIGQUIT would be graceful; SIGTERM is nginx's fast shutdown, fine after a run.
        stop_signal=signal.SIGTERM,
    )


def python_env(extra_path: Path | None = APPS_DIR) -> dict[str, str]:
    """The environment for Python servers: apps dir on PYTHONPATH, unbuffered output."""
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(extra_path), *filter(None, [env.get("PYTHONPATH")])]
        )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def tool_version(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else None


def versions(
    dists: Sequence[str], tools: Sequence[str] = ("nginx", "wrk")
) -> dict[str, str | None]:
    """Versions of the Python distributions and tools a result depends on."""
    import importlib.metadata
    import platform

    out: dict[str, str | None] = {}
    for dist in dists:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    for name in tools:
        path = find_tool(name)
        out[name] = tool_version([path, "-v"]) if path else None
    out["python"] = platform.python_version()
    return out


def git_state() -> dict[str, object]:
    """The commit the results belong to, and whether the tree had changes."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                                  text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain")
    return {"commit": git("rev-parse", "HEAD"),
            "dirty": bool(status) if status is not None else None}
