"""Workers start as root and become their pool's user before any application code runs.

A root server's checkout and applications may sit in a private directory (a clone under
/root, `mktemp -d`): the worker opens the pool's directories while root and keeps them as
descriptors, so only the directories themselves must be readable by the pool's user.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness import APPS, ensure_user, free_port

#: Reports what the worker is and may do; `secret.txt` lies beside it, mode 600, root's.
PROBE = '''
import json, os, sys

HERE = os.path.dirname(__file__)


def _try(action):
    try:
        action()
    except OSError as exc:
        return type(exc).__name__
    return "allowed"


def application(environ, start_response):
    fields = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    info = {
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
        "groups": sorted(os.getgroups()), "file": __file__,
        "no_new_privs": fields["NoNewPrivs"].strip(), "caps": fields["CapEff"].strip(),
        "setuid_0": _try(lambda: os.setuid(0)),
        "dumpable": __import__("ctypes").CDLL(None).prctl(3, 0, 0, 0, 0),  # PR_GET_DUMPABLE
        "secret": _try(lambda: open(os.path.join(HERE, "secret.txt")).read()),
        "parent": _try(lambda: os.listdir(os.path.join(HERE, ".."))),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(info).encode()]
'''

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only a root server switches users")


def _private_app(tmp_path: Path) -> Path:
    """tmp_path/private (mode 700, root's) / app (mode 755): the probe and a secret."""
    private = tmp_path / "private"
    app = private / "app"
    app.mkdir(parents=True)
    private.chmod(0o700)
    app.chmod(0o755)
    (app / "probe.py").write_text(PROBE)
    (app / "probe.py").chmod(0o644)
    secret = app / "secret.txt"
    secret.write_text("root only")
    secret.chmod(0o600)
    return app


@needs_root
@pytest.mark.parametrize("spawn", ["smart", "direct"])
def test_an_app_under_a_private_ancestor_is_served_as_nobody_who_gains_nothing_else(
        start_server, tmp_path: Path, spawn: str) -> None:
    app = _private_app(tmp_path)
    server = start_server("probe:application", "--spawn-method", spawn, cwd=app)
    info = httpx.get(server.url + "/").json()
    nobody = pwd.getpwnam("nobody")
    assert (info["uid"], info["euid"]) == (nobody.pw_uid, nobody.pw_uid)
    assert info["file"].startswith("/proc/self/fd/")  # reached through the descriptor
    assert info["setuid_0"] == "PermissionError"  # root cannot be regained
    assert int(info["caps"], 16) == 0 and info["no_new_privs"] == "1"
    assert info["dumpable"] == 0  # whatever fs.suid_dumpable says: /proc/PID/fd is closed
    assert info["secret"] == "PermissionError"  # a mode-600 file beside it stays closed
    assert info["parent"] == "PermissionError"  # and `..` does not enter the private ancestor


@needs_root
def test_a_workers_uid_gid_and_supplementary_groups_are_its_pools_user(
        start_server, shared_tmp: Path) -> None:
    uid = ensure_user("wgtest_id", groups=("wgtest_idg",))
    user = pwd.getpwuid(uid)
    (shared_tmp / "probe.py").write_text(PROBE)
    (shared_tmp / "secret.txt").write_text("x")
    server = start_server("probe:application", "--identity", "wgtest_id", cwd=shared_tmp)
    info = httpx.get(server.url + "/").json()
    assert (info["uid"], info["euid"], info["gid"]) == (uid, uid, user.pw_gid)
    assert info["groups"] == [grp.getgrnam("wgtest_idg").gr_gid]
    assert info["setuid_0"] == "PermissionError"


def test_local_system_keeps_the_servers_own_user(start_server, shared_tmp: Path) -> None:
    (shared_tmp / "probe.py").write_text(PROBE)
    server = start_server("probe:application", "--identity", "LocalSystem", cwd=shared_tmp)
    info = httpx.get(server.url + "/").json()
    assert info["uid"] == os.geteuid()
    assert not info["file"].startswith("/proc/self/fd/")  # nothing to open for itself


@needs_root
def test_an_app_directory_its_user_cannot_read_is_one_line_naming_it_and_the_fix(
        tmp_path: Path) -> None:
    app = _private_app(tmp_path)
    app.chmod(0o700)
    result = subprocess.run(
        [sys.executable, "-m", "webgarden", "run", "probe:application", "--bind",
         "127.0.0.1:0", "--control", str(tmp_path / "c.sock")],
        cwd=app, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(APPS)},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"webgarden: pool 'DefaultAppPool' runs its workers as 'nobody', who cannot read "
        f"{app}: chmod o+rx {app}, or give the pool a userName that can (processModel "
        'identityType="SpecificUser" userName=...)'
    ]


def test_the_worker_entry_refuses_an_identity_without_a_group(tmp_path: Path) -> None:
    """The arguments come from the server; half an identity is refused, not guessed."""
    import socket

    ours, theirs = socket.socketpair()
    with ours, theirs:
        result = subprocess.run(
            [sys.executable, "-P", "-m", "webgarden.worker", "--fd", str(theirs.fileno()),
             "--pool", "P", "--app", "probe:application", "--uid", "65534"],
            pass_fds=(theirs.fileno(),), capture_output=True, text=True, timeout=60,
        )
        theirs.close()
        frame = ours.recv(65536)
    assert result.returncode == 3  # EXIT_LOAD_FAILED, with an ABORT that says why
    assert b"cannot become the pool's user: --uid needs --gid" in frame


STEER_CONFIG = """<configuration><system.applicationHost>
  <applicationPools><add name="P" startMode="AlwaysRunning" pythonPath="{path}" /></applicationPools>
  <sites><site name="s" id="1">
    <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:" /></bindings>
    <application path="/" applicationPool="P" app="probe:application" />
  </site></sites>
</system.applicationHost></configuration>
"""


@needs_root
def test_a_symlink_the_pools_user_could_plant_opens_no_private_directory(
        tmp_path: Path, shared_tmp: Path) -> None:
    """Hostile: the pool's user owns a directory on its pythonPath and puts a symlink there
    to a directory of root's that it may read but not reach (a private ancestor). The root
    worker must not open it for the user: the walk stops at the user's directory."""
    target = _private_app(tmp_path)  # readable by nobody, under a mode-700 ancestor
    nobody = pwd.getpwnam("nobody")
    steer = shared_tmp / "steer"
    steer.mkdir()
    os.chown(steer, nobody.pw_uid, nobody.pw_gid)  # the pool's user's own directory
    (steer / "app").symlink_to(target)

    def serve(path: Path) -> subprocess.Popen[str]:
        config = tmp_path / "steer.config"
        config.write_text(STEER_CONFIG.format(path=path, port=free_port()))
        return subprocess.Popen(
            [sys.executable, "-m", "webgarden", "serve", "-c", str(config), "--control",
             str(tmp_path / "c.sock")], cwd=shared_tmp, stderr=subprocess.PIPE, text=True)

    steered = serve(steer / "app")
    _, err = steered.communicate(timeout=60)
    assert steered.returncode == 2
    assert err.strip().splitlines() == [
        "webgarden: pool 'P' cannot load its application: cannot import module 'probe': "
        "ModuleNotFoundError: No module named 'probe'"]
    direct = serve(target)  # the operator naming it: served (until stopped here)
    try:
        assert direct.stderr is not None
        for line in direct.stderr:
            if "serving" in line:
                break
        else:
            raise AssertionError("the directly named directory was not served")
    finally:
        direct.terminate()
        direct.wait(60)
