"""ASGI lifespan in each worker, and the interface told from the callable."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from harness import APPS, free_port


def _lines(text: str, word: str) -> list[int]:
    return [int(pid) for pid in re.findall(rf"lifespan {word} in (\d+)", text)]


def test_startup_runs_in_each_forked_worker_and_its_state_reaches_requests(start_server
                                                                           ) -> None:
    server = start_server("asgiapp:app", "--workers", "2")  # smart spawning (the default)
    ready = [server.wait_event(lambda e: e["event"] == "worker.ready")]
    ready.append(server.wait_event(lambda e: e["event"] == "worker.ready"
                                   and e["pid"] != ready[0]["pid"]))
    pids = sorted(e["pid"] for e in ready)
    # Once per worker, in the worker itself: never in the template that only imports.
    assert sorted(_lines(server.stderr, "startup")) == pids
    with httpx.Client(base_url=server.url) as http:
        for _ in range(4):
            state = http.get("/state").json()
            pid = int(http.get("/pid").text)
            assert pid in pids and state["db"].startswith("connection of ")
            assert "touched" not in state  # each request gets its own shallow copy


def test_shutdown_runs_when_the_worker_stops(start_server) -> None:
    server = start_server("asgiapp:app")
    pid = server.wait_event(lambda e: e["event"] == "worker.ready")["pid"]
    assert httpx.get(f"{server.url}/hello").status_code == 200
    server.stop()
    assert _lines(server.stderr, "shutdown") == [pid]


def test_shutdown_runs_in_a_recycled_worker_and_startup_in_its_replacement(start_server
                                                                            ) -> None:
    server = start_server("asgiapp:app")
    old = server.wait_event(lambda e: e["event"] == "worker.ready")["pid"]
    assert server.admin("recycle", "apppool", "DefaultAppPool").returncode == 0
    new = server.wait_event(lambda e: e["event"] == "worker.ready" and e["pid"] != old)["pid"]
    server.wait_event(lambda e: e["event"] == "worker.exit" and e["pid"] == old)
    assert _lines(server.stderr, "shutdown") == [old]
    assert _lines(server.stderr, "startup") == [old, new]


def test_a_startup_failure_at_start_is_one_line_with_the_apps_message(tmp_path: Path
                                                                       ) -> None:
    result = _run_failing(tmp_path, "asgiapp:app", env={"ASGI_STARTUP_FAIL": "1"})
    assert result.returncode == 2
    assert ("cannot load its application: lifespan startup of asgiapp:app failed: the "
            "database is unreachable") in result.stderr


def test_a_startup_failure_after_a_crash_is_counted_by_rapid_fail(start_server,
                                                                  shared_tmp: Path) -> None:
    marker = shared_tmp / "database-down"
    server = start_server("asgiapp:app", "--rapid-fail-max-crashes", "2",
                          env={"ASGI_STARTUP_FAIL_IF": str(marker)})
    assert httpx.get(f"{server.url}/hello").status_code == 200
    marker.touch()  # from now on, every new worker's startup fails
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(f"{server.url}/crash")  # crash 1; its replacement cannot start: crash 2
    failed = server.wait_event(lambda e: e["event"] == "worker.load_failed")
    assert failed["error"] == ("lifespan startup of asgiapp:app failed: the database is "
                               "unreachable")
    server.wait_event(lambda e: e["event"] == "pool.rapid_fail", timeout=60)
    assert httpx.get(f"{server.url}/hello").status_code == 503


def test_lifespan_off_never_sends_the_events(start_server) -> None:
    server = start_server("asgiapp:app", "--lifespan", "off", env={"ASGI_STARTUP_FAIL": "1"})
    assert "db" not in httpx.get(f"{server.url}/state").json()
    server.stop()
    assert not _lines(server.stderr, "startup") and not _lines(server.stderr, "shutdown")


def test_an_app_without_lifespan_is_served_under_auto_and_refused_under_on(start_server
                                                                          ) -> None:
    server = start_server("asgiapp:no_lifespan")
    assert httpx.get(f"{server.url}/hello").text == "Hello, World!"
    refused = _run_failing(server.event_log.parent, "asgiapp:no_lifespan", "--lifespan", "on")
    assert ("lifespan startup of asgiapp:no_lifespan failed: ValueError: no lifespan here"
            in refused.stderr.splitlines()[-1])


def test_the_interface_is_told_from_the_callable(start_server) -> None:
    asgi_instance = start_server("asgiapp:instance")  # an object with an async __call__
    assert httpx.get(f"{asgi_instance.url}/hello").text == "Hello, World!"
    wsgi = start_server("asgiapp:wsgi")
    assert httpx.get(wsgi.url).text.startswith("wsgi ")


def test_an_asgi_app_served_as_wsgi_is_one_line_naming_the_interface_to_use(tmp_path: Path
                                                                            ) -> None:
    result = _run_failing(tmp_path, "asgiapp:app", "--interface", "wsgi")
    assert result.returncode == 2  # at start, never a 500 at request time
    assert result.stderr.splitlines()[-1] == (
        "webgarden: pool 'DefaultAppPool' cannot load its application: "
        "'asgiapp:app' is an ASGI application (async __call__(scope, receive, send)), not "
        'WSGI: serve it with --interface asgi (interface="asgi" in the configuration), or '
        "leave it to auto")


def test_a_wsgi_app_served_as_asgi_is_one_line_naming_the_interface_to_use(tmp_path: Path
                                                                           ) -> None:
    result = _run_failing(tmp_path, "testapp:application", "--interface", "asgi")
    assert result.returncode == 2
    line = result.stderr.splitlines()[-1]
    assert "'testapp:application' is a WSGI application" in line
    assert "--interface wsgi" in line


def _run_failing(tmp_path: Path, *args: str, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
    """`webgarden run` whose application cannot load: it exits at start."""
    return subprocess.run(
        [sys.executable, "-m", "webgarden", "run", *args, "--bind", "127.0.0.1:0",
         "--control", str(tmp_path / "failing.sock"), "--event-log", str(tmp_path / "ev")],
        cwd=APPS, env={**os.environ, "PYTHONPATH": str(APPS), "SystemDrive": str(tmp_path),
                       **(env or {})},
        capture_output=True, text=True, timeout=120)


SERVE_CONFIG = """<configuration><system.applicationHost>
    <applicationPools><add name="P" startMode="AlwaysRunning" /></applicationPools>
    <sites><site name="s" id="1">
      <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:" /></bindings>
      <application path="/" applicationPool="P" app="asgiapp:{app}" />
    </site></sites>
</system.applicationHost></configuration>
"""


def test_serve_flags_set_every_applications_interface_and_lifespan_across_reloads(
        start_server, tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "serve.config"
    config.write_text(SERVE_CONFIG.format(port=port, app="app"))
    server = start_server("serve", "-c", str(config), "--interface", "asgi",
                          "--lifespan", "off")
    url = f"http://127.0.0.1:{port}"
    assert "db" not in httpx.get(f"{url}/state").json()  # lifespan off, from the command line
    config.write_text(SERVE_CONFIG.format(port=port, app="instance"))
    server.signal(signal.SIGHUP)
    server.wait_event(lambda e: e["event"] == "pool.recycle")
    mark = len(server.events())
    server.wait_event(lambda e: e["event"] == "worker.ready", after=mark - 1)
    assert "db" not in httpx.get(f"{url}/state").json()  # still off after the reload
