"""Several servers on one machine: each has its own control socket, and the verbs find it
by the name a user knows (the port of `run`, the file of `serve`), or alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config_documents import document, site
from harness import APPS, ServerProcess, free_port
from webgarden.admin import control


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A runtime directory of the test's own, for the servers and the verbs alike."""
    directory = tmp_path / "run"
    monkeypatch.setenv(control.ENV_DIR, str(directory))
    monkeypatch.delenv(control.ENV_PATH, raising=False)
    return directory


@pytest.fixture
def servers(tmp_path: Path, runtime: Path):
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = ServerProcess(list(args), tmp_path)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def verb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "webgarden", *args],
                          capture_output=True, text=True, timeout=60, env=os.environ.copy())


def test_two_run_servers_on_two_ports_both_start_and_both_answer_list(servers, runtime) -> None:
    ports = free_port(), free_port()
    first, second = (servers("run", "testapp:application", "--bind", f"127.0.0.1:{p}")
                     for p in ports)
    assert {first.control, second.control} == {str(runtime / f"port-{p}.sock") for p in ports}
    for port, server in zip(ports, (first, second), strict=True):
        shown = verb("list", "wp", "--port", str(port), "--json")
        assert shown.returncode == 0, shown.stderr
        assert {w["pid"] for w in json.loads(shown.stdout)} == set(server.worker_pids())


def test_a_verb_that_names_no_server_finds_the_only_one_or_lists_them(servers, runtime) -> None:
    ports = free_port(), free_port()
    first = servers("run", "testapp:application", "--bind", f"127.0.0.1:{ports[0]}")
    alone = verb("list", "apppools")
    assert alone.returncode == 0 and "DefaultAppPool" in alone.stdout, alone.stderr
    servers("run", "testapp:application", "--bind", f"127.0.0.1:{ports[1]}")
    both = verb("list", "apppools")
    assert both.returncode == 2
    names = ", ".join(sorted(f"port-{port}.sock" for port in ports))
    assert both.stderr.strip() == (
        f"webgarden: 2 webgarden servers are listening in {runtime} ({names}): "
        "name one with --port N, --config FILE or --control PATH")
    first.stop()
    assert verb("list", "apppools").returncode == 0  # the stale socket is not counted


def test_two_serve_servers_have_one_socket_per_configuration_file(servers, tmp_path,
                                                                   runtime) -> None:
    files = []
    for name in ("a", "b"):
        path = tmp_path / name / "applicationHost.config"
        path.parent.mkdir()
        binding = f"127.0.0.1:{free_port()}:"
        path.write_text(document(sites=site(binding=binding,
                                            apps='<application path="/" applicationPool="P" '
                                            'app="testapp:application" />')))
        files.append(path)
    started = [servers("serve", "-c", str(path)) for path in files]
    assert started[0].control != started[1].control
    assert started[0].control == control.config_path(str(files[0]))
    for path in files:
        shown = verb("list", "apppools", "--config", str(path), "--json")
        assert shown.returncode == 0, shown.stderr
        assert [pool["name"] for pool in json.loads(shown.stdout)] == ["P"]


def test_the_same_port_or_file_twice_is_refused_with_a_clear_error(servers, runtime) -> None:
    port = free_port()
    servers("run", "testapp:application", "--bind", f"127.0.0.1:{port}")
    again = subprocess.run(
        [sys.executable, "-m", "webgarden", "run", "testapp:application",
         "--bind", f"127.0.0.1:{free_port()}", "--control", str(runtime / f"port-{port}.sock")],
        cwd=APPS, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(APPS)})
    assert again.returncode == 2 and "another webgarden server answers" in again.stderr


def test_the_default_runtime_directory_is_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(control.ENV_DIR, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    expected = "/run/webgarden" if os.geteuid() == 0 else "/run/user/1000/webgarden"
    assert control.runtime_dir() == expected
    assert control.port_path(8080) == f"{expected}/port-8080.sock"
    assert control.config_path("/etc/a/x.config") != control.config_path("/etc/b/x.config")


def test_a_control_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    result = subprocess.run(
        [sys.executable, "-m", "webgarden", "run", "testapp:application",
         "--bind", "127.0.0.1:0", "--control", str(shared / "c.sock")],
        cwd=APPS, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(APPS)})
    assert result.returncode == 2
    assert "writable by no one else" in result.stderr and "Traceback" not in result.stderr


def test_two_run_servers_with_every_default_both_start_and_both_answer_list(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No runtime directory chosen: /run/webgarden as root, the user's own otherwise.
    monkeypatch.delenv(control.ENV_DIR, raising=False)
    monkeypatch.delenv(control.ENV_PATH, raising=False)
    ports = free_port(), free_port()
    started = []
    try:
        for port in ports:
            started.append(ServerProcess(["run", "testapp:application", "--bind",
                                          f"127.0.0.1:{port}"], tmp_path))
        assert [s.control for s in started] == [control.port_path(p) for p in ports]
        for port in ports:
            shown = verb("list", "apppools", "--port", str(port))
            assert shown.returncode == 0 and "DefaultAppPool" in shown.stdout, shown.stderr
    finally:
        for server in started:
            server.stop()


def test_a_verb_does_not_trust_a_runtime_directory_others_can_write(runtime: Path) -> None:
    runtime.mkdir()
    runtime.chmod(0o777)  # anyone could have put a socket here that answers as a server
    result = verb("list", "apppools", "--port", "8080")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"webgarden: not using {runtime}: {runtime} must belong "
                                     "to this user (or root) and be writable by no one else")
    assert verb("list", "apppools").returncode == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="a directory of another user's needs root")
def test_a_sticky_runtime_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    """Sticky keeps others from removing this user's socket, but not the directory's owner,
    who could put a socket of theirs in its place."""
    planted = tmp_path / "planted"
    planted.mkdir()
    planted.chmod(0o1777)
    os.chown(planted, 4_000_124, 4_000_124)
    with pytest.raises(PermissionError):
        control._check_directory(str(planted))
    os.chown(planted, 0, 0)
    control._check_directory(str(planted))  # /tmp's shape: root's, sticky


@pytest.mark.skipif(os.geteuid() != 0, reason="a socket of another user's needs root")
def test_a_verb_does_not_believe_a_socket_another_user_answers(tmp_path: Path) -> None:
    """A socket by the server's name that another local user made (in a sticky /tmp, say)
    is neither told the request nor believed."""
    import pwd
    import socket

    path = tmp_path / "c.sock"
    tmp_path.chmod(0o755)
    nobody = pwd.getpwnam("nobody").pw_uid
    ready, go = os.pipe()
    child = os.fork()
    if child == 0:  # the other user: listens, and answers one request as a server would
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(path))
            os.chmod(path, 0o777)
            os.setuid(nobody)
            sock.listen(1)
            os.write(go, b"x")
            conn, _ = sock.accept()
            conn.recv(65536)
            conn.sendall(b'{"ok": true, "result": "forged"}\n')
        finally:
            os._exit(0)
    try:
        os.read(ready, 1)
        with pytest.raises(control.ControlError, match="answered by user"):
            control.call(str(path), {"verb": "list", "object": "apppools"}, timeout=5)
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)
        os.close(ready)
        os.close(go)
