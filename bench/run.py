"""Issue 2's benchmark: hello-world throughput of webgarden against nginx→uvicorn, granian
and gunicorn, measured with `wrk -t1 -c100 -d{duration}s`.

    .venv/bin/python bench/run.py [--suite wsgi|asgi] [--rounds N] [--duration S] [--only NAMES]

Suites: wsgi (issue 2: wsgi_hello, granian --interface wsgi, gunicorn) and asgi (issue 10:
asgi_hello served by webgarden's ASGI host, 1 worker; nginx -> uvicorn over a Unix socket;
granian --interface asgi). nginx -> uvicorn is the same ASGI app in both.

Servers (each started fresh for its slot, in its own temp dir, on a free 127.0.0.1 port;
readiness = a successful connect plus one GET answering "Hello, World!"):

  webgarden      webgarden run wsgi_hello:app, 1 worker, default threads; its W3C access
                 log (default fields, 64 KB buffer, flushed every second) in the temp dir
  nginx-uvicorn  nginx (1 worker process, access_log combined buffer=64k flush=1s, as
                 webgarden's) -> Unix socket with upstream
                 keepalive -> uvicorn (1 worker, --http httptools --loop uvloop)
  granian        granian --interface wsgi --workers 1
  gunicorn       gunicorn gthread, 2 workers x 4 threads

Each round runs every server once, the order rotated by one per round (A B C D, then
B C D A, ...); each measured run follows a 1 s warm-up. Prints requests/s per round and
the median, and the CPU each request cost the whole server (user + system time of every
process of it, from before to after the measured run, divided by the requests wrk counted:
a figure other tenants of a shared machine move much less than requests/s); webgarden's
ratio to each other server against the goals; and writes bench/results/latest.json
(latest-asgi.json for the asgi suite).

Needs wrk and nginx (`apt-get install wrk nginx`) and the venv's bench extra
(`pip install -e '.[bench]'`); servers whose requirements are missing are skipped.
Exit codes: 0 every run succeeded; 1 some run failed; 2 nothing could run / bad arguments.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    APPS_DIR,
    BENCH_DIR,
    HOST,
    Proc,
    Server,
    find_tool,
    git_state,
    measure,
    module,
    nginx_conf,
    nginx_proc,
    python_env,
    rotate,
    tool,
    versions,
)

BODY = b"Hello, World!"
WARMUP_SECONDS = 1
CONNECTIONS = 100
WRK_THREADS = 1
RESULTS = BENCH_DIR / "results" / "latest.json"
#: The suite chosen on the command line (wsgi or asgi): which apps the servers run.
SUITE = ["wsgi"]
REPO = BENCH_DIR.parent

# webgarden's ratio to each server's median must reach these (issue 2).
GOALS = {"nginx-uvicorn": 1.5, "granian": 1.0}
GOAL_LABELS = {"nginx-uvicorn": "nginx→uvicorn", "granian": "granian"}

# Event-log lines that mean something went wrong while webgarden served the benchmark.
WEBGARDEN_BAD_EVENTS = {
    "httperr",
    "request.retry",
    "request.failed",
    "worker.load_failed",
    "worker.startup_timeout",
    "worker.shutdown_timeout",
    "server.drain_incomplete",
}


# --------------------------------------------------------------------------- servers


def build_webgarden(server: Server, tmp: Path, port: int) -> list[Proc]:
    exe = find_tool("webgarden")
    head = [exe] if exe else [sys.executable, "-m", "webgarden"]
    argv = [
        *head,
        "run",
        f"{SUITE[0]}_hello:app",
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        "1",
        "--event-log",
        str(tmp / "events.jsonl"),
        "--log-dir",
        str(tmp / "logs"),
    ]
    return [Proc("webgarden", argv, ("tcp", (HOST, port)), cwd=APPS_DIR, env=python_env())]


# HTTPERR reasons for a client that closed its connection: wrk does so, requests in flight,
# at the end of every run (warm-up and measured), so these are expected, not problems.
CLIENT_CLOSES = {"Connection_Dropped", "Client_Reset"}


def inspect_webgarden(server: Server, tmp: Path) -> list[str]:
    """Problems recorded in webgarden's event log during the slot."""
    path = tmp / "events.jsonl"
    if not path.exists():
        return ["no event log written"]
    counts: dict[str, int] = {}
    early_exits = 0
    stopping = False
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            counts["<unparsable line>"] = counts.get("<unparsable line>", 0) + 1
            continue
        event = record.get("event", "?")
        if event == "httperr":  # count by status and reason, not just in total
            event = f"httperr {record.get('status')} {record.get('reason')}"
        counts[event] = counts.get(event, 0) + 1
        if event in ("server.signal", "server.stopping"):
            stopping = True
        elif event == "worker.exit" and not stopping:
            early_exits += 1
    notes = [
        f"event log: {n} x {name}"
        for name, n in counts.items()
        if (name.split()[0] in WEBGARDEN_BAD_EVENTS or name.startswith("<"))
        and name.split()[-1] not in CLIENT_CLOSES
    ]
    if early_exits:
        notes.append(f"event log: {early_exits} worker exit(s) while serving")
    if counts.get("worker.start", 0) > 1:
        notes.append(f"event log: {counts['worker.start']} worker starts (1 expected)")
    if "server.started" not in counts:
        notes.append("event log: no server.started")
    return notes


def build_nginx_uvicorn(server: Server, tmp: Path, port: int) -> list[Proc]:
    sock = tmp / "uvicorn.sock"
    uvicorn = Proc(
        "uvicorn",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "asgi_hello:app",
            "--uds",
            str(sock),
            "--workers",
            "1",
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        ("unix", str(sock)),
        cwd=APPS_DIR,
        env=python_env(),
    )
    http_body = f"""\
    keepalive_requests 100000;

    upstream uvicorn {{
        server unix:{sock};
        keepalive 128;
        keepalive_requests 100000;
    }}

    server {{
        listen {HOST}:{port};
        access_log {tmp}/access.log combined buffer=64k flush=1s;
        location / {{
            proxy_pass http://uvicorn;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}"""
    return [uvicorn, nginx_proc(tmp, nginx_conf(tmp, http_body), port)]


def build_granian(server: Server, tmp: Path, port: int) -> list[Proc]:
    argv = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        SUITE[0],
        "--workers",
        "1",
        "--host",
        HOST,
        "--port",
        str(port),
        "--working-dir",
        str(APPS_DIR),
        "--log-level",
        "warning",
        f"{SUITE[0]}_hello:app",
    ]
    return [Proc("granian", argv, ("tcp", (HOST, port)), cwd=APPS_DIR, env=python_env())]


def build_gunicorn(server: Server, tmp: Path, port: int) -> list[Proc]:
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "gthread",
        "--workers",
        "2",
        "--threads",
        "4",
        "--bind",
        f"{HOST}:{port}",
        "--chdir",
        str(APPS_DIR),
        "--worker-tmp-dir",
        str(tmp),
        "--log-level",
        "warning",
        "wsgi_hello:app",
    ]
    return [Proc("gunicorn", argv, ("tcp", (HOST, port)), cwd=APPS_DIR, env=python_env())]


def servers() -> list[Server]:
    common = {"expect_body": BODY}
    suite = SUITE[0]
    every = [
        Server(
            "webgarden",
            "webgarden",
            build_webgarden,
            requires=[module("webgarden", extra=None)],
            inspect=inspect_webgarden,
            description="webgarden run, 1 worker, default threads (8), WSGI" if suite == "wsgi"
            else "webgarden run, 1 worker, ASGI on one uvloop loop (asgiConcurrency 100)",
            **common,
        ),
        Server(
            "nginx-uvicorn",
            "nginx→uvicorn",
            build_nginx_uvicorn,
            requires=[
                tool("nginx", apt="wrk nginx"),
                module("uvicorn"),
                module("uvloop"),
                module("httptools"),
            ],
            description="nginx 1 worker_process, access_log buffer=64k flush=1s, upstream "
            "keepalive over a "
            "Unix socket -> uvicorn 1 worker --http httptools --loop uvloop, ASGI",
            **common,
        ),
        Server(
            "granian",
            "granian",
            build_granian,
            requires=[module("granian")],
            description=f"granian --interface {suite} --workers 1",
            **common,
        ),
        Server(
            "gunicorn",
            "gunicorn",
            build_gunicorn,
            requires=[module("gunicorn")],
            description="gunicorn gthread, 2 workers x 4 threads, WSGI",
            **common,
        ),
    ]
    return every if suite == "wsgi" else [s for s in every if s.key != "gunicorn"]


def tree_cpu(server: Server) -> float:
    """CPU seconds (user + system) used so far by every live process of `server`."""
    import psutil

    total = 0.0
    for proc in server.procs:
        if proc.popen is None:
            continue
        try:
            root = psutil.Process(proc.popen.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in tree:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total


ALIASES = {
    "nginx": "nginx-uvicorn",
    "uvicorn": "nginx-uvicorn",
    "nginx→uvicorn": "nginx-uvicorn",
    "nginx_uvicorn": "nginx-uvicorn",
    "nginx+uvicorn": "nginx-uvicorn",
}


def select(all_servers: list[Server], only: str | None) -> list[Server]:
    if not only:
        return all_servers
    wanted = []
    for name in only.replace(",", " ").split():
        key = ALIASES.get(name.lower(), name.lower())
        if key not in {s.key for s in all_servers}:
            known = ", ".join(s.key for s in all_servers)
            raise ValueError(f"unknown server {name!r} (known: {known})")
        wanted.append(key)
    return [s for s in all_servers if s.key in wanted]


# --------------------------------------------------------------------------- report


def fmt_rps(value: float | None) -> str:
    return "failed" if value is None else f"{value:,.0f}"


def print_table(active, results, rounds, orders, args) -> tuple[dict, list[str]]:
    print()
    print(
        f"Hello world, requests/s: wrk -t{WRK_THREADS} -c{CONNECTIONS} -d{args.duration}s "
        f"after a {WARMUP_SECONDS}s warm-up; {rounds} round(s), order rotated each round"
    )
    for r, order in enumerate(orders, 1):
        print(f"  round {r}: " + " ".join(s.label for s in order))
    print()
    name_w = max(len("server"), *(len(s.label) for s in active))
    head = f"{'server':<{name_w}}" + "".join(
        f"  {'round ' + str(r):>9}" for r in range(1, rounds + 1)
    )
    head += f"  {'median':>9}  {'CPU µs':>7}  {'p99 ms':>7}  {'errors':>6}"
    print(head)
    print("-" * len(head))
    medians: dict[str, float | None] = {}
    for s in active:
        runs = results[s.key]
        rps = [run.get("requests_per_sec") for run in runs]
        ok = [v for v in rps if v is not None]
        median = statistics.median(ok) if ok else None
        medians[s.key] = median
        p99s = [run["latency_p99_ms"] for run in runs if run.get("latency_p99_ms") is not None]
        p99 = f"{statistics.median(p99s):.2f}" if p99s else "-"
        errors = sum(run.get("errors", 0) for run in runs)
        cpus = [run["cpu_us_per_request"] for run in runs if run.get("cpu_us_per_request")]
        cpu = f"{statistics.median(cpus):.1f}" if cpus else "-"
        row = f"{s.label:<{name_w}}" + "".join(f"  {fmt_rps(v):>9}" for v in rps)
        row += f"  {fmt_rps(median):>9}  {cpu:>7}  {p99:>7}  {errors:>6}"
        print(row)
    print()
    ratios: dict[str, dict] = {}
    wg = medians.get("webgarden")
    issue = "2" if SUITE[0] == "wsgi" else "10"
    print(f"Goals (issue {issue}, {SUITE[0].upper()} hello): webgarden >= 1.5x nginx→uvicorn and "
          ">= 1.0x granian (median req/s). CPU µs: the whole server's, per request (median).")
    lines = []
    for s in active:
        if s.key == "webgarden":
            continue
        other = medians.get(s.key)
        goal = GOALS.get(s.key)
        name = f"webgarden / {s.label}"
        if wg is None or not other:
            ratio = None
            line = f"  {name:<{name_w + 12}} = n/a"
        else:
            ratio = wg / other
            line = f"  {name:<{name_w + 12}} = {ratio:.2f}x"
        if goal is not None:
            met = ratio is not None and ratio >= goal
            line += f"   goal >= {goal:.1f}x: " + ("met" if met else "NOT met")
        ratios[s.key] = {
            "ratio": ratio,
            "goal": goal,
            "met": (ratio is not None and ratio >= goal) if goal else None,
        }
        lines.append(line)
    ran = {s.key for s in active}
    for key, goal in GOALS.items():
        if key not in ran:
            lines.append(
                f"  webgarden / {GOAL_LABELS[key]}: not run   goal >= {goal:.1f}x: not checked"
            )
    if "webgarden" not in ran:
        lines.append("  (webgarden was not run: no ratios)")
    for line in lines:
        print(line)
    return {"medians": medians, "ratios": ratios}, lines


# --------------------------------------------------------------------------- main


def run_rounds(orders: list[list[Server]], results: dict[str, list[dict]], args) -> None:
    """Every server once per round, in that round's order; fills results in place."""
    for r, order in enumerate(orders, 1):
        for position, s in enumerate(order, 1):
            record: dict = {"round": r, "position": position}
            print(f"[round {r}/{args.rounds}] {s.label} ...", end=" ", file=sys.stderr, flush=True)
            try:
                with s:
                    measure(s.url, WARMUP_SECONDS, connections=CONNECTIONS, threads=WRK_THREADS)
                    cpu_before = tree_cpu(s)
                    result = measure(
                        s.url, args.duration, connections=CONNECTIONS, threads=WRK_THREADS
                    )
                    cpu = tree_cpu(s) - cpu_before
                cpu_us = cpu / result.requests * 1e6 if result.requests else None
                record.update(result.as_dict(), errors=result.errors, cpu_us_per_request=cpu_us)
                msg = f"{result.requests_per_sec:,.0f} req/s"
                if cpu_us is not None:
                    msg += f", {cpu_us:.1f} µs CPU/request"
                if result.errors:
                    msg += (
                        f" ({result.errors} errors: {result.socket_errors}, "
                        f"non-2xx {result.non_2xx_3xx})"
                    )
                print(msg, file=sys.stderr, flush=True)
            except Exception as exc:  # one failed slot must not stop the suite
                record.update(requests_per_sec=None, error=str(exc))
                print(f"FAILED: {exc}", file=sys.stderr, flush=True)
            if s.notes:
                record["notes"] = list(s.notes)
                for note in s.notes:
                    print(f"    note ({s.label}): {note}", file=sys.stderr, flush=True)
            results[s.key].append(record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=("wsgi", "asgi"), default="wsgi",
                        help="wsgi: the WSGI hello (issue 2); asgi: the ASGI hello (issue 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default: 3)")
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds per measured wrk run (default: 10)"
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        default=None,
        help="comma-separated servers: webgarden, nginx-uvicorn, granian, gunicorn (default: all)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"JSON results file (default: {RESULTS.relative_to(REPO)}, "
        "latest-asgi.json for --suite asgi)",
    )
    args = parser.parse_args(argv)
    SUITE[0] = args.suite
    if args.output is None:
        args.output = RESULTS if args.suite == "wsgi" else RESULTS.with_name("latest-asgi.json")
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")

    # SIGTERM (e.g. from make or CI) unwinds like Ctrl-C so every server is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    try:
        chosen = select(servers(), args.only)
    except ValueError as exc:
        parser.error(str(exc))
    if find_tool("wrk") is None:
        print(
            "run.py: wrk is not installed; every benchmark needs it. On Debian/Ubuntu: "
            "apt-get install wrk nginx",
            file=sys.stderr,
        )
        return 2
    active, skipped = [], {}
    for s in chosen:
        missing = s.missing()
        if missing:
            reasons = [
                f"{r.name} not found ({r.hint})"
                if r.kind == "tool"
                else f"{r.name} not importable by {sys.executable} ({r.hint})"
                for r in missing
            ]
            skipped[s.key] = reasons
            print(f"run.py: skipping {s.label}: " + "; ".join(reasons), file=sys.stderr)
        else:
            active.append(s)
    if not active:
        print("run.py: nothing to run", file=sys.stderr)
        return 2

    results: dict[str, list[dict]] = {s.key: [] for s in active}
    orders = [rotate(active, r) for r in range(args.rounds)]
    failed = False
    try:
        run_rounds(orders, results, args)
    except (KeyboardInterrupt, SystemExit):
        print("\nrun.py: interrupted; servers stopped, nothing written", file=sys.stderr)
        raise
    failed = any("error" in run for runs in results.values() for run in runs)

    summary, _ = print_table(active, results, args.rounds, orders, args)
    for key, reasons in skipped.items():
        print(f"  skipped {key}: " + "; ".join(reasons))
    problems = [
        (s.label, run["round"], note)
        for s in active
        for run in results[s.key]
        for note in run.get("notes", [])
    ]
    if problems:
        print("\nProblems seen (see stderr / JSON for details):")
        for label, r, note in problems:
            print(f"  {label}, round {r}: {note.splitlines()[0]}")

    report = {
        "suite": "hello" if args.suite == "wsgi" else "asgi-hello",
        "issue": 2 if args.suite == "wsgi" else 10,
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "git": git_state(),
        "versions": versions(
            ("webgarden", "uvicorn", "uvloop", "httptools", "granian", "gunicorn")
        ),
        "config": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": WARMUP_SECONDS,
            "wrk_threads": WRK_THREADS,
            "connections": CONNECTIONS,
            "orders": [[s.key for s in order] for order in orders],
        },
        "servers": {
            s.key: {
                "label": s.label,
                "description": s.description,
                "runs": results[s.key],
                "median_rps": summary["medians"][s.key],
            }
            for s in active
        },
        "skipped": skipped,
        "goals": {k: f">= {v}x" for k, v in GOALS.items()},
        "ratios": summary["ratios"],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nresults: {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
