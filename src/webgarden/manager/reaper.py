"""The server as a child subreaper (PR_SET_CHILD_SUBREAPER).

Workers forked from a pool's template are grandchildren of the server; the template's
intermediate process exits at once, and a subreaper is where the kernel re-parents its
orphans. So every worker, forked or started directly, is the server's child: the server
reads its exit code, and PR_SET_PDEATHSIG ties it to the server's life.

The price: any process a worker leaves behind (an application's own subprocess still
running when its worker exits) is re-parented to the server too. `reap_strays` collects
those when they exit, so they never linger as zombies; it is called every
`STRAY_REAP_INTERVAL` seconds and never touches a process the server knows.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
#: How often exited strays are collected, seconds.
STRAY_REAP_INTERVAL = 5.0


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def children() -> set[int]:
    """The server's child processes, from every thread's /proc children list."""
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


def reap_strays(known: set[int]) -> list[tuple[int, int]]:
    """Collect exited children the server does not know; (pid, exit code) of each."""
    reaped: list[tuple[int, int]] = []
    for pid in children() - known:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] != "Z":
            continue
        with contextlib.suppress(ChildProcessError):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                reaped.append((pid, os.waitstatus_to_exitcode(status)))
    return reaped
