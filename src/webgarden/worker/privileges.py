"""A worker (or template) started as root becomes its pool's user before it imports any
application code.

Why the process drops its own privileges instead of being started as the user: a root
server's checkout, venv and applications often live in a private directory (a clone under
/root, `mktemp -d`), which the pool's user cannot enter by path. Started as root, the worker
can open those directories first, and keep them reachable by descriptor only.

The sequence (`become`), all before the first application import:

1. Still root, with webgarden's own modules already imported (the worker's module imports
   them at its top; the interpreter starts with `-P` and without PYTHONPATH, so while root
   only the interpreter's own directories are on `sys.path`): open a directory descriptor
   for every import-path entry, the pool's configured ones included, walking each path one
   component at a time (`open_unsteered`): a path that passes through a directory anyone
   but root owns or may write gets no descriptor, since that user could have put a symlink
   there to a private directory of someone else's.
2. `setgroups`, `setgid`, `setuid` to the pool's identity; check that root cannot come back
   (`setuid(0)` must fail, no capability left); `PR_SET_NO_NEW_PRIVS`; re-arm the
   parent-death signal, which a credential change clears.
3. Now as the user, for each entry: reachable by its path, the path stays and the descriptor
   is closed; not reachable by path but readable through the descriptor (only an ancestor is
   private), the entry becomes `/proc/self/fd/N` (and so do `__path__` and `__file__` of
   the modules already imported from it, so that their lazy imports keep working);
   unreadable, the descriptor is closed and the entry stays as it was, unusable. Every
   permission here is checked by the kernel as the user: a file the user may not read
   stays unreadable through the descriptor, and `..` from it cannot enter a private
   ancestor.

The process is left non-dumpable by the credential change, so another process of the same
user cannot take the descriptors through /proc/PID/fd or ptrace; the process itself still
can (the kernel lets a thread group use its own /proc/self/fd).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import stat
import sys
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
#: Where a descriptor's directory is reached by path from inside the process.
FD_ROOT = "/proc/self/fd/"
#: Symlinks followed in one path before giving up: the kernel's own limit (MAXSYMLINKS).
MAX_SYMLINKS = 40
#: How the walk holds the directories it passes through: no reading, no following.
_WALK = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC

#: Paths shown to the user for descriptor paths: "/proc/self/fd/7" -> "/root/app".
ORIGINALS: dict[str, str] = {}


class PrivilegeError(Exception):
    """The drop did not happen as it must; the worker exits without running the app."""


@dataclass(frozen=True, slots=True)
class Target:
    uid: int
    gid: int
    groups: tuple[int, ...]


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise PrivilegeError(f"prctl({option}) failed: {os.strerror(ctypes.get_errno())}")


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies. A credential change clears this: `become`
    sets it again. Best effort (no prctl, no parent-death signal)."""
    with contextlib.suppress(OSError, AttributeError, PrivilegeError):
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def become(target: Target, configured: list[str]) -> list[str]:
    """Drop to `target` (the caller is root); returns `configured` as the user reaches it.

    `sys.path` is rewritten in place as the module docstring says."""
    parent = os.getppid()
    entries = list(dict.fromkeys([*configured, *sys.path]))
    opened: dict[str, int] = {}
    for path in entries:
        if path and os.path.isabs(path):
            fd = open_unsteered(path, target)
            if fd is not None:
                opened[path] = fd
    _switch(target)
    if os.getppid() != parent:  # it died before the parent-death signal was armed again
        raise PrivilegeError("the server exited while the worker started")
    mapping: dict[str, str] = {}
    for path, fd in opened.items():
        through = f"{FD_ROOT}{fd}"
        if os.access(path, os.R_OK | os.X_OK) or not os.access(through, os.R_OK | os.X_OK):
            os.close(fd)  # reachable by path, or not readable at all: no descriptor kept
        else:
            mapping[path] = through
            ORIGINALS[through] = path
    sys.path[:] = [mapping.get(p, p) for p in sys.path]
    _rewrite_modules(mapping)
    return [mapping.get(p, p) for p in configured]


def open_unsteered(path: str, target: Target) -> int | None:
    """Directory `path` opened by root, or None where the pool's user could have steered
    the walk there: it resolves one component at a time (symlinks too), and gives up at a
    directory the user owns or may write (where it could have put a symlink to a private
    directory it otherwise could not reach). The user then reaches `path` by path or not at
    all, as without this module."""
    pending = [p for p in path.split("/") if p not in ("", ".")]
    stack = [os.open("/", _WALK)]
    links = 0
    try:
        while pending:
            name = pending.pop(0)
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            here = stack[-1]
            st = os.stat(name, dir_fd=here, follow_symlinks=False)
            if _steerable(os.fstat(here), st, target):
                return None
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    return None
                link = os.readlink(name, dir_fd=here)
                if link.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                pending[:0] = [p for p in link.split("/") if p not in ("", ".")]
                continue
            stack.append(os.open(name, _WALK | os.O_NOFOLLOW, dir_fd=here))
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=stack[-1])
    except OSError:
        return None  # not a directory, gone: the entry stays a path, as Python skips it
    finally:
        for fd in stack:
            os.close(fd)


def _steerable(parent: os.stat_result, entry: os.stat_result, target: Target) -> bool:
    """Whether anyone but root could replace `entry` in directory `parent` (mode bits, no
    ACLs): the directory's owner, unless root (or this process's own user); anyone in its
    group or anyone at all, if it is group- or world-writable, unless it is sticky and the
    entry is root's. Not only the pool's user: another local user who owns a directory on
    the path could point a symlink there at a private directory of root's, and the pool's
    user would be given it (that user may run the pool's code, as the owner of its path)."""
    trusted = (0, os.geteuid())
    if parent.st_uid == target.uid or parent.st_uid not in trusted:
        return True
    if not parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return False
    return (not parent.st_mode & stat.S_ISVTX or entry.st_uid == target.uid
            or entry.st_uid not in trusted)


def _switch(target: Target) -> None:
    os.setgroups(list(target.groups))
    os.setgid(target.gid)
    os.setuid(target.uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise PrivilegeError("root could be regained after setuid")
    if target.uid != 0 and _capabilities() != 0:
        raise PrivilegeError("capabilities remain after setuid")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    # The credential change leaves the process non-dumpable only where fs.suid_dumpable is
    # 0 or 2; at 1 (a debugging setting) any process of the user (other daemons running as
    # nobody) could take the private directory descriptors through /proc/PID/fd or ptrace.
    _prctl(PR_SET_DUMPABLE, 0)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _capabilities() -> int:
    """The permitted and effective capability sets, or-ed (0: none)."""
    caps = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("CapPrm:", "CapEff:")):
                caps |= int(line.split()[1], 16)
    return caps


def _rewrite_modules(mapping: dict[str, str]) -> None:
    """`__path__` and `__file__` of modules imported from a mapped directory."""
    if not mapping:
        return
    for module in list(sys.modules.values()):
        paths = getattr(module, "__path__", None)
        if isinstance(paths, list):
            paths[:] = [_mapped(p, mapping) for p in paths]  # the spec shares this list
        file = getattr(module, "__file__", None)
        if isinstance(file, str):
            with contextlib.suppress(AttributeError):  # a module that refuses the setattr
                module.__file__ = _mapped(file, mapping)


def _mapped(path: str, mapping: dict[str, str]) -> str:
    for original, through in sorted(mapping.items(), key=lambda kv: -len(kv[0])):
        if path == original or path.startswith(original.rstrip("/") + "/"):
            return through + path[len(original.rstrip("/")):]
    return path


def shown(path: str) -> str:
    """`path` as the user knows it (descriptor paths back to the original directory)."""
    if path.startswith(FD_ROOT):
        root, sep, rest = path[len(FD_ROOT):].partition("/")
        original = ORIGINALS.get(FD_ROOT + root)
        if original is not None:
            return original.rstrip("/") + sep + rest
    return path


def shown_text(text: str) -> str:
    """Every descriptor path in `text` (a traceback) as the user knows it."""
    for through, original in sorted(ORIGINALS.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(through + "/", original.rstrip("/") + "/")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The import path and identity arguments the manager gives a worker or a template."""
    parser.add_argument("--path", action="append", default=[],
                        help="the pool's import path, first entry first")
    parser.add_argument("--uid", type=int, default=None,
                        help="started as root: become this user before importing the app")
    parser.add_argument("--gid", type=int, default=None)
    parser.add_argument("--group", type=int, action="append", default=[],
                        help="a supplementary group of the pool's user (repeated)")


def enter_pool(args: argparse.Namespace) -> list[str]:
    """Become the pool's user if asked, then put the pool's import path first on sys.path.
    Returns that path as this process reaches it."""
    configured: list[str] = list(args.path)
    if args.uid is not None:
        if args.gid is None:
            raise PrivilegeError("--uid needs --gid")
        configured = become(Target(args.uid, args.gid, tuple(args.group)), configured)
    sys.path[:0] = configured
    return configured
