"""Static files and the response cache: webgarden's listener against nginx serving the
same files, and webgarden's cached dynamic response against the same response uncached.

    .venv/bin/python bench/static.py [--rounds N] [--duration S] [--output FILE]

Cases (wrk -t1; every measured run follows a 1 s warm-up run of the same shape):

  small    GET /hello.txt, 13 bytes, wrk -c100           goal: webgarden >= 1.5x nginx
  10k      GET /10k.bin, 10,240 bytes, wrk -c100         goal: webgarden >= 1.5x nginx
  big      GET /big.bin, 100 MiB, wrk -c4 --timeout 60s  goal: webgarden >= 0.9x nginx (MB/s)
  dynamic  webgarden only: GET /cached (13 bytes, `Cache-Control: public, max-age=60`,
           answered from the listener's cache) against GET /uncached (the same app and
           body, no Cache-Control, so every request reaches the worker); ratio reported

Servers (each started fresh for its slot, in its own temp dir, on a free 127.0.0.1 port;
the files live in one shared world-readable temp dir, since a root webgarden runs its
workers as `nobody`):

  webgarden  `webgarden serve -c site.config`: one site, one pool (AlwaysRunning,
             1 worker), a virtualDirectory over the files, app `static_app:app`
  nginx      1 worker_process, sendfile on, tcp_nopush on, keepalive_requests 100000,
             an access log buffered as webgarden's W3C log is (64 KB, flushed every
             second): `access_log ... combined buffer=64k flush=1s`; webgarden writes
             its default W3C fields to the temp dir

Each round runs every server once, the order rotated by one per round; within a slot the
cases run in order (the dynamic pair alternates which route goes first). Before each
webgarden case its URL is requested a few times (200 and the right length, checked), and
`webgarden cache stats` is read around the measured run: a cached case must add about as
many hits as wrk counted requests, an uncached one none. wrk's socket errors and non-2xx
responses must be 0. Writes bench/results/static.json.

Exit codes: 0 every run succeeded and checked out; 1 some run failed or a check failed;
2 nothing could run / bad arguments.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import inspect_webgarden

from harness import (
    BENCH_DIR,
    HOST,
    Proc,
    Server,
    ServerError,
    find_tool,
    git_state,
    http_get,
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
SMALL_NAME, MID_NAME, BIG_NAME = "hello.txt", "10k.bin", "big.bin"
MID_SIZE = 10 * 1024
BIG_SIZE = 100 * 1024 * 1024
WARMUP_SECONDS = 1
WRK_THREADS = 1
RESULTS = BENCH_DIR / "results" / "static.json"
REPO = BENCH_DIR.parent

APP_SOURCE = '''\
"""static.py's app: /cached is marked public for 60 s (the listener caches it), every
other path is the same 13 bytes without Cache-Control (every request reaches the worker)."""

BODY = b"Hello, World!"


def app(environ, start_response):
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]
    if environ.get("PATH_INFO") == "/cached":
        headers.append(("Cache-Control", "public, max-age=60"))
    start_response("200 OK", headers)
    return [BODY]
'''


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    path: str
    size: int
    connections: int
    servers: tuple[str, ...]  # server keys that run it
    cached: bool | None  # webgarden: expected to be served from the response cache?
    extra_args: tuple[str, ...] = ()


CASES = [
    Case("small", "13 B file", f"/{SMALL_NAME}", len(BODY), 100, ("webgarden", "nginx"), True),
    Case("10k", "10 KB file", f"/{MID_NAME}", MID_SIZE, 100, ("webgarden", "nginx"), True),
    Case(
        "big", "100 MB file", f"/{BIG_NAME}", BIG_SIZE, 4, ("webgarden", "nginx"), False,
        ("--timeout", "60s"),
    ),
    Case("dyn-cached", "dynamic, cached", "/cached", len(BODY), 100, ("webgarden",), True),
    Case("dyn-uncached", "dynamic, uncached", "/uncached", len(BODY), 100, ("webgarden",), False),
]
CASE_BY_KEY = {c.key: c for c in CASES}

# (numerator case, server, denominator case, server, goal, metric)
COMPARISONS = [
    ("small", "webgarden", "small", "nginx", 1.5, "requests_per_sec"),
    ("10k", "webgarden", "10k", "nginx", 1.5, "requests_per_sec"),
    ("big", "webgarden", "big", "nginx", 0.9, "mb_per_sec"),
    ("dyn-cached", "webgarden", "dyn-uncached", "webgarden", None, "requests_per_sec"),
]


# --------------------------------------------------------------------------- content


def make_content() -> Path:
    """A world-readable temp dir: www/ (the files), app/ (the WSGI module)."""
    root = Path(tempfile.mkdtemp(prefix="wgbench-static-content-"))
    os.chmod(root, 0o755)
    www, app = root / "www", root / "app"
    for d in (www, app):
        d.mkdir()
        os.chmod(d, 0o755)
    (www / SMALL_NAME).write_bytes(BODY)
    (www / MID_NAME).write_bytes(os.urandom(MID_SIZE))
    chunk = os.urandom(1024 * 1024)
    with open(www / BIG_NAME, "wb") as out:
        for _ in range(BIG_SIZE // len(chunk)):
            out.write(chunk)
    (app / "static_app.py").write_text(APP_SOURCE)
    for f in (*www.iterdir(), *app.iterdir()):
        os.chmod(f, 0o644)
    return root


# --------------------------------------------------------------------------- servers


def webgarden_config(port: int, www: Path, logs: Path, appdir: Path) -> str:
    return f"""\
<configuration>
  <system.applicationHost>
    <applicationPools>
      <add name="BenchPool" startMode="AlwaysRunning" pythonPath="{appdir}">
        <processModel maxProcesses="1" />
      </add>
    </applicationPools>
    <sites>
      <site name="bench" id="1">
        <logFile directory="{logs}" />
        <bindings>
          <binding protocol="http" bindingInformation="{HOST}:{port}:" />
        </bindings>
        <application path="/" applicationPool="BenchPool" app="static_app:app">
          <virtualDirectory path="/" physicalPath="{www}" />
        </application>
      </site>
    </sites>
  </system.applicationHost>
</configuration>
"""


def make_servers(content: Path) -> list[Server]:
    www, appdir = content / "www", content / "app"

    def build_webgarden(server: Server, tmp: Path, port: int) -> list[Proc]:
        exe = find_tool("webgarden")
        head = [exe] if exe else [sys.executable, "-m", "webgarden"]
        config = tmp / "site.config"
        config.write_text(webgarden_config(port, www, tmp / "logs", appdir))
        os.chmod(config, 0o644)
        argv = [
            *head, "serve", "-c", str(config),
            "--event-log", str(tmp / "events.jsonl"),
            "--control", str(tmp / "control.sock"),
        ]
        return [Proc("webgarden", argv, ("tcp", (HOST, port)), cwd=appdir,
                     env=python_env(None))]

    def build_nginx(server: Server, tmp: Path, port: int) -> list[Proc]:
        body = f"""\
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types {{
        text/plain txt;
        application/octet-stream bin;
    }}

    server {{
        listen {HOST}:{port};
        root {www};
        access_log {tmp}/access.log combined buffer=64k flush=1s;
    }}"""
        return [nginx_proc(tmp, nginx_conf(tmp, body), port)]

    common = {"path": f"/{SMALL_NAME}", "expect_body": BODY}
    return [
        Server(
            "webgarden", "webgarden", build_webgarden,
            requires=[module("webgarden", extra=None)],
            inspect=inspect_webgarden,
            description="webgarden serve -c: 1 site, 1 pool (1 worker, default threads), "
            "files from a virtualDirectory through the listener and its response cache",
            **common,
        ),
        Server(
            "nginx", "nginx", build_nginx,
            requires=[tool("nginx", apt="wrk nginx")],
            description="nginx 1 worker_process, sendfile on, tcp_nopush on, "
            "keepalive_requests 100000, access_log combined buffer=64k flush=1s (as "
            "webgarden's W3C log: 64 KB buffer, flushed every second)",
            **common,
        ),
    ]


# --------------------------------------------------------------------------- checks


def cache_stats(server: Server) -> dict:
    assert server.tmp is not None
    exe = find_tool("webgarden")
    head = [exe] if exe else [sys.executable, "-m", "webgarden"]
    done = subprocess.run(
        [*head, "cache", "stats", "--control", str(server.tmp / "control.sock"), "--json"],
        capture_output=True, text=True, timeout=15, check=False,
    )
    if done.returncode != 0:
        raise ServerError(f"webgarden cache stats failed: {done.stderr or done.stdout}")
    return json.loads(done.stdout)


def check_get(url: str, size: int, count: int) -> None:
    """count GETs, each 200 with a body of exactly size bytes (big bodies: one GET)."""
    for _ in range(count):
        status, body = http_get(url, timeout=60)
        if status != 200 or len(body) != size:
            raise ServerError(f"GET {url}: {status}, {len(body)} bytes (expected 200, {size})")


_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def transfer_mb_per_sec(output: str) -> float | None:
    """wrk's Transfer/sec in MiB/s (wrk's MB are MiB)."""
    match = re.search(r"^Transfer/sec:\s+([\d.]+)([KMGT]?B)", output, re.M)
    return float(match[1]) * _SIZE_UNITS[match[2]] / 1024**2 if match else None


def run_case(server: Server, case: Case) -> dict:
    url = f"http://{HOST}:{server.port}{case.path}"
    wg = server.key == "webgarden"
    check_get(url, case.size, 1 if case.size > 1024 * 1024 else 4)
    before = cache_stats(server) if wg else None
    kwargs = {"connections": case.connections, "threads": WRK_THREADS,
              "extra_args": case.extra_args}
    warm = measure(url, WARMUP_SECONDS, **kwargs)
    mid = cache_stats(server) if wg else None
    result = measure(url, ARGS.duration, **kwargs)
    after = cache_stats(server) if wg else None
    check_get(url, case.size, 1)
    record = result.as_dict()
    record["mb_per_sec"] = transfer_mb_per_sec(result.output)
    record["errors"] = result.errors + warm.errors
    record["warmup_errors"] = warm.errors
    problems = []
    if result.errors or warm.errors:
        problems.append(
            f"wrk errors: measured {result.socket_errors} non-2xx {result.non_2xx_3xx}; "
            f"warm-up {warm.socket_errors} non-2xx {warm.non_2xx_3xx}"
        )
    if wg:
        assert before is not None and mid is not None and after is not None
        hits = after["hits"] - mid["hits"]
        stores = after["stores"] - before["stores"]
        record["cache"] = {"before": before, "after": after, "hits_during_run": hits,
                           "stores_during_warmup_and_run": stores}
        if case.cached:
            # wrk counts only responses completed within its duration; the listener also
            # answers the requests in flight when wrk stops (up to -c of them) and the check.
            if not result.requests <= hits <= result.requests + case.connections + 10:
                problems.append(f"cache: {hits} hits during a run of {result.requests} "
                                f"requests (expected all of them to be hits)")
            if after["hits"] <= before["hits"]:
                problems.append("cache: hits did not grow")
        elif hits > 0:
            problems.append(f"cache: {hits} hits during a run that should not be cached")
    if problems:
        record["problems"] = problems
    return record


# --------------------------------------------------------------------------- rounds


def slot_cases(server: Server, r: int) -> list[Case]:
    cases = [c for c in CASES if server.key in c.servers]
    if r % 2 == 1:  # alternate which dynamic route goes first
        dyn = [c for c in cases if c.key.startswith("dyn-")]
        rest = [c for c in cases if not c.key.startswith("dyn-")]
        cases = rest + dyn[::-1]
    return cases


def run_rounds(orders: list[list[Server]], results: dict) -> None:
    for r, order in enumerate(orders, 1):
        for position, server in enumerate(order, 1):
            print(f"[round {r}/{ARGS.rounds}] {server.label}: starting", file=sys.stderr,
                  flush=True)
            cases = slot_cases(server, r - 1)
            records: dict[str, dict] = {}
            try:
                with server:
                    for case in cases:
                        record: dict = {"round": r, "position": position}
                        print(f"    {case.label:<18} ...", end=" ", file=sys.stderr, flush=True)
                        try:
                            record.update(run_case(server, case))
                            msg = f"{record['requests_per_sec']:>10,.0f} req/s"
                            if case.key == "big":
                                msg += f"  {record['mb_per_sec']:,.0f} MB/s"
                            if "cache" in record:
                                msg += f"  (cache hits +{record['cache']['hits_during_run']})"
                            print(msg, file=sys.stderr, flush=True)
                            for p in record.get("problems", []):
                                print(f"      PROBLEM: {p}", file=sys.stderr, flush=True)
                        except Exception as exc:  # one failed case must not stop the slot
                            record.update(requests_per_sec=None, error=str(exc))
                            print(f"FAILED: {exc}", file=sys.stderr, flush=True)
                        records[case.key] = record
            except Exception as exc:  # a server that did not start
                print(f"    FAILED to start: {exc}", file=sys.stderr, flush=True)
                for case in cases:
                    records.setdefault(case.key, {"round": r, "position": position,
                                                  "requests_per_sec": None, "error": str(exc)})
            for note in server.notes:
                print(f"    note ({server.label}): {note}", file=sys.stderr, flush=True)
            for case in cases:
                rec = records[case.key]
                if server.notes:
                    rec["notes"] = list(server.notes)
                results[server.key][case.key].append(rec)


def median_of(runs: list[dict], metric: str) -> float | None:
    values = [run.get(metric) for run in runs if run.get(metric) is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, unit: str = "") -> str:
    return "failed" if value is None else f"{value:,.0f}{unit}"


def fmt1(value: float | None) -> str:
    return "failed" if value is None else f"{value:.1f}"


def report(servers: list[Server], results: dict, orders: list[list[Server]]) -> dict:
    rounds = ARGS.rounds
    print()
    print(
        f"Static files and the response cache: wrk -t{WRK_THREADS} -d{ARGS.duration}s "
        f"(-c100; -c4 for the 100 MB file) after a {WARMUP_SECONDS}s warm-up; "
        f"{rounds} round(s), server order rotated each round"
    )
    for r, order in enumerate(orders, 1):
        print(f"  round {r}: " + " ".join(s.label for s in order))
    print()
    head = f"{'case':<18} {'server':<10}" + "".join(
        f"  {'round ' + str(r):>10}" for r in range(1, rounds + 1)
    ) + f"  {'median':>10}  {'p99 ms':>8}  {'errors':>6}"
    print("requests/s (MB/s for the 100 MB file)")
    print(head)
    print("-" * len(head))
    medians: dict[str, dict[str, dict[str, float | None]]] = {}
    for case in CASES:
        for s in servers:
            if s.key not in case.servers:
                continue
            runs = results[s.key][case.key]
            rps = median_of(runs, "requests_per_sec")
            mbs = median_of(runs, "mb_per_sec")
            medians.setdefault(case.key, {})[s.key] = {"requests_per_sec": rps,
                                                       "mb_per_sec": mbs}
            p99 = median_of(runs, "latency_p99_ms")
            errors = sum(run.get("errors", 0) for run in runs)
            row = f"{case.label:<18} {s.label:<10}"
            if case.key == "big":
                row += "".join(f"  {fmt(run.get('mb_per_sec'), ' MB/s'):>10}" for run in runs)
                row += f"  {fmt(mbs, ' MB/s'):>10}"
            else:
                row += "".join(f"  {fmt(run.get('requests_per_sec')):>10}" for run in runs)
                row += f"  {fmt(rps):>10}"
            row += f"  {(f'{p99:.2f}' if p99 is not None else '-'):>8}  {errors:>6}"
            print(row)
            if case.key == "big":
                cells = [fmt1(run.get("requests_per_sec")) for run in runs] + [fmt1(rps)]
                row = f"{'  (requests/s)':<18} {s.label:<10}" + "".join(
                    f"  {cell:>10}" for cell in cells
                )
                print(row)
    print()
    print("Ratios of medians:")
    ratios = {}
    for num_case, num_srv, den_case, den_srv, goal, metric in COMPARISONS:
        num = medians.get(num_case, {}).get(num_srv, {}).get(metric)
        den = medians.get(den_case, {}).get(den_srv, {}).get(metric)
        ratio = num / den if num is not None and den else None
        unit = "MB/s" if metric == "mb_per_sec" else "req/s"
        if num_case == den_case:
            name = f"{CASE_BY_KEY[num_case].label}: {num_srv} / {den_srv} ({unit})"
        else:
            name = (f"{num_srv}: {CASE_BY_KEY[num_case].label} / "
                    f"{CASE_BY_KEY[den_case].label} ({unit})")
        line = f"  {name:<56} = " + (f"{ratio:.2f}x" if ratio is not None else "n/a")
        met = None
        if goal is not None:
            met = ratio is not None and ratio >= goal
            line += f"   goal >= {goal:.1f}x: " + ("met" if met else "NOT met")
        print(line)
        ratios[f"{num_case}:{num_srv}/{den_case}:{den_srv}"] = {
            "metric": metric, "ratio": ratio, "goal": goal, "met": met,
        }
    return {"medians": medians, "ratios": ratios}


# --------------------------------------------------------------------------- main

ARGS: argparse.Namespace


def main(argv: list[str] | None = None) -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default: 3)")
    parser.add_argument("--duration", type=int, default=10,
                        help="seconds per measured wrk run (default: 10)")
    parser.add_argument("--output", type=Path, default=RESULTS,
                        help=f"JSON results file (default: {RESULTS.relative_to(REPO)})")
    ARGS = parser.parse_args(argv)
    if ARGS.rounds < 1 or ARGS.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    if find_tool("wrk") is None:
        print("static.py: wrk is not installed (apt-get install wrk nginx)", file=sys.stderr)
        return 2

    content = make_content()
    try:
        servers = make_servers(content)
        active, skipped = [], {}
        for s in servers:
            missing = s.missing()
            if missing:
                skipped[s.key] = [f"{r.name} missing ({r.hint})" for r in missing]
                print(f"static.py: skipping {s.label}: {skipped[s.key]}", file=sys.stderr)
            else:
                active.append(s)
        if not active:
            print("static.py: nothing to run", file=sys.stderr)
            return 2
        results = {s.key: {c.key: [] for c in CASES if s.key in c.servers} for s in active}
        orders = [rotate(active, r) for r in range(ARGS.rounds)]
        try:
            run_rounds(orders, results)
        except (KeyboardInterrupt, SystemExit):
            print("\nstatic.py: interrupted; servers stopped, nothing written", file=sys.stderr)
            raise
    finally:
        shutil.rmtree(content, ignore_errors=True)

    summary = report(active, results, orders)
    for key, reasons in skipped.items():
        print(f"  skipped {key}: " + "; ".join(reasons))
    all_runs = [
        (s.label, case, run)
        for s in active for case, runs in results[s.key].items() for run in runs
    ]
    problems = [
        (label, case, run["round"], p)
        for label, case, run in all_runs
        for p in [*run.get("problems", []), *(
            [f"FAILED: {run['error']}"] if "error" in run else [])]
    ]
    notes = sorted({(label, run["round"], n.splitlines()[0])
                    for label, _, run in all_runs for n in run.get("notes", [])})
    if problems or notes:
        print("\nProblems seen (see stderr / JSON for details):")
        for label, case, r, p in problems:
            print(f"  {label}, {case}, round {r}: {p.splitlines()[0]}")
        for label, r, n in notes:
            print(f"  {label}, round {r}: {n}")
    else:
        print("\nChecks: every run 200 with the right length, 0 wrk errors; cached cases "
              "were all cache hits, uncached ones none; no bad events in webgarden's log.")

    data = {
        "suite": "static",
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count(),
                 "python": sys.version.split()[0]},
        "git": git_state(),
        "versions": versions(("webgarden",)),
        "config": {
            "rounds": ARGS.rounds, "duration_s": ARGS.duration, "warmup_s": WARMUP_SECONDS,
            "wrk_threads": WRK_THREADS,
            "cases": {c.key: {"label": c.label, "path": c.path, "bytes": c.size,
                              "connections": c.connections, "servers": list(c.servers),
                              "expect_cached": c.cached, "wrk_extra": list(c.extra_args)}
                      for c in CASES},
            "orders": [[s.key for s in order] for order in orders],
        },
        "servers": {s.key: {"label": s.label, "description": s.description,
                            "runs": results[s.key]} for s in active},
        "skipped": skipped,
        **summary,
    }
    ARGS.output.parent.mkdir(parents=True, exist_ok=True)
    ARGS.output.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    print(f"\nresults: {ARGS.output}")
    return 1 if (problems or notes) else 0


if __name__ == "__main__":
    sys.exit(main())
