"""Smart spawning: workers forked from a per-pool template that has imported the app.

The template loads the application once; a worker is a fork of it. Recycling still loads
new code: a template whose module files changed forks nothing (`template.stale`), and every
recycle's next generation gets a fresh template. Exit codes of forked workers are read by
the server (a child subreaper), and processes a worker leaves behind are reaped.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import httpx
import pytest

from harness import free_port

APP_V1 = '''
import os
VERSION = "v1"
LOADED_IN = os.getpid()

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{VERSION} {LOADED_IN} {os.getpid()}".encode()]
'''

THREADED_APP = '''
import threading
stop = threading.Event()
threading.Thread(target=stop.wait, name="import-time-poller", daemon=True).start()

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"threads at import"]
'''


def _ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")



def _started(server, pid: int) -> dict:
    return server.wait_event(lambda e: e["event"] == "worker.start" and e["pid"] == pid)


def test_workers_are_forks_of_the_template_and_children_of_the_server(
        start_server, shared_tmp) -> None:
    (shared_tmp / "app.py").write_text(APP_V1)
    server = start_server("app:application", "--workers", "2", cwd=shared_tmp)
    template = server.wait_event(lambda e: e["event"] == "template.ready")
    assert template["modules"] > 0
    for pid in server.worker_pids():
        assert _started(server, pid)["spawn"] == "fork"
        assert _ppid(pid) == server.proc.pid  # re-parented: the server reaps it
    version, loaded_in, pid = httpx.get(server.url + "/").text.split()
    assert version == "v1"
    assert int(loaded_in) == template["pid"]  # the module was imported once, in the template
    assert int(pid) != int(loaded_in)


def test_a_recycle_runs_changed_code_and_renews_the_template(start_server, shared_tmp) -> None:
    app = shared_tmp / "app.py"
    app.write_text(APP_V1)
    server = start_server("app:application", cwd=shared_tmp)
    first = server.wait_event(lambda e: e["event"] == "template.ready")
    assert httpx.get(server.url + "/").text.startswith("v1 ")

    # Unchanged code: the replacement forks from the template the pool already has, and
    # the next generation gets a fresh one.
    mark = len(server.events())
    server.admin("recycle", "apppool", "DefaultAppPool")
    ready = server.wait_event(lambda e: e["event"] == "worker.ready", after=mark)
    assert _started(server, ready["pid"])["spawn"] == "fork"
    server.wait_event(lambda e: e["event"] == "template.exit" and e["pid"] == first["pid"],
                      after=mark)
    second = server.wait_event(lambda e: e["event"] == "template.ready", after=mark)
    assert second["pid"] != first["pid"]

    # Changed code: the template is stale, a new one imports the new file.
    app.write_text(APP_V1.replace('"v1"', '"v2"'))
    mark = len(server.events())
    server.admin("recycle", "apppool", "DefaultAppPool")
    stale = server.wait_event(lambda e: e["event"] == "template.stale", after=mark)
    assert stale["pid"] == second["pid"] and stale["changed"] == str(app)
    ready = server.wait_event(lambda e: e["event"] == "worker.ready", after=mark)
    server.wait_event(lambda e: e["event"] == "worker.exit", after=mark)
    assert _started(server, ready["pid"])["spawn"] == "fork"
    version, _, pid = httpx.get(server.url + "/").text.split()
    assert (version, int(pid)) == ("v2", ready["pid"])


def test_an_app_that_starts_threads_at_import_is_spawned_directly(
        start_server, shared_tmp) -> None:
    (shared_tmp / "threaded.py").write_text(THREADED_APP)
    server = start_server("threaded:application", cwd=shared_tmp)
    refused = server.wait_event(lambda e: e["event"] == "template.unforkable")
    assert "import-time-poller" in refused["reason"]
    (pid,) = server.worker_pids()
    assert _started(server, pid)["spawn"] == "exec"
    assert httpx.get(server.url + "/").text == "threads at import"


def test_spawn_method_direct_starts_every_worker_as_a_new_interpreter(
        start_server, tmp_path) -> None:
    config = tmp_path / "direct.config"
    port = free_port()
    config.write_text(f'''<configuration><system.applicationHost>
  <applicationPools>
    <add name="Direct" spawnMethod="direct" startMode="AlwaysRunning" />
  </applicationPools>
  <sites><site name="S" id="1">
    <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:" /></bindings>
    <application path="/" applicationPool="Direct" app="testapp:application" />
  </site></sites>
</system.applicationHost></configuration>''')
    server = start_server("serve", "-c", str(config))
    (pid,) = server.worker_pids()
    assert _started(server, pid)["spawn"] == "exec"
    assert not [e for e in server.events() if e["event"].startswith("template.")]


def test_exit_codes_of_forked_workers_are_read(start_server) -> None:
    server = start_server("testapp:application")
    (pid,) = server.worker_pids()
    assert _started(server, pid)["spawn"] == "fork"
    os.kill(pid, signal.SIGKILL)
    gone = server.wait_event(lambda e: e["event"] == "worker.exit" and e["pid"] == pid)
    assert gone["signal"] == "SIGKILL"
    assert server.wait_event(lambda e: e["event"] == "worker.crash" and e["pid"] == pid)


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh (a process the app starts)")
def test_a_process_a_worker_leaves_behind_is_reaped(start_server) -> None:
    server = start_server("testapp:application")
    child = int(httpx.get(server.url + "/spawn-child?cmd=exit+7").text)
    mark = len(server.events())
    server.admin("recycle", "apppool", "DefaultAppPool")  # its worker exits: the child is ours
    reaped = server.wait_event(lambda e: e["event"] == "process.reaped", after=mark)
    assert (reaped["pid"], reaped["code"]) == (child, 7)
    assert not Path(f"/proc/{child}").exists()


def _nice(pid: int) -> int:
    return _nice_of(Path(f"/proc/{pid}"))


NICE_APP = '''
import os
LOADED_AT_NICE = os.nice(0)  # the template's niceness while it imported this module

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{LOADED_AT_NICE} {os.nice(0)}".encode()]
'''


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root server may give the template its "
                    "priority back, so only a root server lowers it")
def test_the_template_imports_at_a_lower_priority_and_workers_serve_at_the_servers(
        start_server, shared_tmp) -> None:
    (shared_tmp / "niceapp.py").write_text(NICE_APP)
    server = start_server("niceapp:application", "--workers", "2", cwd=shared_tmp)
    template = server.wait_event(lambda e: e["event"] == "template.ready")
    server_nice = _nice(server.proc.pid)
    assert _nice(template["pid"]) == server_nice  # given back once loaded
    assert httpx.get(server.url + "/").text == f"10 {server_nice}"
    for pid in server.worker_pids():
        assert _started(server, pid)["spawn"] == "fork"
        tasks = Path(f"/proc/{pid}/task")
        assert {_nice_of(tasks / tid) for tid in os.listdir(tasks)} == {server_nice}


def _nice_of(task: Path) -> int:
    """The nice value of a process or thread (/proc/PID or /proc/PID/task/TID)."""
    stat = (task / "stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[16])  # field 19: nice


LYING_APP = '''
import os
import sys

# This code runs in the template (`python -m webgarden.worker.template`, so __main__): it
# makes it report the server's own pid as the worker it forked, as a compromised
# application could.
sys.modules["__main__"].fork_worker = lambda *args: os.getppid()

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"served anyway"]
'''


def test_a_pid_the_template_lies_about_is_refused(start_server, shared_tmp) -> None:
    (shared_tmp / "liar.py").write_text(LYING_APP)
    server = start_server("liar:application", cwd=shared_tmp)
    refused = server.wait_event(lambda e: e["event"] == "template.bad_pid")
    assert refused["reported"] == server.proc.pid
    assert refused["problem"] == "is not a child of the server"
    (pid,) = server.worker_pids()
    assert _started(server, pid)["spawn"] == "exec"  # spawned directly instead
    assert httpx.get(server.url + "/").text == "served anyway"
    assert server.proc.poll() is None
