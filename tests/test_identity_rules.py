"""The identity and import-path rules without a server: which directories the root worker
opens for its user, what the server checks, what command starts a worker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from webgarden.manager.identity import Identity, access_problem, import_path, worker_command
from webgarden.worker import privileges
from webgarden.worker.privileges import Target, open_unsteered

#: A user that owns nothing here (and is not the one running the tests, unless it is nobody).
STRANGER = Target(uid=4_000_123, gid=4_000_123, groups=())


def _opened(path: Path, target: Target) -> str | None:
    fd = open_unsteered(str(path), target)
    if fd is None:
        return None
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def test_a_directory_on_a_path_the_user_cannot_change_is_opened(tmp_path: Path) -> None:
    app = tmp_path / "a" / "app"
    app.mkdir(parents=True)
    assert _opened(app, STRANGER) == str(app)


def test_a_directory_the_user_owns_on_the_way_stops_the_walk(tmp_path: Path) -> None:
    app = tmp_path / "a" / "app"
    app.mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(tmp_path / "a", 4_000_124, 4_000_124)  # a user's own directory, in root's
    owner = os.stat(tmp_path / "a").st_uid
    assert _opened(app, Target(owner, 4_000_123, ())) is None  # it could swap `app`
    # For any other pool user too, unless the owner is root (or the tests' own user).
    assert _opened(app, STRANGER) == (None if owner not in (0, os.geteuid()) else str(app))


def test_a_directory_writable_by_a_group_stops_the_walk(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "app").mkdir(parents=True)
    shared.chmod(0o775)
    group = os.stat(shared).st_gid
    assert _opened(shared / "app", Target(4_000_123, 4_000_999, (group,))) is None
    # Not only the pool's user: any member of the group could point `app` elsewhere.
    assert _opened(shared / "app", STRANGER) is None
    shared.chmod(0o755)
    assert _opened(shared / "app", STRANGER) == str(shared / "app")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_directory_another_local_user_owns_stops_the_walk(tmp_path: Path) -> None:
    """A local user (not the pool's) who owns a directory on a pool's path could swap an
    entry for a symlink to root's private directory: root must not open it for the pool."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "secrets").mkdir(mode=0o755)
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    (theirs / "app").symlink_to(private / "secrets")
    os.chown(theirs, 4_000_124, 4_000_124)
    assert _opened(theirs / "app", STRANGER) is None


def test_a_sticky_directory_protects_only_the_entries_the_user_does_not_own(
        tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    (sticky / "root-s").mkdir(parents=True)
    sticky.chmod(0o1777)
    assert _opened(sticky / "root-s", STRANGER) == str(sticky / "root-s")
    mine = os.stat(sticky / "root-s").st_uid
    assert _opened(sticky / "root-s", Target(mine, 4_000_123, ())) is None


def test_symlinks_are_followed_by_hand_and_a_loop_gives_up(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    (tmp_path / "rel").symlink_to("real/../real")
    assert _opened(tmp_path / "link", STRANGER) == str(real)
    assert _opened(tmp_path / "rel", STRANGER) == str(real)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert _opened(tmp_path / "loop", STRANGER) is None
    (tmp_path / "file").write_text("x")
    assert _opened(tmp_path / "file", STRANGER) is None  # not a directory: stays a path


def test_descriptor_paths_are_shown_as_the_directories_the_user_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(privileges, "ORIGINALS",
                        {"/proc/self/fd/1": "/srv/one", "/proc/self/fd/12": "/srv/twelve/"})
    assert privileges.shown("/proc/self/fd/12/app.py") == "/srv/twelve/app.py"
    assert privileges.shown("/proc/self/fd/1/a/b.py") == "/srv/one/a/b.py"
    assert privileges.shown("/proc/self/fd/7/x.py") == "/proc/self/fd/7/x.py"
    text = 'File "/proc/self/fd/12/app.py", line 3\nFile "/proc/self/fd/1/m.py", line 1'
    assert privileges.shown_text(text) == 'File "/srv/twelve/app.py", line 3\n' \
        'File "/srv/one/m.py", line 1'


def test_the_import_path_is_the_pools_then_the_operators_absolute_entries(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", f"/opt/lib{os.pathsep}{os.pathsep}relative{os.pathsep}/a")
    assert import_path(("/a", "/b")) == ["/a", "/b", "/opt/lib"]  # no "" (the cwd), no relative


def test_a_worker_starts_without_the_cwd_or_pythonpath_and_with_its_identity(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/opt/lib")
    identity = Identity("u", 1001, 1002, (1003, 1004))
    command, env = worker_command([sys.executable, "-m", "webgarden.worker", "--fd", "3"],
                                  identity, ("/srv/app",))
    assert command[:4] == [sys.executable, "-P", "-m", "webgarden.worker"]
    assert command[4:] == ["--fd", "3", "--path", "/srv/app", "--path", "/opt/lib",
                           "--uid", "1001", "--gid", "1002", "--group", "1003",
                           "--group", "1004"]
    assert "PYTHONPATH" not in env
    command, _ = worker_command([sys.executable, "-m", "x"], None, ())
    assert "--uid" not in command


def test_the_server_checks_each_directory_itself_not_its_ancestors(tmp_path: Path) -> None:
    private = tmp_path / "private"
    app = private / "app"
    app.mkdir(parents=True)
    private.chmod(0o700)
    app.chmod(0o755)
    nobody = Identity("nobody", 4_000_123, 4_000_123, ())
    assert access_problem(nobody, [str(app)]) is None
    app.chmod(0o750)
    assert access_problem(nobody, [str(app)]) == (
        f"cannot read {app}: chmod o+rx {app}, or give the pool a userName that can "
        '(processModel identityType="SpecificUser" userName=...)')
    assert access_problem(nobody, [str(tmp_path / "missing")]) == (
        f"cannot use {tmp_path / 'missing'}: No such file or directory")
