"""Pool and worker states as tables (after h11's `_state.py`).

A transition not in the table is a bug in the manager, and raises `IllegalTransition`
naming the state and the event, instead of leaving a worker in a state nobody planned.
"""

from __future__ import annotations

from enum import Enum


class WorkerState(Enum):
    SPAWNING = "Spawning"  # the process is being created
    STARTING = "Starting"  # it runs; the applications are loading
    READY = "Ready"  # in service: takes requests
    DRAINING = "Draining"  # out of service: finishes what it has, then exits
    EXITED = "Exited"
    ORPHANED = "Orphaned"  # failed, left alive out of service for diagnosis


class PoolState(Enum):
    STARTING = "Starting"
    STARTED = "Started"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


class IllegalTransition(Exception):
    def __init__(self, kind: str, state: Enum, event: str) -> None:
        super().__init__(f"{kind} in state {state.value} cannot take event {event!r}")


W = WorkerState
WORKER_TRANSITIONS: dict[tuple[WorkerState, str], WorkerState] = {
    (W.SPAWNING, "spawned"): W.STARTING,
    (W.SPAWNING, "drain"): W.DRAINING,  # retired before its process was even created
    (W.SPAWNING, "exit"): W.EXITED,
    (W.STARTING, "ready"): W.READY,
    (W.STARTING, "drain"): W.DRAINING,
    (W.STARTING, "exit"): W.EXITED,
    (W.STARTING, "orphan"): W.ORPHANED,
    (W.READY, "drain"): W.DRAINING,
    (W.READY, "exit"): W.EXITED,
    (W.READY, "orphan"): W.ORPHANED,
    (W.DRAINING, "drain"): W.DRAINING,
    (W.DRAINING, "exit"): W.EXITED,
    (W.ORPHANED, "exit"): W.EXITED,
}

P = PoolState
POOL_TRANSITIONS: dict[tuple[PoolState, str], PoolState] = {
    (P.STOPPED, "start"): P.STARTING,
    (P.STARTING, "started"): P.STARTED,
    (P.STARTING, "stop"): P.STOPPING,
    (P.STARTED, "stop"): P.STOPPING,
    (P.STOPPING, "stopped"): P.STOPPED,
}


def next_worker_state(state: WorkerState, event: str) -> WorkerState:
    try:
        return WORKER_TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition("worker", state, event) from None


def next_pool_state(state: PoolState, event: str) -> PoolState:
    try:
        return POOL_TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition("pool", state, event) from None
