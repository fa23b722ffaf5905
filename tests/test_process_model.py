"""The process model (WAS/W3SVC): health, every recycling trigger, rapid-fail, orphans."""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness import WorkerKiller, free_port
from webgarden.admin.control import call

POOL = """<add name="{name}" threads="4" {attrs}>
        <processModel {process} />
        <recycling {recycling}><periodicRestart {periodic}>{schedule}</periodicRestart></recycling>
        <failure {failure} />
        <cpu {cpu} />
      </add>"""

DOCUMENT = """<configuration><system.applicationHost>
    <applicationPools>
      {pools}
    </applicationPools>
    <sites><site name="s" id="1">
      <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:" /></bindings>
      {apps}
    </site></sites>
</system.applicationHost></configuration>
"""



def _serve(start_server, tmp_path: Path, pools: dict[str, dict[str, str]]):
    """Serve one site; pool P gets the application at /p (the first pool also at /)."""
    port = free_port()
    blocks, apps = [], []
    for i, (name, parts) in enumerate(pools.items()):
        fields = {"attrs": 'startMode="AlwaysRunning"', "process": "", "recycling": "", "periodic": "", "schedule": "",
                  "failure": "", "cpu": "", **parts}
        blocks.append(POOL.format(name=name, **fields))
        if i == 0:
            apps.append(f'<application path="/" applicationPool="{name}" app="testapp:application" />')
        apps.append(f'<application path="/{name.lower()}" applicationPool="{name}" '
                    'app="testapp:application" />')
    config = tmp_path / "pools.config"
    config.write_text(DOCUMENT.format(pools="\n".join(blocks), apps="\n".join(apps), port=port))
    server = start_server("serve", "-c", str(config))
    server.base = f"http://127.0.0.1:{port}"
    return server


def _recycled(server, pool: str, reason: str, timeout: float = 30) -> dict:
    return server.wait_event(
        lambda e: e["event"] == "pool.recycle" and e["pool"] == pool and e["reason"] == reason,
        timeout=timeout)


def test_each_recycling_trigger_logs_its_reason_and_iis_event(start_server, tmp_path) -> None:
    server = _serve(start_server, tmp_path, {
        "Req": {"periodic": 'requests="5"'},
        "Priv": {"periodic": 'privateMemory="150000"'},
        "Virt": {"periodic": 'memory="4000000"'},
        "Ask": {},
    })
    with httpx.Client(base_url=server.base, timeout=30) as http:
        pids = {http.get("/req/pid").text for _ in range(5)}
        assert len(pids) == 1
        event = _recycled(server, "Req", "Requests")
        assert (event["iis_event"], event["served"]) == (5075, 5)
        assert http.get("/priv/grow?mb=200").text == "grown"
        event = _recycled(server, "Priv", "PrivateMemory")
        assert event["iis_event"] == 5117 and event["measured_kb"] > 150000
        assert http.get("/virt/reserve?mb=5000").text == "reserved"
        assert _recycled(server, "Virt", "Memory")["iis_event"] == 5077
        assert http.get("/ask/recycle-me").text == "asked"
        assert _recycled(server, "Ask", "IsapiUnhealthy")["iis_event"] == 2299
        # Each recycled worker was replaced, and the replacement serves.
        for pool in ("req", "priv", "virt", "ask"):
            assert http.get(f"/{pool}/hello").text == "Hello, World!"
    assert server.admin("recycle", "apppool", "Req").returncode == 0
    assert _recycled(server, "Req", "OnDemand")["iis_event"] is None


def test_a_recycle_every_second_under_load_fails_no_request_of_any_method(start_server) -> None:
    server = start_server("testapp:application", "--workers", "2", "--threads", "4")
    stop = threading.Event()
    recycles = []

    def recycler() -> None:
        while not stop.wait(1.0):  # the period
            try:
                recycles.append(call(server.control, {"verb": "recycle", "object": "apppool",
                                                      "name": "DefaultAppPool"}))
            except Exception as exc:  # a pool still recycling answers an error; go on
                recycles.append(exc)

    def client(n: int) -> list[int]:
        statuses = []
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for i in range(100):
                if (n + i) % 3 == 0:
                    r = http.post("/echo", content=b"payload %d" % i)
                    ok = r.content == b"payload %d" % i
                else:
                    r = http.get("/slow?ms=10")
                    ok = r.content == b"slow done"
                statuses.append(r.status_code if ok else -r.status_code)
        return statuses

    thread = threading.Thread(target=recycler)
    thread.start()
    try:
        with ThreadPoolExecutor(50) as pool:
            results = [s for batch in pool.map(client, range(50)) for s in batch]
    finally:
        stop.set()
        thread.join()
    assert len(results) == 5000
    assert set(results) == {200}, {s: results.count(s) for s in set(results)}
    done = [r for r in recycles if isinstance(r, dict)]
    assert len(done) >= 2, recycles
    assert len([e for e in server.events() if e["event"] == "pool.recycle"]) == len(done)


def test_random_kills_every_500_ms_fail_no_get_and_lose_no_queued_request(start_server) -> None:
    server = start_server("testapp:application", "--workers", "2", "--threads", "4",
                          "--rapid-fail-max-crashes", "0")
    def client(_: int) -> list[int]:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            return [http.get("/slow?ms=5").status_code for _ in range(100)]

    with WorkerKiller(server, 0.5, pick="random") as killer, ThreadPoolExecutor(50) as pool:
        results = [s for batch in pool.map(client, range(50)) for s in batch]
    killed = killer.killed
    assert len(results) == 5000 and set(results) == {200}
    assert len(killed) >= 3


def test_a_crash_looping_pool_is_stopped_answers_503_and_comes_back(start_server, tmp_path) -> None:
    server = _serve(start_server, tmp_path, {
        "Crashy": {"failure": 'rapidFailProtectionMaxCrashes="5"'},
        "Steady": {},
    })
    with httpx.Client(base_url=server.base, timeout=30) as http:
        statuses = []
        while not statuses or statuses[-1] != 503:  # 502s until the pool is stopped
            statuses.append(http.get("/crashy/crash").status_code)
            assert len(statuses) < 20 and set(statuses) <= {502, 503}
        event = server.wait_event(lambda e: e["event"] == "pool.rapid_fail")
        assert (event["pool"], event["iis_event"]) == ("Crashy", 5002)
        crashes = [e for e in server.events() if e["event"] == "worker.crash"]
        assert len(crashes) == 5 and all(e["iis_event"] == 5009 for e in crashes)
        refused = http.get("/crashy/hello")
        assert refused.status_code == 503 and "HTTP Error 503" in refused.text
        assert http.get("/steady/hello").text == "Hello, World!"
        server.wait_event(lambda e: e["event"] == "pool.state" and e["pool"] == "Crashy"
                          and e["state"] == "Stopped")
        assert server.admin("start", "apppool", "Crashy").returncode == 0
        server.wait_event(lambda e: e["event"] == "worker.ready" and e["pool"] == "Crashy",
                          after=len(server.events()) - 1)
        assert http.get("/crashy/hello").text == "Hello, World!"


def test_tcp_level_load_balancing_resets_the_connection_of_a_stopped_pool(start_server, tmp_path) -> None:
    server = _serve(start_server, tmp_path, {
        "Crashy": {"failure": 'rapidFailProtectionMaxCrashes="2" loadBalancerCapabilities="TcpLevel"'},
    })
    with httpx.Client(base_url=server.base, timeout=30) as http:
        while not [e for e in server.events() if e["event"] == "pool.rapid_fail"]:
            with contextlib.suppress(httpx.TransportError):  # the last one may be reset too
                http.get("/crash")
        with pytest.raises(httpx.TransportError):
            http.get("/hello")


def test_a_worker_holding_the_interpreter_is_replaced_after_its_stacks_are_logged(start_server, tmp_path) -> None:
    server = _serve(start_server, tmp_path, {
        "Spinner": {"process": 'pingInterval="00:00:01" pingResponseTime="00:00:01"',
                 "failure": 'rapidFailProtection="false"'},
    })
    first = server.wait_event(lambda e: e["event"] == "worker.ready")
    with httpx.Client(base_url=server.base, timeout=60) as http:
        # The request is lost with its worker (sent again once, lost again): 502.
        assert http.get("/spin").status_code == 502
        failed = server.wait_event(lambda e: e["event"] == "worker.ping_failed")
        assert (failed["pid"], failed["iis_event"]) == (first["pid"], 5010)
        stacks = server.wait_event(lambda e: e["event"] == "worker.stacks"
                                   and e["pid"] == first["pid"])
        assert stacks["reason"] == "pingResponseTime"
        assert "testapp.py" in stacks["stacks"] and "application" in stacks["stacks"]
        assert http.get("/hello").text == "Hello, World!"  # served by the replacement


def test_an_execution_timeout_gives_504_logs_stacks_and_recycles_the_worker(start_server, tmp_path) -> None:
    server = _serve(start_server, tmp_path, {
        "Slowpoke": {"attrs": 'executionTimeout="00:00:02"',
                 "process": 'shutdownTimeLimit="00:00:03"'},
    })
    with httpx.Client(base_url=server.base, timeout=60) as http:
        response = http.get("/slow?ms=20000")
        assert response.status_code == 504 and "HTTP Error 504" in response.text
        event = server.wait_event(lambda e: e["event"] == "request.timeout")
        assert event["url"] == "/slow?ms=20000"
        stacks = server.wait_event(lambda e: e["event"] == "worker.stacks")
        assert stacks["reason"] == "executionTimeout" and "testapp.py" in stacks["stacks"]
        _recycled(server, "Slowpoke", "ExecutionTimeout")
        assert http.get("/hello").text == "Hello, World!"


def test_an_orphaned_worker_stays_alive_out_of_service(start_server, tmp_path) -> None:
    server = _serve(start_server, tmp_path, {
        "Orph": {"process": 'pingInterval="00:00:01" pingResponseTime="00:00:01"',
                 "failure": 'orphanWorkerProcess="true" rapidFailProtection="false"'},
    })
    first = server.wait_event(lambda e: e["event"] == "worker.ready")
    with httpx.Client(base_url=server.base, timeout=60) as http:
        with contextlib.suppress(httpx.TimeoutException):
            http.get("/spin?n=40", timeout=3)
        orphan = server.wait_event(lambda e: e["event"] == "worker.orphaned")
        assert orphan["pid"] == first["pid"]
        os.kill(first["pid"], 0)  # still alive
        server.wait_event(lambda e: e["event"] == "worker.ready" and e["pid"] != first["pid"])
        assert http.get("/hello").text == "Hello, World!"
    os.kill(first["pid"], signal.SIGKILL)  # ours to clean up, as an administrator would


def test_workers_are_pinned_to_the_cpus_of_the_affinity_mask(start_server, tmp_path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    target = cpus[-1]
    server = _serve(start_server, tmp_path, {
        "Pinned": {"cpu": f'smpAffinitized="true" smpProcessorAffinityMask="{1 << target}"',
                   "process": 'maxProcesses="2"'},
    })
    first = server.wait_event(lambda e: e["event"] == "worker.ready")
    second = server.wait_event(lambda e: e["event"] == "worker.ready" and e["pid"] != first["pid"])
    for pid in (first["pid"], second["pid"]):
        status = Path(f"/proc/{pid}/status").read_text()
        line = next(ln for ln in status.splitlines() if ln.startswith("Cpus_allowed_list"))
        assert line.split()[-1] == str(target)


def test_a_cpu_limit_with_kill_action_shuts_the_pool_down_for_its_interval(start_server, tmp_path) -> None:
    server = _serve(start_server, tmp_path, {
        "Hog": {"cpu": 'limit="1000" action="KillW3wp" resetInterval="00:01:00"',
                "process": 'shutdownTimeLimit="00:00:02"'},
        "Calm": {},
    })
    with httpx.Client(base_url=server.base, timeout=60) as http:
        with contextlib.suppress(httpx.TransportError):  # it spins for seconds: do not wait
            http.get("/hog/spin?n=28", timeout=2)  # over 1 % of the machine's minute
        event = server.wait_event(lambda e: e["event"] == "pool.cpu_limit")
        assert (event["pool"], event["action"]) == ("Hog", "KillW3wp") and event["percent"] > 1
        refused = http.get("/hog/hello")
        assert refused.status_code == 503
        assert http.get("/calm/hello").text == "Hello, World!"


def test_a_throttled_pool_runs_in_a_cgroup_with_its_quota(start_server, tmp_path) -> None:
    server = _serve(start_server, tmp_path, {
        "Slowed": {"cpu": 'limit="20000" action="Throttle"'},
    })
    event = server.wait_event(lambda e: e["event"] in ("pool.cpu_throttle",
                                                       "pool.cpu_throttle_unavailable"))
    if event["event"] == "pool.cpu_throttle_unavailable":
        pytest.skip(f"this machine cannot throttle with cgroups: {event['reason']}")
    ready = server.wait_event(lambda e: e["event"] == "worker.ready")
    membership = Path(f"/proc/{ready['pid']}/cgroup").read_text()
    assert os.path.basename(event["cgroup"]) in membership
    # 20 % of the machine: the quota is a fifth of all CPUs over each period.
    assert event["quota_us"] == int(100_000 * os.cpu_count() * 0.2)


@pytest.mark.slow
def test_time_schedule_and_idle_triggers_fire_within_their_minute(start_server, tmp_path) -> None:
    # IIS's granularity for these is one minute: this test takes about that long.
    now = datetime.datetime.now()
    next_minute = (now + datetime.timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (next_minute - now).total_seconds() < 5:
        next_minute += datetime.timedelta(minutes=1)
    at = next_minute.strftime("%H:%M:00")
    server = _serve(start_server, tmp_path, {
        "Aged": {"periodic": 'time="00:01:00"'},
        "Sched": {"periodic": 'time="00:00:00"', "schedule": f'<schedule><add value="{at}" /></schedule>'},
        "Idle": {"attrs": 'startMode="OnDemand"', "process": 'idleTimeout="00:01:00"'},
    })
    with httpx.Client(base_url=server.base, timeout=120) as http:
        assert http.get("/idle/hello").status_code == 200  # starts the OnDemand pool
        idle_pid = server.wait_event(lambda e: e["event"] == "worker.ready" and e["pool"] == "Idle")["pid"]
        assert _recycled(server, "Aged", "Time", timeout=90)["iis_event"] == 5074
        assert _recycled(server, "Sched", "Schedule", timeout=150)["iis_event"] == 5076
        idle = server.wait_event(lambda e: e["event"] == "worker.idle_shutdown", timeout=90)
        assert (idle["pid"], idle["iis_event"]) == (idle_pid, 5186)
        server.wait_event(lambda e: e["event"] == "worker.exit" and e["pid"] == idle_pid)
        mark = len(server.events())
        assert http.get("/idle/hello").text == "Hello, World!"  # a worker starts on demand
        server.wait_event(lambda e: e["event"] == "pool.demand_start" and e["pool"] == "Idle",
                          after=mark)
