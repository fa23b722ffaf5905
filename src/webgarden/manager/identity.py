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
* Before a pool starts, the manager checks that its user can run the interpreter and read
  the application's directories (`access_problem`), so a layout that would fail (Python
  installed under a private home, say) is one clear error, not a crash loop.

Problems are `IdentityError`s with one line for the user, found when the configuration is
applied, before any worker starts.
"""

from __future__ import annotations

import grp
import os
import pwd
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


def access_problem(identity: Identity, executable: str, directories: list[str]) -> str | None:
    """Why `identity` could not run `executable` or read `directories`, or None if it can.

    Walks every directory above each path for search permission, as the kernel will.
    """
    wanted = [(os.path.realpath(executable), 1)] + [(os.path.realpath(d), 5) for d in directories]
    for path, bits in wanted:
        parts = path.split("/")
        for i in range(2, len(parts)):
            parent = "/".join(parts[:i])
            try:
                if not _allowed(os.stat(parent), identity, 1):
                    return f"{identity.user!r} cannot enter {parent} (needed for {path})"
            except OSError:
                return f"{parent} cannot be inspected"
        try:
            if not _allowed(os.stat(path), identity, bits):
                need = "run" if bits == 1 else "read"
                return f"{identity.user!r} cannot {need} {path}"
        except OSError as exc:
            return f"{path}: {exc.strerror}"
    return None
