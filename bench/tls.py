"""Issue 11's TLS benchmarks: webgarden's HTTPS against nginx (TLS) -> uvicorn.

    .venv/bin/python bench/tls.py [--rounds N] [--duration S] [--only NAMES]

Two measurements, each with `wrk -t1 -c100` over https, after a 1 s warm-up:

  keepalive   HTTPS keep-alive hello: connections made once, then requests on them
              (goal: webgarden >= 1.0x nginx -> uvicorn)
  handshake   one request per connection (`-H "Connection: close"`): every request is a
              new TCP connection and a full TLS handshake (wrk resumes no session)
              (goal: webgarden >= 0.8x nginx)

Servers, each started fresh for its slot, alternated (the order rotated each round), with
the same certificate (an ECDSA P-256 leaf for 127.0.0.1 and localhost, signed by a CA made
for the run, in a temp dir):

  webgarden      webgarden serve: one https binding whose certificate is named by
                 certificateHash in a store directory, 1 worker (default threads), the
                 WSGI hello; its W3C log in the temp dir, as bench/run.py's
  nginx-uvicorn  nginx 1 worker process, `listen ssl`, TLS 1.2 + 1.3 with Mozilla's
                 intermediate ciphers (webgarden's defaults), access_log buffer=64k
                 flush=1s -> upstream keepalive over a Unix socket -> uvicorn 1 worker
                 --http httptools --loop uvloop, the ASGI hello

Prints requests/s per round and the median, with the CPU each request cost the whole
server (user + system time of all its processes during the measured run / requests), and
the ratios against the goals; writes bench/results/latest-tls.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import build_nginx_uvicorn, inspect_webgarden, tree_cpu

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
RESULTS = BENCH_DIR / "results" / "latest-tls.json"
GOALS = {"keepalive": 1.0, "handshake": 0.8}
KINDS = {"keepalive": (), "handshake": ("-H", "Connection: close")}
#: Mozilla intermediate (TLS 1.2 suites), as webgarden's listener/tls.py has them.
CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
           "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
           "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
           "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305")

CONFIG = """<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.applicationHost>
    <applicationPools><add name="P" startMode="AlwaysRunning" /></applicationPools>
    <sites>
      <siteDefaults><logFile directory="{logs}" /></siteDefaults>
      <site name="bench" id="1">
        <bindings><binding protocol="https" bindingInformation="{host}:{port}:"
            certificateHash="{thumbprint}" certificateStoreName="{store}" /></bindings>
        <application path="/" applicationPool="P" app="wsgi_hello:app" />
      </site>
    </sites>
  </system.applicationHost>
</configuration>
"""


class Certificate:
    """One CA and one leaf for 127.0.0.1 / localhost, made with openssl in `directory`."""

    def __init__(self, directory: Path) -> None:
        def openssl(*args: str) -> str:
            return subprocess.run(["openssl", *args], cwd=directory, check=True,
                                  capture_output=True, text=True).stdout

        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
        openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                "-subj", "/CN=webgarden bench CA")
        openssl("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost")
        (directory / "leaf.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-set_serial", "1", "-days", "2", "-extfile", "leaf.ext", "-out", "leaf.pem")
        self.cert = directory / "leaf.pem"
        self.key = directory / "leaf.key"
        fingerprint = openssl("x509", "-noout", "-fingerprint", "-sha1", "-in", "leaf.pem")
        self.thumbprint = fingerprint.strip().split("=")[1].replace(":", "")
        self.store = directory / "store"
        self.store.mkdir()
        combined = self.store / "localhost.pem"
        fd = os.open(combined, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.cert.read_bytes() + self.key.read_bytes())
        os.chmod(directory, 0o711)  # nginx's worker (not root) reads leaf.pem through it
        os.chmod(self.cert, 0o644)


CERT: list[Certificate] = []


class HttpsServer(Server):
    @property
    def url(self) -> str:
        return super().url.replace("http://", "https://", 1)


def build_webgarden(server: Server, tmp: Path, port: int) -> list[Proc]:
    cert = CERT[0]
    config = tmp / "applicationHost.config"
    config.write_text(CONFIG.format(host=HOST, port=port, thumbprint=cert.thumbprint,
                                    store=cert.store, logs=tmp / "logs"))
    exe = find_tool("webgarden")
    head = [exe] if exe else [sys.executable, "-m", "webgarden"]
    argv = [*head, "serve", "-c", str(config), "--event-log", str(tmp / "events.jsonl")]
    return [Proc("webgarden", argv, ("tcp", (HOST, port)), cwd=APPS_DIR, env=python_env())]


def build_nginx_tls(server: Server, tmp: Path, port: int) -> list[Proc]:
    """bench/run.py's nginx -> uvicorn, with nginx listening for TLS."""
    uvicorn, _ = build_nginx_uvicorn(server, tmp, port)
    cert = CERT[0]
    http_body = f"""\
    keepalive_requests 100000;

    upstream uvicorn {{
        server unix:{tmp}/uvicorn.sock;
        keepalive 128;
        keepalive_requests 100000;
    }}

    server {{
        listen {HOST}:{port} ssl;
        ssl_certificate {cert.cert};
        ssl_certificate_key {cert.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers {CIPHERS};
        ssl_prefer_server_ciphers off;
        access_log {tmp}/access.log combined buffer=64k flush=1s;
        location / {{
            proxy_pass http://uvicorn;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}"""
    return [uvicorn, nginx_proc(tmp, nginx_conf(tmp, http_body), port)]


def servers() -> list[Server]:
    return [
        HttpsServer("webgarden", "webgarden", build_webgarden, expect_body=BODY,
                    requires=[module("webgarden", extra=None), tool("openssl")],
                    inspect=inspect_webgarden,
                    description="webgarden serve, https (certificateHash), 1 worker, WSGI"),
        HttpsServer("nginx-uvicorn", "nginx(TLS)→uvicorn", build_nginx_tls, expect_body=BODY,
                    requires=[tool("nginx", apt="wrk nginx"), module("uvicorn")],
                    description="nginx 1 worker, listen ssl, Mozilla intermediate -> "
                    "uvicorn 1 worker over a Unix socket, ASGI"),
    ]


def run_slot(s: Server, kind: str, duration: int) -> dict:
    record: dict = {}
    try:
        with s:
            measure(s.url, WARMUP_SECONDS, connections=CONNECTIONS, extra_args=KINDS[kind])
            before = tree_cpu(s)
            result = measure(s.url, duration, connections=CONNECTIONS, extra_args=KINDS[kind])
            cpu = tree_cpu(s) - before
        record.update(result.as_dict(), errors=result.errors,
                      cpu_us_per_request=cpu / result.requests * 1e6 if result.requests
                      else None)
    except Exception as exc:  # one failed slot must not stop the suite
        record.update(requests_per_sec=None, error=str(exc))
    if s.notes:
        record["notes"] = list(s.notes)
    return record


def summarize(runs: list[dict]) -> tuple[float | None, float | None]:
    rps = [r["requests_per_sec"] for r in runs if r.get("requests_per_sec")]
    cpu = [r["cpu_us_per_request"] for r in runs if r.get("cpu_us_per_request")]
    return (statistics.median(rps) if rps else None, statistics.median(cpu) if cpu else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--only", default="keepalive,handshake",
                        help="measurements: keepalive, handshake (default: both)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    kinds = [k for k in args.only.replace(",", " ").split() if k in KINDS]
    if not kinds or args.rounds < 1 or args.duration < 1:
        parser.error("--only keepalive,handshake; --rounds and --duration at least 1")
    if find_tool("wrk") is None or find_tool("openssl") is None:
        print("tls.py: wrk and openssl are needed (apt-get install wrk openssl nginx)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    active = [s for s in servers() if not s.missing()]
    with tempfile.TemporaryDirectory(prefix="wgbench-tls-") as tmp:
        CERT.append(Certificate(Path(tmp)))
        results: dict[str, dict[str, list[dict]]] = {k: {s.key: [] for s in active}
                                                      for k in kinds}
        for kind in kinds:
            for r in range(args.rounds):
                for s in rotate(active, r):
                    print(f"[{kind} {r + 1}/{args.rounds}] {s.label} ...", end=" ",
                          file=sys.stderr, flush=True)
                    record = run_slot(s, kind, args.duration)
                    record["round"] = r + 1
                    results[kind][s.key].append(record)
                    print(record.get("error") or f"{record['requests_per_sec']:,.0f} req/s, "
                          f"{record['cpu_us_per_request']:.1f} µs CPU/request",
                          file=sys.stderr, flush=True)
    report = report_of(active, kinds, results, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nresults: {args.output}")
    failed = any("error" in run for k in results.values() for runs in k.values() for run in runs)
    return 1 if failed else 0


def report_of(active: list[Server], kinds: list[str], results: dict, args) -> dict:
    summary: dict[str, dict] = {}
    print()
    for kind in kinds:
        print(f"{kind}: wrk -t1 -c{CONNECTIONS} -d{args.duration}s https "
              f"{' '.join(KINDS[kind])}; {args.rounds} round(s), alternated")
        medians = {}
        for s in active:
            runs = results[kind][s.key]
            rps, cpu = summarize(runs)
            medians[s.key] = (rps, cpu)
            rounds = "  ".join(f"{r['requests_per_sec']:>9,.0f}" if r.get("requests_per_sec")
                               else "   failed" for r in runs)
            print(f"  {s.label:<20} {rounds}   median {rps or 0:>9,.0f} req/s   "
                  f"{cpu or 0:6.1f} µs CPU/request")
        wg, other = medians.get("webgarden", (None, None)), medians.get("nginx-uvicorn",
                                                                       (None, None))
        ratio = wg[0] / other[0] if wg[0] and other[0] else None
        goal = GOALS[kind]
        shown = f"{ratio:.2f}x" if ratio else "n/a"
        print(f"  webgarden / nginx(TLS)→uvicorn = {shown}   goal >= {goal}x: "
              + ("met" if ratio and ratio >= goal else "NOT met") + "\n")
        summary[kind] = {"medians": {k: {"rps": v[0], "cpu_us": v[1]} for k, v in medians.items()},
                         "ratio": ratio, "goal": goal, "met": bool(ratio and ratio >= goal)}
    return {
        "suite": "tls", "issue": 11,
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count(),
                 "python": sys.version.split()[0]},
        "git": git_state(),
        "versions": versions(("webgarden", "uvicorn", "uvloop", "httptools")),
        "config": {"rounds": args.rounds, "duration_s": args.duration,
                   "warmup_s": WARMUP_SECONDS, "connections": CONNECTIONS},
        "servers": {s.key: {"label": s.label, "description": s.description} for s in active},
        "results": results, "summary": summary,
    }


if __name__ == "__main__":
    sys.exit(main())
