"""Process-model benchmark: how fast a replacement worker is ready, and what recycling
costs in throughput.

    .venv/bin/python bench/process_model.py [--duration S] [--rounds N] [--recycles K]
                                            [--part spawn|throughput|all]

Part 1, spawn to ready (the Flask example, examples/flask_app, `app:app`, 1 worker):
webgarden is started with an event log and a control socket; then 2K recycles, one at
a time: K "at rest", each sent once the pool's template for the next generation has
loaded (`template.ready`: smart spawning renews the template after every recycle, which
takes about as long as a cold start), then K "back to back", each sent as soon as the
previous one is done, so the replacement waits for that template to load. For each one
the script records
  - `startup_ms` of the replacement's `worker.ready` event: the server's own measure,
    from the decision to start the worker to its READY message;
  - from the outside: the time from sending the recycle request on the control socket
    to the replacement's `worker.ready` line appearing in the event log (the file is
    watched with inotify, every wait bounded; a bounded poll of the growing file if
    inotify is unavailable);
and waits for the old worker's `worker.exit` (bounded) and checks that GET /whoami is
answered by the new pid before the next recycle. Goal (issue): a worker ready to serve
within 50 ms of the decision to start it; judged on the maximum of `startup_ms` of the
recycles at rest (the back-to-back figures are printed beside it).
For context it also times plain interpreter starts (`python -c pass`, the worker's
imports, the worker's imports plus the Flask app) without webgarden.

Part 2, throughput while recycling (bench/apps/wsgi_hello.py, `--workers 2`):
`wrk -t1 -c50 -d{duration}s` after a 1 s warm-up, alternating a steady run and a run
during which a thread recycles DefaultAppPool on the control socket every second (at
0.5 s, 1.5 s, ... after wrk starts), for N rounds; each run on a freshly started server.
Prints requests/s per run, the medians, recycle/steady against the goal (>= 90 %), and
wrk's non-2xx and socket errors per run (they must be 0), plus anything the event log
recorded that means a request went wrong (retries, failures, httperr, ...). Requests
dropped because wrk reset its connections when a run (warm-up or measured) ended are
counted apart as expected ("at wrk's close"), not as problems.

Writes bench/results/process_model.json. Every process started is stopped by its
process group; temp dirs are removed.
Exit codes: 0 everything ran with no request errors; 1 a run failed, a recycle failed,
or some request errored (the goals being missed does not change the exit code);
2 bad arguments / missing wrk.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import CLIENT_CLOSES

from harness import (
    APPS_DIR,
    BENCH_DIR,
    HOST,
    Proc,
    Server,
    ServerError,
    find_tool,
    git_state,
    http_get,
    measure,
    python_env,
    versions,
)
from webgarden.admin import control

REPO = BENCH_DIR.parent
FLASK_DIR = REPO / "examples" / "flask_app"
RESULTS = BENCH_DIR / "results" / "process_model.json"
POOL = "DefaultAppPool"
RECYCLE = {"verb": "recycle", "object": "apppool", "name": POOL}
HELLO_BODY = b"Hello, World!"

SPAWN_GOAL_MS = 50.0
THROUGHPUT_GOAL = 0.90
CONNECTIONS = 50
WRK_THREADS = 1
WARMUP_SECONDS = 1
RECYCLE_INTERVAL = 1.0
RECYCLE_PHASE = 0.5  # first recycle this long after wrk starts, then every interval
EVENT_TIMEOUT = 30.0  # bound on waiting for any one event
REFERENCE_RUNS = 5
WRK_CLOSE_GRACE = 0.25  # s around a wrk run's start/end where client resets are wrk's close

# Event-log lines that mean a request (or a worker) went wrong.
BAD_EVENTS = {
    "httperr",
    "request.retry",
    "request.failed",
    "request.dropped",
    "worker.load_failed",
    "worker.startup_timeout",
    "worker.shutdown_timeout",
    "server.drain_incomplete",
    "pool.rapid_fail",
}


# --------------------------------------------------------------------------- event log


class FileWatch:
    """Wake up when a file is written: inotify (IN_MODIFY) through libc, else a bounded
    poll interval. `wait(timeout)` never blocks longer than timeout."""

    IN_MODIFY = 0x00000002
    POLL_INTERVAL = 0.005

    def __init__(self, path: Path) -> None:
        self.fd = -1
        self.method = "poll"
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd < 0:
                return
            if libc.inotify_add_watch(fd, os.fsencode(path), self.IN_MODIFY) < 0:
                os.close(fd)
                return
            self.fd = fd
            self.method = "inotify"
        except (OSError, AttributeError):
            self.fd = -1

    def wait(self, timeout: float) -> None:
        timeout = max(0.0, timeout)
        if self.fd < 0:
            time.sleep(min(timeout, self.POLL_INTERVAL))
            return
        readable, _, _ = select.select([self.fd], [], [], timeout)
        if readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self.fd, 4096):
                    pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class EventLog:
    """Follows a JSON-lines event log as it grows. Each event is kept with the
    perf_counter() time at which this process read it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self.watch = FileWatch(path)
        self.buffer = b""
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.unparsable = 0

    def read_new(self) -> None:
        data = self.file.read()
        if not data:
            return
        seen = time.perf_counter()
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                self.events.append((seen, json.loads(line)))
            except json.JSONDecodeError:
                self.unparsable += 1

    def mark(self) -> int:
        """Index after every event read so far (read what is in the file first)."""
        self.read_new()
        return len(self.events)

    def wait_for(
        self, match, since: int, timeout: float = EVENT_TIMEOUT, what: str = "event"
    ) -> tuple[float, dict[str, Any]]:
        """The first event at index >= since for which match(event) is true, waiting for
        the file to grow (bounded by timeout)."""
        deadline = time.monotonic() + timeout
        index = since
        while True:
            self.read_new()
            while index < len(self.events):
                seen, event = self.events[index]
                index += 1
                if match(event):
                    return seen, event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {what} in the event log within {timeout:.0f}s")
            self.watch.wait(min(remaining, 1.0))

    def close(self) -> None:
        self.watch.close()
        self.file.close()


def count_events(path: Path, benign=None) -> dict[str, Any]:
    """Counts of the events in a finished event log, split at the server's shutdown.
    Problem events for which benign(event) is true are counted apart, as expected."""
    counts: dict[str, int] = {}
    bad: dict[str, int] = {}
    expected: dict[str, int] = {}
    abnormal_exits: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    unparsable = 0
    stopping = False
    if not path.exists():
        return {"missing": True}
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            unparsable += 1
            continue
        name = event.get("event", "?")
        if name in ("server.signal", "server.stopping"):
            stopping = True
        if not stopping:
            counts[name] = counts.get(name, 0) + 1
        key = name
        if name == "httperr":
            key = f"httperr {event.get('status')} {event.get('reason')}"
        if name in BAD_EVENTS and benign is not None and benign(event):
            expected[key] = expected.get(key, 0) + 1
        elif name in BAD_EVENTS:
            bad[key] = bad.get(key, 0) + 1
            if len(samples) < 20:
                samples.append(event | {"before_shutdown": not stopping})
        if (
            name == "worker.exit"
            and not stopping
            and (event.get("code") not in (0, None) or event.get("signal"))
        ):
            abnormal_exits.append(event)
    out: dict[str, Any] = {"before_shutdown": counts, "bad": bad}
    if expected:
        out["expected"] = expected
    if samples:
        out["bad_samples"] = samples  # the first ones, with their times
    if abnormal_exits:
        out["abnormal_worker_exits"] = abnormal_exits
    if unparsable:
        out["unparsable_lines"] = unparsable
    return out


# --------------------------------------------------------------------------- servers


def webgarden_argv() -> list[str]:
    exe = find_tool("webgarden")
    return [exe] if exe else [sys.executable, "-m", "webgarden"]


SPAWN_METHOD = "smart"  # --spawn-method


def webgarden_server(key: str, app: str, cwd: Path, workers: int, **kw: Any) -> Server:
    def build(server: Server, tmp: Path, port: int) -> list[Proc]:
        argv = [
            *webgarden_argv(),
            "run",
            app,
            "--bind",
            f"{HOST}:{port}",
            "--workers",
            str(workers),
            "--event-log",
            str(tmp / "events.jsonl"),
            "--control",
            str(tmp / "control.sock"),
            "--spawn-method",
            SPAWN_METHOD,
        ]
        env = python_env(extra_path=None)
        return [Proc("webgarden", argv, ("tcp", (HOST, port)), cwd=cwd, env=env)]

    def inspect(server: Server, tmp: Path) -> list[str]:
        counts = count_events(tmp / "events.jsonl", getattr(server, "benign", None))
        server.event_counts = counts  # type: ignore[attr-defined]
        notes = [f"event log: {n} x {name}" for name, n in counts.get("bad", {}).items()]
        for exit_event in counts.get("abnormal_worker_exits", []):
            notes.append(f"event log: abnormal worker exit {json.dumps(exit_event)}")
        if counts.get("missing"):
            notes.append("no event log written")
        return notes

    return Server(key, key, build, inspect=inspect, **kw)


def control_path(server: Server) -> str:
    assert server.tmp is not None
    return str(server.tmp / "control.sock")


# --------------------------------------------------------------------------- stats


def pct(values: list[float], q: float) -> float:
    """Percentile by linear interpolation between closest ranks (q in 0..100)."""
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "n": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "p90": pct(values, 90),
        "max": max(values),
    }


def fmt_summary(s: dict[str, float] | None) -> str:
    if s is None:
        return "no data"
    return (
        f"min {s['min']:7.1f}  median {s['median']:7.1f}  p90 {s['p90']:7.1f}  "
        f"max {s['max']:7.1f}   (n={s['n']})"
    )


# --------------------------------------------------------------------------- part 1


def one_recycle(server: Server, log: EventLog, number: int) -> dict[str, Any]:
    ctl = control_path(server)
    since = log.mark()
    t_send = time.time()
    p_send = time.perf_counter()
    answer = control.call(ctl, RECYCLE, timeout=10)
    p_answer = time.perf_counter()
    old = set(answer.get("recycling", []))

    def is_new_ready(event: dict[str, Any]) -> bool:
        return event.get("event") == "worker.ready" and event.get("pid") not in old

    p_seen, ready = log.wait_for(is_new_ready, since, what="replacement worker.ready")
    pid = ready["pid"]
    record: dict[str, Any] = {
        "recycle": number,
        "mark": since,
        "old_pids": sorted(old),
        "new_pid": pid,
        "startup_ms": ready.get("startup_ms"),
        # Outside: request sent -> the worker.ready line read from the file.
        "outside_ms": round((p_seen - p_send) * 1000, 2),
        # Same start, the server's timestamp of the worker.ready event (same host clock).
        "send_to_ready_event_ms": round((ready["time"] - t_send) * 1000, 2),
        "control_answer_ms": round((p_answer - p_send) * 1000, 2),
    }
    for _, event in log.events[since:]:
        name = event.get("event")
        if name == "pool.recycle" and "send_to_decision_ms" not in record:
            record["send_to_decision_ms"] = round((event["time"] - t_send) * 1000, 2)
        if name == "worker.start" and event.get("pid") == pid:
            record["send_to_worker_start_ms"] = round((event["time"] - t_send) * 1000, 2)
    # Let the old worker go before the next recycle (bounded), so recycles do not overlap.
    for old_pid in old:
        _, exited = log.wait_for(
            lambda e, p=old_pid: e.get("event") == "worker.exit" and e.get("pid") == p,
            since,
            what=f"worker.exit of old pid {old_pid}",
        )
        record.setdefault("old_exits", []).append(
            {k: exited.get(k) for k in ("pid", "code", "signal")}
        )
    # The new worker serves.
    status, body = http_get(f"http://{HOST}:{server.port}/whoami", timeout=10)
    served_by = json.loads(body).get("pid") if status == 200 else None
    record["whoami_status"] = status
    record["whoami_pid"] = served_by
    if status != 200 or served_by != pid:
        record["problem"] = f"GET /whoami answered {status} from pid {served_by}, expected {pid}"
    return record


def reference_starts() -> dict[str, Any]:
    """Plain interpreter starts, no webgarden: the floor for a fork+exec worker."""
    commands = {
        "python -c pass": "pass",
        "python -c 'import webgarden.worker.main'": "import webgarden.worker.main",
        "python -c 'import webgarden.worker.main, app'": "import webgarden.worker.main, app",
    }
    env = python_env(extra_path=None)
    out: dict[str, Any] = {}
    for label, code in commands.items():
        times = []
        for _ in range(REFERENCE_RUNS):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", code],
                cwd=FLASK_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
                check=True,
            )
            times.append((time.perf_counter() - start) * 1000)
        out[label] = summary(times)
    return out


def run_spawn(args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"Part 1: spawn to ready, Flask example (examples/flask_app app:app, 1 worker), "
        f"{args.recycles} recycles one at a time",
        flush=True,
    )
    result: dict[str, Any] = {
        "app": "examples/flask_app app:app",
        "workers": 1,
        "recycles_requested": args.recycles,
        "goal_ms": SPAWN_GOAL_MS,
        "goal_rule": "max startup_ms of the replacement workers <= goal",
        "recycles": [],
    }
    server = webgarden_server("flask", "app:app", FLASK_DIR, 1, path="/")
    errors: list[str] = []
    try:
        with server:
            assert server.tmp is not None
            log = EventLog(server.tmp / "events.jsonl")
            result["watch_method"] = log.watch.method
            try:
                _, first = log.wait_for(
                    lambda e: e.get("event") == "worker.ready", 0, what="first worker.ready"
                )
                result["initial_startup_ms"] = first.get("startup_ms")
                rest_since = 0
                for n in range(1, 2 * args.recycles + 1):
                    at_rest = n <= args.recycles
                    try:
                        if at_rest:  # the template for this generation has loaded
                            log.wait_for(lambda e: e.get("event") == "template.ready",
                                         rest_since, what="the pool's template.ready")
                        record = one_recycle(server, log, n)
                    except (TimeoutError, control.ControlError, OSError, ValueError) as exc:
                        errors.append(f"recycle {n}: {exc}")
                        print(f"  recycle {n:2d}: FAILED: {exc}", flush=True)
                        break
                    record["at_rest"] = at_rest
                    rest_since = record["mark"]
                    result["recycles"].append(record)
                    line = (
                        f"  {'at rest' if at_rest else 'back to back'} "
                        f"recycle {n:2d}: pid {record['old_pids']} -> {record['new_pid']}  "
                        f"startup_ms {record['startup_ms']:6.1f}  "
                        f"outside {record['outside_ms']:6.1f} ms"
                    )
                    if "problem" in record:
                        line += f"  PROBLEM: {record['problem']}"
                        errors.append(f"recycle {n}: {record['problem']}")
                    print(line, flush=True)
                if log.unparsable:
                    errors.append(f"{log.unparsable} unparsable event-log line(s)")
            finally:
                log.close()
    except ServerError as exc:
        errors.append(f"server: {exc}")
        print(f"  FAILED: {exc}", flush=True)
    notes = list(server.notes)
    result["event_counts"] = getattr(server, "event_counts", None)
    result["notes"] = notes
    result["errors"] = errors

    rest = [r for r in result["recycles"] if r["at_rest"]]
    startup = [r["startup_ms"] for r in rest if r.get("startup_ms") is not None]
    outside = [r["outside_ms"] for r in rest]
    to_event = [r["send_to_ready_event_ms"] for r in rest]
    result["back_to_back_startup_ms"] = summary(
        [r["startup_ms"] for r in result["recycles"]
         if not r["at_rest"] and r.get("startup_ms") is not None])
    result["startup_ms"] = summary(startup)
    result["outside_ms"] = summary(outside)
    result["send_to_ready_event_ms"] = summary(to_event)
    met = bool(startup) and max(startup) <= SPAWN_GOAL_MS
    result["goal_met"] = met if startup else None

    print("  reference: plain interpreter starts without webgarden ...", flush=True)
    try:
        result["reference_ms"] = reference_starts()
    except (subprocess.SubprocessError, OSError) as exc:
        result["reference_ms"] = None
        result["notes"].append(f"reference timing failed: {exc}")

    print()
    print("Spawn to ready, ms (Flask example, replacement workers after a recycle):")
    if "initial_startup_ms" in result:
        print(f"  first worker at server start, startup_ms: {result['initial_startup_ms']}")
    print(f"  startup_ms (server: spawn decision -> READY) {fmt_summary(result['startup_ms'])}")
    print("  back to back (the next recycle sent before the pool's fresh template loaded):")
    print(f"  startup_ms                                   "
          f"{fmt_summary(result['back_to_back_startup_ms'])}")
    print(f"  outside (recycle sent -> ready line read)    {fmt_summary(result['outside_ms'])}")
    print(
        f"  recycle sent -> worker.ready timestamp       "
        f"{fmt_summary(result['send_to_ready_event_ms'])}"
    )
    if result.get("reference_ms"):
        print(f"  reference, no webgarden ({REFERENCE_RUNS} runs each, wall time of the process):")
        for label, s in result["reference_ms"].items():
            print(f"    {label:<47} {fmt_summary(s)}")
    if startup:
        print(
            f"Goal: a worker ready within {SPAWN_GOAL_MS:.0f} ms of the decision to start it "
            f"(every replacement: max startup_ms): "
            + (
                "met"
                if met
                else f"NOT met (max {max(startup):.1f} ms, "
                f"median {statistics.median(startup):.1f} ms)"
            )
        )
    else:
        print(f"Goal: a worker ready within {SPAWN_GOAL_MS:.0f} ms: not checked (no data)")
    for note in notes:
        print(f"  note: {note.splitlines()[0]}")
    for err in errors:
        print(f"  error: {err.splitlines()[0]}")
    print(flush=True)
    return result


# --------------------------------------------------------------------------- part 2


class Recycler(threading.Thread):
    """Recycles the pool on the control socket at phase, phase + interval, ... until
    stopped. Every call bounded (timeout 5 s)."""

    def __init__(self, path: str, interval: float, phase: float) -> None:
        super().__init__(name="recycler", daemon=True)
        self.path = path
        self.interval = interval
        self.phase = phase
        self.halt = threading.Event()
        self.calls: list[dict[str, Any]] = []

    def run(self) -> None:
        start = time.monotonic()
        n = 0
        while True:
            due = start + self.phase + n * self.interval
            if self.halt.wait(max(0.0, due - time.monotonic())):
                return
            t0 = time.monotonic()
            call: dict[str, Any] = {"at_s": round(t0 - start, 3), "time": time.time()}
            try:
                answer = control.call(self.path, RECYCLE, timeout=5)
                call["old_pids"] = answer.get("recycling")
            except (control.ControlError, OSError, ValueError) as exc:
                call["error"] = str(exc)
            call["ms"] = round((time.monotonic() - t0) * 1000, 2)
            self.calls.append(call)
            n += 1


def wrk_close_drop(measured_start: float, duration: int):
    """True for a request.dropped (Client_Reset) that happened when a wrk run ended: wrk
    closes its connections with requests still in flight when its time is up, and the
    listener may log those a moment later. Excused: before the measured run, within
    WRK_CLOSE_GRACE after its start (the warm-up's close, logged late), and from
    WRK_CLOSE_GRACE before its end on. Any other drop is a problem."""

    def benign(event: dict[str, Any]) -> bool:
        if event.get("event") == "httperr":  # the same close, as HTTP.sys logs it
            if event.get("reason") not in CLIENT_CLOSES:
                return False
        elif event.get("event") != "request.dropped" or event.get("reason") != "Client_Reset":
            return False
        at = event.get("time", 0.0)
        return (
            at < measured_start + WRK_CLOSE_GRACE
            or at >= measured_start + duration - WRK_CLOSE_GRACE
        )

    return benign


def throughput_run(kind: str, number: int, duration: int) -> dict[str, Any]:
    record: dict[str, Any] = {"kind": kind, "round": number}
    server = webgarden_server(
        "hello2", "wsgi_hello:app", APPS_DIR, 2, path="/", expect_body=HELLO_BODY
    )
    try:
        with server:
            measure(server.url, WARMUP_SECONDS, connections=CONNECTIONS, threads=WRK_THREADS)
            recycler = None
            if kind == "recycle":
                recycler = Recycler(control_path(server), RECYCLE_INTERVAL, RECYCLE_PHASE)
                recycler.start()
            record["wrk_started"] = time.time()
            try:
                result = measure(server.url, duration, connections=CONNECTIONS, threads=WRK_THREADS)
            finally:
                if recycler is not None:
                    recycler.halt.set()
                    recycler.join(10)
                record["wrk_ended"] = time.time()
            server.benign = wrk_close_drop(record["wrk_started"], duration)  # type: ignore[attr-defined]
            record.update(result.as_dict())
            record["errors"] = sum(result.socket_errors.values()) + result.non_2xx_3xx
            if recycler is not None:
                record["recycle_calls"] = recycler.calls
                record["recycles"] = sum(1 for c in recycler.calls if "error" not in c)
                record["recycle_errors"] = [c["error"] for c in recycler.calls if "error" in c]
            # Still serving after the run?
            status, body = http_get(server.url, timeout=10)
            if status != 200 or body != HELLO_BODY:
                record["after_run"] = f"GET / answered {status} {body[:60]!r}"
    except Exception as exc:  # one failed run must not stop the suite
        record["requests_per_sec"] = None
        record["error"] = str(exc)
    record["event_counts"] = getattr(server, "event_counts", None)
    if server.notes:
        record["notes"] = list(server.notes)
    return record


def run_throughput(args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"Part 2: throughput, wsgi_hello:app on --workers 2, wrk -t{WRK_THREADS} "
        f"-c{CONNECTIONS} -d{args.duration}s after a {WARMUP_SECONDS}s warm-up; "
        f"steady vs. recycle every {RECYCLE_INTERVAL:.0f}s; {args.rounds} round(s), "
        "alternating, fresh server per run",
        flush=True,
    )
    runs: list[dict[str, Any]] = []
    for r in range(1, args.rounds + 1):
        for kind in ("steady", "recycle"):
            print(f"  [round {r}/{args.rounds}] {kind:<7} ...", end=" ", flush=True)
            record = throughput_run(kind, r, args.duration)
            runs.append(record)
            if record.get("requests_per_sec") is None:
                print(f"FAILED: {record.get('error')}", flush=True)
            else:
                msg = f"{record['requests_per_sec']:>9,.0f} req/s"
                if kind == "recycle":
                    msg += f", {record['recycles']} recycles"
                print(msg, flush=True)
            for note in record.get("notes", []):
                print(f"      note: {note.splitlines()[0]}", flush=True)

    def medians(kind: str) -> float | None:
        values = [
            x["requests_per_sec"]
            for x in runs
            if x["kind"] == kind and x.get("requests_per_sec") is not None
        ]
        return statistics.median(values) if values else None

    steady, recycle = medians("steady"), medians("recycle")
    ratio = recycle / steady if steady and recycle is not None else None
    met = ratio is not None and ratio >= THROUGHPUT_GOAL

    print()
    print("Throughput, requests/s (wrk):")
    head = (
        f"  {'run':<18} {'req/s':>9} {'p99 ms':>8} {'max ms':>8} {'non-2xx':>7} "
        f"{'socket errors (connect/read/write/timeout)':>43} {'recycles':>8}  event log"
    )
    print(head)
    print("  " + "-" * (len(head) - 2))
    for x in runs:
        name = f"round {x['round']} {x['kind']}"
        if x.get("requests_per_sec") is None:
            print(f"  {name:<18} FAILED: {x.get('error', '').splitlines()[0]}")
            continue
        se = x.get("socket_errors") or {}
        socket_errors = "/".join(str(se.get(k, 0)) for k in ("connect", "read", "write", "timeout"))
        counts = (x.get("event_counts") or {}).get("before_shutdown", {})
        bad = (x.get("event_counts") or {}).get("bad", {})
        ev = (
            f"{counts.get('pool.recycle', 0)} recycle, {counts.get('worker.ready', 0)} ready, "
            f"{counts.get('worker.exit', 0)} exit"
        )
        if bad:
            ev += "; PROBLEMS: " + ", ".join(f"{n} x {k}" for k, n in bad.items())
        expected = (x.get("event_counts") or {}).get("expected", {})
        if expected:
            ev += "; at wrk's close: " + ", ".join(f"{n} x {k}" for k, n in expected.items())
        p99 = x.get("latency_p99_ms")
        mx = x.get("latency_max_ms")
        print(
            f"  {name:<18} {x['requests_per_sec']:>9,.0f} "
            f"{(f'{p99:.2f}' if p99 is not None else '-'):>8} "
            f"{(f'{mx:.1f}' if mx is not None else '-'):>8} "
            f"{x.get('non_2xx_3xx', 0):>7} {socket_errors:>43} "
            f"{(x.get('recycles', '-') if x['kind'] == 'recycle' else '-'):>8}  {ev}"
        )
    print()
    fmt = lambda v: "n/a" if v is None else f"{v:,.0f}"  # noqa: E731
    print(f"  median steady  {fmt(steady):>9} req/s")
    print(f"  median recycle {fmt(recycle):>9} req/s")
    print(
        "  recycle / steady = "
        + ("n/a" if ratio is None else f"{ratio * 100:.1f} %")
        + f"   goal >= {THROUGHPUT_GOAL * 100:.0f} %: "
        + ("met" if met else "NOT met" if ratio is not None else "not checked")
    )
    total_errors = sum(x.get("errors", 0) for x in runs if x.get("requests_per_sec") is not None)
    print(
        f"  wrk errors over all runs (non-2xx + socket errors): {total_errors} "
        + ("(must be 0: OK)" if total_errors == 0 else "(must be 0: NOT OK)")
    )
    print(flush=True)
    return {
        "app": "bench/apps/wsgi_hello.py app",
        "workers": 2,
        "wrk": {
            "threads": WRK_THREADS,
            "connections": CONNECTIONS,
            "duration_s": args.duration,
            "warmup_s": WARMUP_SECONDS,
        },
        "recycle_interval_s": RECYCLE_INTERVAL,
        "recycle_phase_s": RECYCLE_PHASE,
        "runs": runs,
        "median_steady_rps": steady,
        "median_recycle_rps": recycle,
        "ratio": ratio,
        "goal_ratio": THROUGHPUT_GOAL,
        "goal_met": met if ratio is not None else None,
        "total_wrk_errors": total_errors,
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds per measured wrk run (default: 10)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of (steady, recycle) throughput runs (default: 3)",
    )
    parser.add_argument(
        "--recycles", type=int, default=10, help="recycles timed for spawn to ready (default: 10)"
    )
    parser.add_argument("--part", choices=("spawn", "throughput", "all"), default="all")
    parser.add_argument("--spawn-method", choices=("smart", "direct"), default="smart",
                        help="how webgarden starts workers (its `run --spawn-method`)")
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS,
        help=f"JSON results file (default: {RESULTS.relative_to(REPO)})",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or args.recycles < 1:
        parser.error("--rounds, --duration and --recycles must be at least 1")
    global SPAWN_METHOD
    SPAWN_METHOD = args.spawn_method
    if args.part != "spawn" and find_tool("wrk") is None:
        print("process_model.py: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    report: dict[str, Any] = {
        "suite": "process_model",
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "uid": os.geteuid(),
            "loadavg_start": os.getloadavg(),
        },
        "git": git_state(),
        "versions": versions(("webgarden", "flask", "werkzeug"), tools=("wrk",)),
        "config": vars(args) | {"output": str(args.output)},
    }
    failed = False
    try:
        if args.part in ("spawn", "all"):
            spawn = run_spawn(args)
            report["spawn_to_ready"] = spawn
            failed |= bool(spawn["errors"]) or len(spawn["recycles"]) < args.recycles
        if args.part in ("throughput", "all"):
            tp = run_throughput(args)
            report["throughput"] = tp
            failed |= any(
                x.get("requests_per_sec") is None
                or x.get("errors")
                or x.get("recycle_errors")
                or x.get("after_run")
                or (x.get("event_counts") or {}).get("bad")
                or (x.get("event_counts") or {}).get("abnormal_worker_exits")
                for x in tp["runs"]
            )
    except KeyboardInterrupt:
        print("\nprocess_model.py: interrupted; servers stopped, nothing written", file=sys.stderr)
        return 130
    # Other load on the machine skews every number here; the load average says if there was.
    report["host"]["loadavg_end"] = os.getloadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    print(f"results: {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
