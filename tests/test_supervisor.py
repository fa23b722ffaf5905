"""The supervisor's policy, driven by fake events: no process, no socket, no clock."""

from __future__ import annotations

import pytest

from webgarden.manager.states import IllegalTransition, PoolState, WorkerState
from webgarden.manager.supervision import (
    AllExited,
    CancelRespawn,
    ConfigApplied,
    Demand,
    Drain,
    Emit,
    Exited,
    FailureCounted,
    IdleExpired,
    Policy,
    PoolStarted,
    Ready,
    RecycleRequested,
    RespawnIn,
    Serve,
    Spawn,
    Spawned,
    Start,
    StartFailed,
    StopPool,
    TimerFired,
)
from webgarden.manager.supervisor import (
    RESTART_BACKOFF,
    ExitKind,
    Member,
    Supervisor,
    classify,
)


def spawns(actions: list) -> list[int]:
    return [a.wid for a in actions if isinstance(a, Spawn)]


def drains(actions: list) -> list[int]:
    return [a.wid for a in actions if isinstance(a, Drain)]


def emitted(actions: list, name: str) -> list[Emit]:
    return [a for a in actions if isinstance(a, Emit) and a.event == name]


def started_pool(policy: Policy) -> tuple[Supervisor, list[int]]:
    """A started pool whose `max_processes` workers are all ready (pids 100, 101, ...)."""
    sup = Supervisor(policy)
    wids = spawns(sup.handle(Start(), 0.0))
    for n, wid in enumerate(wids):
        sup.handle(Spawned(wid, 100 + n), 0.0)
        sup.handle(Ready(wid), 0.0)
    assert sup.state is PoolState.STARTED
    return sup, wids


def crash(sup: Supervisor, wid: int, now: float) -> list:
    """A ready worker dies unasked; its replacement spawns and gets ready."""
    actions = sup.handle(Exited(wid, -9), now)
    for new in spawns(actions):
        sup.handle(Spawned(new, 1000 + new), now)
        sup.handle(Ready(new), now)
    return actions


def test_a_started_pool_converges_to_max_processes_and_replaces_what_dies() -> None:
    sup = Supervisor(Policy(max_processes=3))
    actions = sup.handle(Start(), 0.0)
    assert len(spawns(actions)) == 3
    wids = spawns(actions)
    for n, wid in enumerate(wids):
        sup.handle(Spawned(wid, 10 + n), 0.0)
    assert sup.handle(Ready(wids[0]), 0.0)[:1] == [Serve(wids[0])]
    assert PoolStarted() not in sup.handle(Ready(wids[1]), 0.0)  # started once only
    sup.handle(Ready(wids[2]), 0.0)
    # One served and died: one replacement, at once.
    assert len(spawns(sup.handle(Exited(wids[1], -9), 1.0))) == 1
    # The configuration grows the garden: converge to the new target.
    assert len(spawns(sup.handle(ConfigApplied(Policy(max_processes=5)), 2.0))) == 2


def test_an_on_demand_pool_spawns_at_the_first_request_and_idle_retires_it() -> None:
    sup = Supervisor(Policy(always_running=False))
    actions = sup.handle(Start(), 0.0)
    assert spawns(actions) == [] and PoolStarted() in actions
    actions = sup.handle(Demand(), 1.0)
    assert emitted(actions, "pool.demand_start") and len(spawns(actions)) == 1
    wid = spawns(actions)[0]
    sup.handle(Spawned(wid, 7), 1.0)
    sup.handle(Ready(wid), 1.0)
    actions = sup.handle(IdleExpired(wid), 2.0)
    assert drains(actions) == [wid] and emitted(actions, "worker.idle_shutdown")
    assert spawns(actions) == [] and sup.demand is False
    assert spawns(sup.handle(Exited(wid, 0), 3.0)) == []  # no demand: no replacement
    assert len(spawns(sup.handle(Demand(), 4.0))) == 1


def test_restart_backoff_doubles_up_to_its_cap_and_one_ready_worker_resets_it() -> None:
    sup, _ = started_pool(Policy(rapid_fail=False))
    sup.handle(RecycleRequested("OnDemand"), 0.0)  # the replacement will never get ready
    first, cap = RESTART_BACKOFF
    delays = []
    new = max(sup.members)
    for _ in range(10):
        actions = sup.handle(Exited(new, 1), 0.0)
        delays += [a.seconds for a in actions if isinstance(a, RespawnIn)]
        assert spawns(actions) == []  # nothing until the timer fires
        new = spawns(sup.handle(TimerFired(), 0.0))[0]
    assert delays[:4] == [first, first * 2, first * 4, first * 8]
    assert delays[-1] == cap and max(delays) == cap
    sup.handle(Spawned(new, 55), 0.0)
    sup.handle(Ready(new), 0.0)
    assert sup.failed_starts == 0
    sup.handle(RecycleRequested("OnDemand"), 0.0)
    newer = max(sup.members)
    actions = sup.handle(Exited(newer, 1), 0.0)
    assert [a.seconds for a in actions if isinstance(a, RespawnIn)] == [first]


def test_a_recycle_cancels_a_pending_respawn_and_tries_at_once() -> None:
    sup, _ = started_pool(Policy(rapid_fail=False))
    sup.handle(RecycleRequested("OnDemand"), 0.0)
    new = max(sup.members)
    assert any(isinstance(a, RespawnIn) for a in sup.handle(Exited(new, 1), 0.0))
    actions = sup.handle(ConfigApplied(Policy(rapid_fail=False), recycle=True), 0.0)
    assert CancelRespawn() in actions and len(spawns(actions)) == 1


@pytest.mark.parametrize("crashes, window, tripped", [
    (5, 300.0, True),  # N crashes within the window
    (4, 300.0, False),  # N-1
])
def test_rapid_fail_trips_at_n_crashes_within_the_window(crashes, window, tripped) -> None:
    sup, wids = started_pool(Policy(max_crashes=5, interval=window))
    actions: list = []
    wid = wids[0]
    for n in range(crashes):
        actions = crash(sup, wid, float(n))
        wid = max(sup.members, default=0)
    assert (StopPool() in actions) is tripped
    assert bool(emitted(actions, "pool.rapid_fail")) is tripped
    assert sup.state is (PoolState.STOPPING if tripped else PoolState.STARTED)
    if tripped:
        assert spawns(actions) == []  # a stopped pool replaces nothing


def test_rapid_fail_does_not_trip_when_the_crashes_are_spread_beyond_the_window() -> None:
    sup, wids = started_pool(Policy(max_crashes=5, interval=10.0))
    wid = wids[0]
    for n in range(12):
        actions = crash(sup, wid, n * 3.0)  # never 5 within 10 s
        assert StopPool() not in actions
        wid = max(sup.members)
    assert sup.state is PoolState.STARTED


def test_health_failures_count_toward_rapid_fail_once_each() -> None:
    sup, wids = started_pool(Policy(max_processes=2, max_crashes=2))
    assert StopPool() not in sup.handle(FailureCounted(wids[0], "pingResponseTime"), 0.0)
    assert StopPool() not in sup.handle(FailureCounted(wids[0], "pingResponseTime"), 0.0)
    # The worker it gave up on exits: that exit is not counted again.
    assert emitted(sup.handle(Exited(wids[0], -9), 0.5), "worker.crash") == []
    assert StopPool() in sup.handle(FailureCounted(wids[1], "startupTimeLimit"), 1.0)


def test_with_overlap_replacements_start_first_and_each_ready_one_retires_one() -> None:
    sup, old = started_pool(Policy(max_processes=2, overlap=True))
    actions = sup.handle(RecycleRequested("OnDemand"), 0.0)
    assert drains(actions) == [] and len(spawns(actions)) == 2
    assert emitted(actions, "pool.recycle") == []  # the adapter logs it, with its reason flags
    new = spawns(actions)
    sup.handle(Spawned(new[0], 200), 0.0)
    assert drains(sup.handle(Ready(new[0]), 0.0)) == [old[0]]
    sup.handle(Spawned(new[1], 201), 0.0)
    assert drains(sup.handle(Ready(new[1]), 0.0)) == [old[1]]


def test_without_overlap_old_workers_drain_first_and_hold_their_place_until_they_exit() -> None:
    sup, old = started_pool(Policy(max_processes=2, overlap=False))
    actions = sup.handle(RecycleRequested("OnDemand"), 0.0)
    assert drains(actions) == old and spawns(actions) == []
    assert len(spawns(sup.handle(Exited(old[0], 0), 1.0))) == 1
    assert len(spawns(sup.handle(Exited(old[1], 0), 1.0))) == 1


def test_a_recycle_of_one_worker_spares_the_others() -> None:
    sup, wids = started_pool(Policy(max_processes=3))
    assert sup.recycle_candidates((wids[1],)) == [101]
    actions = sup.handle(RecycleRequested("Requests", (wids[1],)), 0.0)
    assert len(spawns(actions)) == 1
    assert [m.retiring for m in sup.members.values()][:3] == [False, True, False]


def test_a_load_failure_before_the_pool_was_ever_ready_fails_its_start() -> None:
    sup = Supervisor(Policy())
    (wid,) = spawns(sup.handle(Start(), 0.0))
    sup.handle(Spawned(wid, 9), 0.0)
    actions = sup.handle(Exited(wid, 3, load_error="ModuleNotFoundError: nope"), 0.1)
    assert StartFailed("ModuleNotFoundError: nope") in actions
    assert spawns(actions) == [] and sup.start_error == "ModuleNotFoundError: nope"


def test_exits_are_classified_from_what_the_supervisor_knew() -> None:
    assert classify(Member(WorkerState.READY, ever_ready=True), None) is ExitKind.CRASH
    assert classify(Member(WorkerState.STARTING), None) is ExitKind.CRASH
    assert classify(Member(WorkerState.STARTING), "ImportError") is ExitKind.LOAD_FAILURE
    assert classify(Member(WorkerState.DRAINING, retiring=True), None) is ExitKind.RETIRED
    assert classify(Member(WorkerState.DRAINING), None) is ExitKind.RETIRED  # pool stopping
    assert classify(Member(WorkerState.SPAWNING), None) is ExitKind.CRASH  # could not start
    assert classify(Member(WorkerState.READY, failed="pingResponseTime"), None) is (
        ExitKind.GIVEN_UP)


def test_stopping_drains_everyone_and_says_when_all_have_exited() -> None:
    from webgarden.manager.supervision import Stop, Stopped

    sup, wids = started_pool(Policy(max_processes=2))
    actions = sup.handle(Stop(), 0.0)
    assert drains(actions) == wids and AllExited() not in actions
    sup.handle(Exited(wids[0], 0), 0.0)
    assert AllExited() in sup.handle(Exited(wids[1], 0), 0.0)
    sup.handle(Stopped(), 0.0)
    assert sup.state is PoolState.STOPPED


def test_an_event_out_of_order_is_an_illegal_transition_naming_state_and_event() -> None:
    sup, (wid,) = started_pool(Policy())
    with pytest.raises(IllegalTransition, match=r"Ready.*'ready'"):
        sup.handle(Ready(wid), 0.0)


def test_a_worker_given_up_after_it_said_its_load_failed_fails_the_start() -> None:
    """Its load failure came first (then a violation, or startupTimeLimit): the pool does
    not respawn it for ever while its server waits to start."""
    sup = Supervisor(Policy())
    (wid,) = spawns(sup.handle(Start(), 0.0))
    sup.handle(Spawned(wid, 9), 0.0)
    sup.handle(FailureCounted(wid, "violation"), 0.1)
    actions = sup.handle(Exited(wid, -9, load_error="flood 0"), 0.1)
    assert StartFailed("flood 0") in actions and spawns(actions) == []
    assert classify(Member(WorkerState.STARTING, failed="violation"), "x") is ExitKind.LOAD_FAILURE


def test_a_worker_given_up_before_the_pool_was_ever_ready_fails_its_start() -> None:
    """A hung import (startupTimeLimit) or a violation before READY, while the pool starts:
    respawning it for ever kept the whole server from starting (and from a SIGTERM)."""
    sup = Supervisor(Policy())
    (wid,) = spawns(sup.handle(Start(), 0.0))
    sup.handle(Spawned(wid, 9), 0.0)
    sup.handle(FailureCounted(wid, "startupTimeLimit"), 90.0)
    actions = sup.handle(Exited(wid, -9), 90.0)
    assert spawns(actions) == [] and not any(isinstance(a, RespawnIn) for a in actions)
    assert StartFailed("its worker was given up before it was ready (startupTimeLimit)") in actions
