"""Which Unix user a pool's workers run as (IIS: processModel identityType).

Rules:

* `identityType="SpecificUser" userName="u"`: the workers run as user `u`, with its primary
  group and its supplementary groups. Switching users needs a server started as root; a
  server that is not root may only name itself.
* Any other identity type (IIS's `ApplicationPoolIdentity` by default) on a root server:
  the workers run as `nobody` (group `nogroup`, or `nobody`'s own group). A worker never
  runs as root: an application compromised in one pool gets no more than that user has.
* `identityType="LocalSystem"`: the workers run as the server's own user, root included,
  as IIS's LocalSystem is its most privileged account. Only an explicit choice gets this.
* Any other identity type on a server that is not root: the workers run as the server's
  own user (nothing to switch).
* A root server starts every worker and template as root, with the pool's identity as
  arguments: the process opens its import directories, then becomes that user before it
  imports any application code (`worker.privileges`). So the checkout, the venv and the
  applications may sit in a private directory (a clone under /root, `mktemp -d`): only the
  directories themselves must be readable by the pool's user, not their ancestors.
* Before a pool starts, the manager checks that its user can read each of the pool's
  import directories (`access_problem`), so a layout that would fail is one line naming the
  directory and the fix, not a crash loop.
* A pool's import path is exactly what its configuration names (`import_path`): its
  `pythonPath` (`webgarden run` puts the directory it was started in there), then the
  server's own PYTHONPATH, set by the operator. Never the server's working directory by
  itself: a module planted there by one pool's user would run in every other pool. The
  interpreter starts with `-P` and without PYTHONPATH in its environment, so that nothing
  but the interpreter's own directories is importable while it is still root.

Problems are `IdentityError`s with one line for the user, found when the configuration is
applied, before any worker starts.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Sequence
from dataclasses import dataclass

UNPRIVILEGED_USER = "nobody"
UNPRIVILEGED_GROUPS = ("nogroup", "nobody")


class IdentityError(Exception):
    """A pool's identity cannot be used. The message is one line for the user."""


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def resolve(pool: str, identity_type: str, user_name: str) -> Identity | None:
    """The identity to switch the pool's workers to, or None to keep the server's own."""
    root = os.geteuid() == 0
    if identity_type == "LocalSystem":
        return None
    if identity_type == "SpecificUser":
        if not user_name:
            raise IdentityError(f"pool {pool!r}: identityType SpecificUser needs a userName")
        try:
            entry = pwd.getpwnam(user_name)
        except KeyError:
            raise IdentityError(f"pool {pool!r}: no such user {user_name!r}") from None
        if not root:
            if entry.pw_uid == os.geteuid():
                return None
            raise IdentityError(
                f"pool {pool!r}: running workers as {user_name!r} needs the server to be "
                "started as root"
            )
        if entry.pw_uid == 0:
            raise IdentityError(f"pool {pool!r}: workers may not run as root ({user_name!r})")
        return _identity(entry)
    if not root:
        return None
    entry = pwd.getpwnam(UNPRIVILEGED_USER)
    gid = entry.pw_gid
    for name in UNPRIVILEGED_GROUPS:
        try:
            gid = grp.getgrnam(name).gr_gid
            break
        except KeyError:
            continue
    return Identity(entry.pw_name, entry.pw_uid, gid, ())


def _identity(entry: pwd.struct_passwd) -> Identity:
    groups = tuple(
        g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem and g.gr_gid != entry.pw_gid
    )
    return Identity(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def _allowed(st: os.stat_result, identity: Identity, bits: int) -> bool:
    """Whether `identity` has `bits` (4 read, 2 write, 1 execute) on a file (no ACLs)."""
    if st.st_uid == identity.uid:
        mode = st.st_mode >> 6
    elif st.st_gid == identity.gid or st.st_gid in identity.groups:
        mode = st.st_mode >> 3
    else:
        mode = st.st_mode
    return mode & bits == bits


def access_problem(identity: Identity, directories: Sequence[str]) -> str | None:
    """Why `identity` could not import from `directories`, or None if it can: a phrase
    naming the directory and the fix. Each directory must be readable and searchable by
    the user; its ancestors need not be, as the worker opens it while still root."""
    for directory in directories:
        path = os.path.realpath(directory)
        try:
            st = os.stat(path)
        except OSError as exc:
            return f"cannot use {directory}: {exc.strerror}"
        if not _allowed(st, identity, 5):
            return (f"cannot read {path}: chmod o+rx {path}, or give the pool a userName "
                    "that can (processModel identityType=\"SpecificUser\" userName=...)")
    return None


def import_path(python_path: Sequence[str]) -> list[str]:
    """A pool's import path, first entry first: its pythonPath, then the server's
    PYTHONPATH (absolute entries only: an empty or relative one would mean the server's
    working directory)."""
    extra = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    return list(dict.fromkeys([*python_path, *(p for p in extra if os.path.isabs(p))]))


def worker_command(
    argv: Sequence[str], identity: Identity | None, python_path: Sequence[str]
) -> tuple[list[str], dict[str, str]]:
    """The command and environment that start a worker or a template (`argv`: the
    interpreter, `-m`, the module and its arguments) with the pool's import path, as root
    told to become `identity`, or as the server's own user when `identity` is None."""
    command = [argv[0], "-P", *argv[1:]]  # -P: the working directory is not on sys.path
    for path in import_path(python_path):
        command += ["--path", path]
    if identity is not None:
        command += ["--uid", str(identity.uid), "--gid", str(identity.gid)]
        for gid in identity.groups:
            command += ["--group", str(gid)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return command, env

