"""Issue 11's HTTP/2 benchmark: a cached file over h2c, webgarden against nginx's `http2`.

    .venv/bin/python bench/http2.py [--rounds N] [--duration S] [--output FILE]

Each measurement is `h2load -t1 -c10 -m10 -D S` (10 connections, 10 streams in flight on
each), by prior knowledge on cleartext (h2c), after a 1 s warm-up run of the same shape:

  cached-file  GET /hello.txt, 13 bytes: webgarden answers it from its response cache
               (after its frequentHitThreshold), nginx from the file (sendfile does not
               apply inside HTTP/2 frames; open_file_cache off, its default)
  wsgi-hello   webgarden only: GET /hello from the WSGI app, 1 worker (reported, no
               comparison)

Servers, each started fresh for its slot, alternated (the order rotated each round):

  webgarden  webgarden serve, `<webLimits http2Cleartext="true">`, one site whose
             virtualDirectory holds the file, one pool with 1 worker; its W3C log in the
             temp dir (64 KB buffer, flushed every second)
  nginx      1 worker_process, `listen ... http2` (nginx 1.22: h2c by prior knowledge on
             a plain listen), keepalive_requests 100000, http2_max_concurrent_streams 100
             (webgarden's), access_log combined buffer=64k flush=1s

Readiness is checked over HTTP/1.1 on a second, plain port (nginx 1.22 speaks only HTTP/2
on an `http2` listen); webgarden serves both on one port.

Prints requests/s per round and the median, the CPU each request cost the whole server
(user + system time of all its processes during the measured run / requests), and the
ratio; every run must have all requests 2xx. Writes bench/results/latest-http2.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import inspect_webgarden, tree_cpu

from harness import (
    APPS_DIR,
    BENCH_DIR,
    HOST,
    Proc,
    Server,
    ServerError,
    find_tool,
    free_port,
    git_state,
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
CONNECTIONS, STREAMS = 10, 10
RESULTS = BENCH_DIR / "results" / "latest-http2.json"
CASES = {"cached-file": "/hello.txt", "wsgi-hello": "/hello"}
SERVES = {"webgarden": ("cached-file", "wsgi-hello"), "nginx": ("cached-file",)}

CONFIG = """<configuration>
  <system.applicationHost>
    <applicationPools><add name="P" startMode="AlwaysRunning" /></applicationPools>
    <sites>
      <siteDefaults><logFile directory="{logs}" /></siteDefaults>
      <site name="bench" id="1">
        <bindings><binding protocol="http" bindingInformation="{host}:{port}:" /></bindings>
        <application path="/" applicationPool="P" app="wsgi_hello:app">
          <virtualDirectory path="/" physicalPath="{www}" />
        </application>
      </site>
    </sites>
    <webLimits http2Cleartext="true" />
  </system.applicationHost>
</configuration>
"""

WWW: list[Path] = []


class H2Server(Server):
    """A server whose HTTP/2 port may differ from the port its readiness is checked on."""

    h2_port: int | None = None

    def h2_url(self, path: str) -> str:
        return f"http://{HOST}:{self.h2_port or self.port}{path}"


def build_webgarden(server: Server, tmp: Path, port: int) -> list[Proc]:
    config = tmp / "applicationHost.config"
    config.write_text(CONFIG.format(host=HOST, port=port, www=WWW[0], logs=tmp / "logs"))
    exe = find_tool("webgarden")
    head = [exe] if exe else [sys.executable, "-m", "webgarden"]
    argv = [*head, "serve", "-c", str(config), "--event-log", str(tmp / "events.jsonl")]
    return [Proc("webgarden", argv, ("tcp", (HOST, port)), cwd=APPS_DIR, env=python_env())]


def build_nginx(server: Server, tmp: Path, port: int) -> list[Proc]:
    h2_port = free_port()
    assert isinstance(server, H2Server)
    server.h2_port = h2_port
    body = f"""\
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    http2_max_concurrent_streams 100;
    types {{ text/plain txt; }}

    server {{
        listen {HOST}:{h2_port} http2;
        listen {HOST}:{port};
        root {WWW[0]};
        access_log {tmp}/access.log combined buffer=64k flush=1s;
    }}"""
    return [nginx_proc(tmp, nginx_conf(tmp, body), port)]


def servers() -> list[H2Server]:
    return [
        H2Server("webgarden", "webgarden", build_webgarden, path="/hello.txt",
                 expect_body=BODY, requires=[module("webgarden", extra=None)],
                 inspect=inspect_webgarden,
                 description="webgarden serve, http2Cleartext, 1 site (virtualDirectory), "
                 "1 pool, 1 worker; the file from the response cache"),
        H2Server("nginx", "nginx", build_nginx, path="/hello.txt", expect_body=BODY,
                 requires=[tool("nginx", apt="nginx")],
                 description="nginx 1 worker_process, listen http2 (h2c), access_log "
                 "combined buffer=64k flush=1s"),
    ]


def h2load(url: str, seconds: int) -> dict:
    command = ["h2load", "-t1", f"-c{CONNECTIONS}", f"-m{STREAMS}", "-D", str(seconds), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    out = done.stdout
    finished = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if done.returncode != 0 or not (finished and counts and codes):
        raise ServerError(f"h2load failed ({done.returncode}): {done.stderr or out}")
    requests = int(counts[2])
    not_2xx = int(codes[2]) + int(codes[3]) + int(codes[4])  # (-D counts one 2xx past "done")
    if int(counts[4]) or int(counts[5]) or not_2xx:
        raise ServerError(f"h2load: {counts[4]} failed, {counts[5]} errored, "
                          f"{not_2xx} not 2xx\n{out}")
    return {"requests_per_sec": float(finished[2]), "requests": requests,
            "seconds": float(finished[1]), "command": command}


def run_slot(s: H2Server, case: str, duration: int) -> dict:
    record: dict = {}
    try:
        with s:
            url = s.h2_url(CASES[case])
            h2load(url, WARMUP_SECONDS)  # warm-up: the cache stores the file here
            before = tree_cpu(s)
            result = h2load(url, duration)
            cpu = tree_cpu(s) - before
        record.update(result, cpu_us_per_request=cpu / result["requests"] * 1e6
                      if result["requests"] else None)
    except Exception as exc:  # one failed slot must not stop the suite
        record.update(requests_per_sec=None, error=str(exc))
    if s.notes:
        record["notes"] = list(s.notes)
    return record


def median(runs: list[dict], metric: str) -> float | None:
    values = [r[metric] for r in runs if r.get(metric)]
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration at least 1")
    if find_tool("h2load") is None:
        print("http2.py: h2load is needed (apt-get install nghttp2-client)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    active = [s for s in servers() if not s.missing()]
    results: dict[str, dict[str, list[dict]]] = {c: {} for c in CASES}
    with tempfile.TemporaryDirectory(prefix="wgbench-http2-") as tmp:
        www = Path(tmp) / "www"
        www.mkdir()
        (www / "hello.txt").write_bytes(BODY)
        for path in (Path(tmp), www, www / "hello.txt"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        WWW.append(www)
        for r in range(args.rounds):
            for s in rotate(active, r):
                for case in SERVES[s.key]:
                    print(f"[{r + 1}/{args.rounds}] {s.label} {case} ...", end=" ",
                          file=sys.stderr, flush=True)
                    record = run_slot(s, case, args.duration)
                    record["round"] = r + 1
                    results[case].setdefault(s.key, []).append(record)
                    print(record.get("error") or f"{record['requests_per_sec']:,.0f} req/s, "
                          f"{record['cpu_us_per_request']:.1f} µs CPU/request",
                          file=sys.stderr, flush=True)
    report = report_of(active, results, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nresults: {args.output}")
    failed = any("error" in run for c in results.values() for runs in c.values()
                 for run in runs)
    return 1 if failed else 0


def report_of(active: list[H2Server], results: dict, args: argparse.Namespace) -> dict:
    summary: dict[str, dict] = {}
    print()
    for case, by_server in results.items():
        print(f"{case}: h2load -t1 -c{CONNECTIONS} -m{STREAMS} -D {args.duration} "
              f"{CASES[case]}; {args.rounds} round(s), alternated")
        medians = {}
        for key, runs in by_server.items():
            rps, cpu = median(runs, "requests_per_sec"), median(runs, "cpu_us_per_request")
            medians[key] = {"rps": rps, "cpu_us": cpu}
            rounds = "  ".join(f"{r['requests_per_sec']:>9,.0f}" if r.get("requests_per_sec")
                               else "   failed" for r in runs)
            print(f"  {key:<10} {rounds}   median {rps or 0:>9,.0f} req/s   "
                  f"{cpu or 0:6.1f} µs CPU/request")
        entry: dict = {"medians": medians}
        wg, ng = medians.get("webgarden", {}), medians.get("nginx", {})
        if wg.get("rps") and ng.get("rps"):
            entry["ratio"] = wg["rps"] / ng["rps"]
            entry["cpu_ratio"] = (wg["cpu_us"] / ng["cpu_us"]) if ng.get("cpu_us") else None
            print(f"  webgarden / nginx = {entry['ratio']:.2f}x req/s, "
                  f"{entry['cpu_ratio'] or 0:.1f}x CPU per request")
        summary[case] = entry
        print()
    return {
        "suite": "http2", "issue": 11,
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count(),
                 "python": sys.version.split()[0]},
        "git": git_state(),
        "versions": versions(("webgarden", "h2", "hpack", "uvloop"), tools=("nginx",)),
        "config": {"rounds": args.rounds, "duration_s": args.duration,
                   "warmup_s": WARMUP_SECONDS, "connections": CONNECTIONS,
                   "streams": STREAMS},
        "servers": {s.key: {"label": s.label, "description": s.description} for s in active},
        "results": results, "summary": summary,
    }


if __name__ == "__main__":
    sys.exit(main())
