"""CPU limits of a pool (IIS: `<cpu limit= action= resetInterval=>`).

`limit` is in 1/1000ths of a percent of the whole machine (50000 = 50 %), as in IIS. The
pool's CPU use is the sum of its workers' user and system time over a sliding window of
`resetInterval`, divided by the window's length times the number of CPUs; it is checked
every `CHECK_INTERVAL`. Early in a window the divisor is still the whole window, so a burst
at start-up never looks bigger than it is.

Actions when the use goes over the limit:

* `NoAction`: an event (`pool.cpu_limit`), once per window.
* `KillW3wp`: the event, then the pool is shut down for the rest of the window (its
  requests get 503 `AppShutdown`) and started again when the window has passed.
* `Throttle` / `ThrottleUnderLoad`: the workers run in a cgroup whose CPU quota is the
  limit, from the moment they start: cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us`),
  whichever the machine mounts with a writable CPU controller. Where neither is usable
  (no permission, no controller), the pool logs `pool.cpu_throttle_unavailable` with the
  reason and runs unthrottled; nothing else changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from typing import TYPE_CHECKING, Protocol

import psutil

from webgarden.listener import errors
from webgarden.manager.states import PoolState

if TYPE_CHECKING:
    from webgarden.config.model import PoolConfig
    from webgarden.events import EventLog
    from webgarden.manager.process import WorkerProcess

#: Seconds between CPU measurements of a pool with a limit.
CHECK_INTERVAL = 1.0
#: The CFS period for a throttled pool, microseconds (the kernel's default).
CFS_PERIOD_US = 100_000
CGROUP_V2 = "/sys/fs/cgroup"
CGROUP_V1_CPU = "/sys/fs/cgroup/cpu"


class GovernedPool(Protocol):
    """What the governor needs of its pool, and how it acts on it."""

    config: PoolConfig
    events: EventLog
    workers: list[WorkerProcess]

    @property
    def state(self) -> PoolState: ...
    def start(self) -> None: ...
    def shut_down(self, page: errors.ErrorPage) -> None: ...


class CpuGovernor:
    def __init__(self, pool: GovernedPool) -> None:
        self.pool = pool
        self.loop = asyncio.get_event_loop()
        self.samples: deque[tuple[float, float]] = deque()
        self.cpu_seconds: dict[int, float] = {}  # pid -> last seen CPU time (exited ones stay)
        self.reported_at = float("-inf")
        self.cgroup: str | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Arm from the pool's configuration now (again after a reload): a removed limit
        stops the checks."""
        self.stop()
        cpu = self.pool.config.cpu
        if not cpu.limit:
            return
        if cpu.action in ("Throttle", "ThrottleUnderLoad") and self.cgroup is None:
            self.cgroup = self._make_cgroup(cpu.limit)
        self._handle = self.loop.call_later(CHECK_INTERVAL, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def worker_started(self, pid: int) -> None:
        if self.cgroup is None:
            return
        try:
            with open(os.path.join(self.cgroup, "cgroup.procs"), "w") as f:
                f.write(str(pid))
        except OSError as exc:
            self.pool.events.emit("pool.cpu_throttle_unavailable", pool=self.pool.config.name,
                                  reason=f"cannot move worker {pid}: {exc.strerror}")

    # -- measuring ----------------------------------------------------------------------

    def _check(self) -> None:
        self._handle = self.loop.call_later(CHECK_INTERVAL, self._check)
        now = self.loop.time()
        for worker in self.pool.workers:
            try:
                times = psutil.Process(worker.pid).cpu_times()
                self.cpu_seconds[worker.pid] = times.user + times.system
            except (psutil.Error, ValueError):
                continue
        total = sum(self.cpu_seconds.values())
        self.samples.append((now, total))
        window = self.pool.config.cpu.reset_interval or 300.0
        while self.samples and now - self.samples[0][0] > window:
            self.samples.popleft()
        used = total - self.samples[0][1]
        percent = 100.0 * used / (window * (os.cpu_count() or 1))
        limit = self.pool.config.cpu.limit / 1000.0
        if percent > limit and now - self.reported_at >= window:
            self.reported_at = now
            self._over(percent, limit, window)

    def _over(self, percent: float, limit: float, window: float) -> None:
        pool = self.pool
        action = pool.config.cpu.action
        pool.events.emit("pool.cpu_limit", pool=pool.config.name, action=action,
                         percent=round(percent, 2), limit=limit, interval=window)
        if action != "KillW3wp":
            return
        pool.shut_down(errors.APP_SHUTDOWN)
        self.loop.call_later(window, self._restart)

    def _restart(self) -> None:
        if self.pool.state is PoolState.STOPPED:
            self.samples.clear()
            self.pool.start()

    # -- throttling ---------------------------------------------------------------------

    def _make_cgroup(self, limit: int) -> str | None:
        quota = max(1000, int(CFS_PERIOD_US * (os.cpu_count() or 1) * limit / 100_000))
        name = f"webgarden-{os.getpid()}-{self.pool.config.name}"
        attempts = []
        if os.path.exists(os.path.join(CGROUP_V2, "cgroup.controllers")):
            attempts.append((os.path.join(CGROUP_V2, name), "cpu.max", f"{quota} {CFS_PERIOD_US}"))
        if os.path.isdir(CGROUP_V1_CPU):
            attempts.append((os.path.join(CGROUP_V1_CPU, name), "cpu.cfs_quota_us", str(quota)))
        reasons = []
        for path, knob, value in attempts:
            try:
                os.makedirs(path, exist_ok=True)
                if knob == "cpu.cfs_quota_us":
                    with open(os.path.join(path, "cpu.cfs_period_us"), "w") as f:
                        f.write(str(CFS_PERIOD_US))
                with open(os.path.join(path, knob), "w") as f:
                    f.write(value)
            except OSError as exc:
                reasons.append(f"{path}: {exc.strerror}")
                continue
            self.pool.events.emit("pool.cpu_throttle", pool=self.pool.config.name,
                                  cgroup=path, quota_us=quota, period_us=CFS_PERIOD_US)
            return path
        self.pool.events.emit(
            "pool.cpu_throttle_unavailable", pool=self.pool.config.name,
            reason="; ".join(reasons) or "no cgroup CPU controller is mounted",
        )
        return None

    def remove_cgroup(self) -> None:
        if self.cgroup is not None:
            with contextlib.suppress(OSError):  # only once empty
                os.rmdir(self.cgroup)
