"""The supervisor's policy for one pool (IIS: WAS's decisions), with no I/O.

Rules:

* No sockets, no processes, no asyncio, no clock of its own: `handle(event, now)` takes
  one event and the caller's loop time, and returns the actions to carry out, in order
  (both are plain values, in `manager.supervision`).
  `AppPool` is the adapter that feeds it events and does what it says; the tests feed it
  fake events.
* It knows each worker by an id it hands out in `Spawn`, and keeps the worker's state
  through the table in `manager.states`, so an event the adapter sends out of order is an
  `IllegalTransition`, not a silent drift.
* It never sees a request: requests are the listener's (`listener.request_fate`).

Theory of operation:

* **Converge.** After every event the pool moves toward its target: `maxProcesses`
  workers that hold a place, while the pool wants workers at all (`AlwaysRunning`, or
  OnDemand from the first request until idle shutdown retires the last worker). A
  retiring worker holds no place (its replacement starts at once), except with
  `disallowOverlappingRotation`, when it holds its place until it has exited.
* **Backoff.** A worker that exits before it was ever ready is replaced after a delay
  that doubles per consecutive failure (`RESTART_BACKOFF`: first, cap); one ready worker
  resets it. A worker that served and then died is replaced at once.
* **Rapid-fail.** `rapidFailProtectionMaxCrashes` failures (crashes, health failures)
  within `rapidFailProtectionInterval` stop the pool (IIS event 5002): the listener takes
  it offline, and only an operator's start brings it back.
* **Overlap.** A recycle marks the current workers retiring: with overlap their
  replacements start and each replacement that gets ready retires one old worker; with
  `disallowOverlappingRotation` the old ones drain first.
* **Exits** are classified (`ExitKind`): a crash counts toward rapid-fail (if the worker
  ran: a process that could not even be created backs off but is no crash); a worker the
  supervisor gave up on was counted when it gave up; a drained one is expected and is
  replaced at once; a load failure before the pool was ever ready fails the pool's start.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from webgarden.manager.states import PoolState, WorkerState, next_pool_state, next_worker_state
from webgarden.manager.supervision import (
    Action,
    AllExited,
    CancelRespawn,
    ConfigApplied,
    Demand,
    Drain,
    Emit,
    Event,
    Exited,
    FailureCounted,
    GoOnline,
    IdleExpired,
    Orphaned,
    Policy,
    PoolStarted,
    Ready,
    RecycleRequested,
    RenewTemplate,
    RespawnIn,
    Serve,
    Spawn,
    Spawned,
    Start,
    StartFailed,
    Stop,
    Stopped,
    StopPool,
    TimerFired,
    WarmTemplate,
)

#: Delay before respawning a worker whose predecessor never became ready: first, cap
#: (seconds). Doubling from 0.1 s reaches the cap after 7 failures: a broken deployment
#: costs a few spawns, then one every 10 s, instead of a spinning CPU.
RESTART_BACKOFF = (0.1, 10.0)

_HOLDS_A_PLACE = frozenset({WorkerState.SPAWNING, WorkerState.STARTING, WorkerState.READY})
_GONE = frozenset({WorkerState.EXITED, WorkerState.ORPHANED})


class ExitKind(enum.Enum):
    CRASH = "crash"  # it ran (starting or serving) and died unasked
    LOAD_FAILURE = "load_failure"  # its applications could not be imported
    RETIRED = "retired"  # it was drained, recycled, or never ran: expected
    GIVEN_UP = "given_up"  # the supervisor gave up on it (health rule): counted then


@dataclass
class Member:
    """What the supervisor knows of one worker."""

    state: WorkerState = WorkerState.SPAWNING
    pid: int = 0
    retiring: bool = False
    ever_ready: bool = False
    failed: str | None = None


def classify(member: Member, load_error: str | None) -> ExitKind:
    """Why a worker ended, from what the supervisor knew of it when it exited. A worker
    that said its application failed to load did so, even if it was then given up (a
    second ABORT is a violation): given up, a pool still starting would respawn it for
    ever, and its server would never start nor stop."""
    if load_error and not member.ever_ready:
        return ExitKind.LOAD_FAILURE
    if member.failed is not None:
        return ExitKind.GIVEN_UP
    if member.retiring or member.state is WorkerState.DRAINING:
        return ExitKind.RETIRED
    return ExitKind.CRASH


class Supervisor:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.state = PoolState.STOPPED
        self.members: dict[int, Member] = {}
        self.demand = policy.always_running
        self.failed_starts = 0  # consecutive workers that exited before they were ready
        self.ever_ready = False
        self.start_error: str | None = None
        self.failures: list[float] = []  # times of recent crashes and health failures
        self.respawn_pending = False
        self._next_wid = 0

    def handle(self, event: Event, now: float) -> list[Action]:
        """The actions `event` calls for, in order (`now`: the caller's monotonic clock)."""
        out: list[Action] = []
        method = getattr(self, "_on_" + type(event).__name__)  # one handler per event type
        method(event, now, out)
        return out

    # -- pool life ----------------------------------------------------------------------

    def _pool(self, event: str, out: list[Action]) -> None:
        self.state = next_pool_state(self.state, event)
        out.append(Emit("pool.state", {"state": self.state.value}))

    def _on_Start(self, event: Start, now: float, out: list[Action]) -> None:
        self._pool("start", out)
        out.append(GoOnline())
        self.failures.clear()
        self.start_error = None
        self.demand = self.policy.always_running or event.waiting
        if not self.demand:  # OnDemand: started, with no worker until the first request
            self._pool("started", out)
            out.append(PoolStarted())
        self._converge(out)

    def _on_Stop(self, event: Stop, now: float, out: list[Action]) -> None:
        if self.state in (PoolState.STARTING, PoolState.STARTED):
            self._pool("stop", out)
        self._cancel_respawn(out)
        for wid, member in self.members.items():
            if member.state not in _GONE:
                self._drain(wid, out)
        if not self.members:
            out.append(AllExited())

    def _on_Stopped(self, event: Stopped, now: float, out: list[Action]) -> None:
        if self.state is PoolState.STOPPING:
            self._pool("stopped", out)

    def _on_Demand(self, event: Demand, now: float, out: list[Action]) -> None:
        """A request waits and no worker serves: start them (IIS: demand start)."""
        if not self.demand and self.state in (PoolState.STARTING, PoolState.STARTED):
            self.demand = True
            out.append(Emit("pool.demand_start", {}))
            self._converge(out)

    def _on_ConfigApplied(self, event: ConfigApplied, now: float, out: list[Action]) -> None:
        self.policy = event.policy
        if self.state in (PoolState.STARTING, PoolState.STARTED):
            self.demand = self.demand or event.policy.always_running
        if event.recycle:
            self._recycle(None, out)
        else:
            self._converge(out)

    # -- workers ------------------------------------------------------------------------

    def _on_Spawned(self, event: Spawned, now: float, out: list[Action]) -> None:
        member = self.members[event.wid]
        member.pid = event.pid
        if member.state is WorkerState.SPAWNING:
            member.state = next_worker_state(member.state, "spawned")

    def _on_Ready(self, event: Ready, now: float, out: list[Action]) -> None:
        member = self.members[event.wid]
        member.state = next_worker_state(member.state, "ready")
        member.ever_ready = self.ever_ready = True
        self.failed_starts = 0
        if member.retiring:  # replaced while it was starting
            self._drain(event.wid, out)
            return
        out.append(Serve(event.wid))
        if self.state is PoolState.STARTING:
            self._pool("started", out)
            out.append(PoolStarted())
        for wid, old in self.members.items():  # one replacement ready: one old worker goes
            if old.retiring and old.state is WorkerState.READY:
                self._drain(wid, out)
                break
        out.append(WarmTemplate())

    def _on_Exited(self, event: Exited, now: float, out: list[Action]) -> None:
        member = self.members.pop(event.wid)
        kind = classify(member, event.load_error)
        ran = member.state in (WorkerState.STARTING, WorkerState.READY)
        if kind in (ExitKind.CRASH, ExitKind.LOAD_FAILURE) and ran and member.failed is None:
            out.append(Emit("worker.crash", {"pid": member.pid, "iis_event": 5009,
                                             "code": event.code, "kind": kind.value}))
            self._count_failure(now, out)
        failed_start = kind is not ExitKind.RETIRED and not member.ever_ready
        if failed_start:
            self.failed_starts += 1
            if (kind in (ExitKind.LOAD_FAILURE, ExitKind.GIVEN_UP) and not self.ever_ready
                    and self.state is PoolState.STARTING):
                # Given up (startupTimeLimit, a violation) before any worker was ready: it
                # would be given up again, and respawning it for ever kept the whole server
                # from starting, and from handling a SIGTERM.
                reason = (event.load_error if kind is ExitKind.LOAD_FAILURE else
                          f"its worker was given up before it was ready ({member.failed})")
                self.start_error = reason
                out.append(StartFailed(reason or "the application did not load"))
                return
        if not self.members and self.state is PoolState.STOPPING:
            out.append(AllExited())
        if self.state in (PoolState.STARTING, PoolState.STARTED):
            if failed_start:
                self._respawn_later(out)
            else:
                self._converge(out)

    def _on_TimerFired(self, event: TimerFired, now: float, out: list[Action]) -> None:
        self.respawn_pending = False
        self._converge(out)

    def _on_FailureCounted(self, event: FailureCounted, now: float, out: list[Action]) -> None:
        member = self.members.get(event.wid)
        if member is None or member.failed is not None or member.state is WorkerState.EXITED:
            return
        member.failed = event.what
        self._count_failure(now, out)

    def _on_Orphaned(self, event: Orphaned, now: float, out: list[Action]) -> None:
        member = self.members[event.wid]
        member.state = next_worker_state(member.state, "orphan")
        self._converge(out)

    def _on_IdleExpired(self, event: IdleExpired, now: float, out: list[Action]) -> None:
        """idleTimeout: the worker had nothing to do for that long (IIS event 5186)."""
        member = self.members[event.wid]
        if member.state is not WorkerState.READY or member.retiring:
            return
        if self.policy.log_idle:
            out.append(Emit("worker.idle_shutdown", {"pid": member.pid, "iis_event": 5186,
                                                     "idle_timeout": self.policy.idle_timeout}))
        member.retiring = True
        self._drain(event.wid, out)
        if not any(m.state not in _GONE and not m.retiring for m in self.members.values()):
            self.demand = False  # the next request starts a worker on demand

    def _on_RecycleRequested(self, event: RecycleRequested, now: float, out: list[Action]
                             ) -> None:
        """Replace `wids` (None: every worker) with new ones (the `reason` is the adapter's
        to log, with the pids `recycle_candidates` names)."""
        self._recycle(event.wids, out)

    def _recycle(self, wids: tuple[int, ...] | None, out: list[Action]) -> None:
        """The one recycle path: replace the workers (default: all), overlapped or not."""
        if wids is None:
            wids = tuple(self.members)
        old = [wid for wid in wids if wid in self.members
               and not self.members[wid].retiring and self.members[wid].state not in _GONE]
        for wid in old:
            member = self.members[wid]
            member.retiring = True
            if member.state in (WorkerState.SPAWNING, WorkerState.STARTING) or not (
                    self.policy.overlap):
                self._drain(wid, out)  # not serving yet, or no overlap wanted: it goes now
        self.demand = self.demand or bool(old)
        if self.respawn_pending:  # a recycle deserves a fresh try
            self._cancel_respawn(out)
            self.failed_starts = 0
        self._converge(out)
        out.append(RenewTemplate())

    # -- the decisions ------------------------------------------------------------------

    def recycle_candidates(self, wids: tuple[int, ...] | None = None) -> list[int]:
        """The pids a recycle of `wids` (None: all) would replace, for its event."""
        members = self.members if wids is None else {w: self.members[w] for w in wids
                                                      if w in self.members}
        return [m.pid for m in members.values() if not m.retiring and m.state not in _GONE]

    def _holds_a_place(self, member: Member) -> bool:
        if self.policy.overlap:
            return not member.retiring and member.state in _HOLDS_A_PLACE
        return member.state in _HOLDS_A_PLACE or member.state is WorkerState.DRAINING

    def _converge(self, out: list[Action]) -> None:
        if self.state not in (PoolState.STARTING, PoolState.STARTED) or self.respawn_pending:
            return
        if not self.demand:
            return
        live = sum(1 for m in self.members.values() if self._holds_a_place(m))
        for _ in range(self.policy.max_processes - live):
            self._next_wid += 1
            self.members[self._next_wid] = Member()
            out.append(Spawn(self._next_wid))

    def _drain(self, wid: int, out: list[Action]) -> None:
        member = self.members[wid]
        if member.state in _GONE or member.state is WorkerState.DRAINING:
            return  # gone, or draining already (its shutdownTimeLimit runs once)
        member.state = next_worker_state(member.state, "drain")
        out.append(Drain(wid))

    def _respawn_later(self, out: list[Action]) -> None:
        first, cap = RESTART_BACKOFF
        self.respawn_pending = True
        out.append(RespawnIn(min(first * 2 ** (self.failed_starts - 1), cap)))

    def _cancel_respawn(self, out: list[Action]) -> None:
        if self.respawn_pending:
            self.respawn_pending = False
            out.append(CancelRespawn())

    def _count_failure(self, now: float, out: list[Action]) -> None:
        policy = self.policy
        if not policy.rapid_fail or self.state is not PoolState.STARTED:
            return
        self.failures = [t for t in self.failures if now - t < policy.interval] + [now]
        if len(self.failures) >= policy.max_crashes:
            out.append(Emit("pool.rapid_fail", {"iis_event": 5002, "failures": len(self.failures),
                                                "interval": policy.interval}))
            self.failures.clear()
            self._pool("stop", out)
            self._cancel_respawn(out)
            out.append(StopPool())  # the adapter's stop drains the workers (`Stop`)

