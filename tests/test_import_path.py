"""A pool imports exactly what its configuration names: its pythonPath (`webgarden run`
names the directory it was started in), never the server's working directory.
An application that fails at import says where, in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from harness import APPS, free_port

APP_A = '''
import os

def application(environ, start_response):
    # Pool A, compromised: plant a module in the server's working directory, named as
    # pool B's application, hoping B imports it at its next start.
    with open(os.path.join(os.getcwd(), "bapp.py"), "w") as f:
        f.write("def application(environ, start_response):\\n"
                "    start_response('200 OK', [])\\n"
                "    return [b'planted']\\n")
    start_response("200 OK", [])
    return [b"planted in " + os.getcwd().encode()]
'''

APP_B = '''
def application(environ, start_response):
    start_response("200 OK", [])
    return [b"genuine"]
'''

CONFIG = """<configuration><system.applicationHost>
  <applicationPools>
    <add name="A" pythonPath="{a}" />
    <add name="B" pythonPath="{b}" />
  </applicationPools>
  <sites>
    <site name="s" id="1">
      <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:" /></bindings>
      <application path="/" applicationPool="A" app="aapp:application" />
      <application path="/b" applicationPool="B" app="bapp:application" />
    </site>
  </sites>
</system.applicationHost></configuration>
"""


def test_a_module_planted_in_the_servers_directory_by_one_pool_never_runs_in_another(
        start_server, shared_tmp: Path) -> None:
    cwd, a, b = shared_tmp / "cwd", shared_tmp / "a", shared_tmp / "b"
    for d in (cwd, a, b):
        d.mkdir()
        d.chmod(0o755)
    cwd.chmod(0o777)  # the server's directory: pool A's user may write there
    (a / "aapp.py").write_text(APP_A)
    (b / "bapp.py").write_text(APP_B)
    port = free_port()
    config = shared_tmp / "plant.config"
    config.write_text(CONFIG.format(a=a, b=b, port=port))
    server = start_server("serve", "-c", str(config), cwd=cwd)
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(base + "/b/").text == "genuine"
    assert httpx.get(base + "/").text == f"planted in {cwd}"
    assert (cwd / "bapp.py").exists()
    # The first recycle's replacement forks from the template that imported B's app before
    # the plant; the template renewed after it imports afresh, and the second recycle's
    # replacement forks from that one.
    mark = len(server.events())
    assert server.admin("recycle", "apppool", "B").returncode == 0
    server.wait_event(lambda e: e["event"] == "template.ready" and e["pool"] == "B", after=mark)
    mark = len(server.events())
    assert server.admin("recycle", "apppool", "B").returncode == 0
    server.wait_event(lambda e: e["event"] == "worker.ready" and e["pool"] == "B", after=mark)
    for _ in range(3):
        assert httpx.get(base + "/b/").text == "genuine"


BROKEN = '''
import helper  # line 2
application = None
'''

HELPER = '''
def fail():
    raise RuntimeError("the database is not configured")  # line 3

fail()
'''


def _run(app: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webgarden", "run", app, "--bind", "127.0.0.1:0",
         "--control", str(cwd / "c.sock"), *extra],
        cwd=cwd, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(APPS)},
    )


def test_an_app_that_fails_at_import_names_the_failing_line_of_its_own_code(
        shared_tmp: Path) -> None:
    (shared_tmp / "broken.py").write_text(BROKEN)
    (shared_tmp / "helper.py").write_text(HELPER)
    result = _run("broken:application", shared_tmp)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "webgarden: pool 'DefaultAppPool' cannot load its application: cannot import "
        f"module 'broken': {shared_tmp}/helper.py:3: RuntimeError: the database is not "
        "configured"
    ]


def test_a_syntax_error_names_its_file_and_line(shared_tmp: Path) -> None:
    (shared_tmp / "typo.py").write_text("x = 1\ndef application(:\n")
    result = _run("typo:application", shared_tmp)
    assert result.returncode == 2
    assert f"cannot import module 'typo': {shared_tmp}/typo.py:2: SyntaxError" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_verbose_adds_the_whole_traceback_with_the_paths_the_user_knows(
        shared_tmp: Path) -> None:
    (shared_tmp / "broken.py").write_text(BROKEN)
    (shared_tmp / "helper.py").write_text(HELPER)
    result = _run("broken:application", shared_tmp, "--verbose")
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert f'File "{shared_tmp}/broken.py", line 2' in result.stderr
    assert f'File "{shared_tmp}/helper.py", line 3, in fail' in result.stderr
    assert "/proc/self/fd/" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(
        f"{shared_tmp}/helper.py:3: RuntimeError: the database is not configured")


def test_a_pool_without_a_python_path_does_not_import_from_the_servers_directory(
        shared_tmp: Path) -> None:
    """`serve` names no directory: the server's own is not on the pool's path, even
    though an application module of that name sits there."""
    (shared_tmp / "cwdonly.py").write_text(APP_B)
    config = shared_tmp / "cwd.config"
    config.write_text(CONFIG.replace('pythonPath="{a}" ', "").replace(
        'pythonPath="{b}" ', 'startMode="AlwaysRunning" ').replace(
        "aapp:application", "testapp:application").replace(
        "bapp:application", "cwdonly:application").format(port=free_port()))
    result = subprocess.run(
        [sys.executable, "-m", "webgarden", "serve", "-c", str(config), "--control",
         str(shared_tmp / "c.sock")],
        cwd=shared_tmp, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(APPS)},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "webgarden: pool 'B' cannot load its application: cannot import module 'cwdonly': "
        "ModuleNotFoundError: No module named 'cwdonly'"
    ]
