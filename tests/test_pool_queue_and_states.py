"""The pool queue and the state tables, sans-IO (fake upstreams, no processes)."""

from __future__ import annotations

import pytest

from webgarden.listener import errors
from webgarden.listener.pool_queue import PoolQueue
from webgarden.manager.states import (
    IllegalTransition,
    PoolState,
    WorkerState,
    next_pool_state,
    next_worker_state,
)


class FakeUpstream:
    def __init__(self, capacity: int, name: str = "a") -> None:
        self.name = name
        self.capacity = capacity
        self.got: list[object] = []

    @property
    def inflight(self) -> int:
        return len(self.got)

    def serves(self, request: object) -> bool:
        return not (isinstance(request, str) and request.startswith("only-b:")) or self.name == "b"

    def dispatch(self, request: object) -> None:
        self.got.append(request)


def test_requests_go_to_the_least_busy_worker_with_room() -> None:
    queue = PoolQueue("p", 10)
    a, b = FakeUpstream(2), FakeUpstream(2)
    queue.add_upstream(a)
    queue.add_upstream(b)
    for i in range(4):
        assert queue.submit(i) is None
    assert a.got == [0, 2] and b.got == [1, 3]
    assert queue.submit(4) is None and list(queue.waiting) == [4]


def test_a_full_queue_refuses_with_queue_full_and_keeps_what_it_holds() -> None:
    queue = PoolQueue("p", 2)
    assert queue.submit(1) is None and queue.submit(2) is None
    assert queue.submit(3) is errors.QUEUE_FULL
    assert list(queue.waiting) == [1, 2] and queue.rejected == 1


def test_waiting_requests_go_out_in_order_when_a_worker_arrives_and_requeued_go_first() -> None:
    queue = PoolQueue("p", 10)
    for i in range(3):
        queue.submit(i)
    queue.requeue("again")
    worker = FakeUpstream(10)
    queue.add_upstream(worker)
    assert worker.got == ["again", 0, 1, 2]


def test_a_removed_request_never_reaches_a_worker() -> None:
    queue = PoolQueue("p", 10)
    queue.submit("stays")
    queue.submit("leaves")
    assert queue.remove("leaves") and not queue.remove("leaves")
    worker = FakeUpstream(10)
    queue.add_upstream(worker)
    assert worker.got == ["stays"]


def test_an_offline_pool_answers_its_page_at_once() -> None:
    queue = PoolQueue("p", 10)
    queue.offline = errors.APP_SHUTDOWN
    assert queue.submit(1) is errors.APP_SHUTDOWN


def test_states_move_only_along_their_tables() -> None:
    assert next_worker_state(WorkerState.STARTING, "ready") is WorkerState.READY
    assert next_pool_state(PoolState.STARTED, "stop") is PoolState.STOPPING
    with pytest.raises(IllegalTransition, match="worker in state Exited cannot take event 'ready'"):
        next_worker_state(WorkerState.EXITED, "ready")
    with pytest.raises(IllegalTransition, match="pool in state Stopped cannot take event 'stop'"):
        next_pool_state(PoolState.STOPPED, "stop")


def test_a_request_waits_for_a_worker_that_hosts_its_application() -> None:
    queue = PoolQueue("p", 10)
    old = FakeUpstream(10, "a")
    queue.add_upstream(old)
    queue.submit("only-b:new-app")
    queue.submit("any")  # behind it in line: first come, first served
    assert old.got == [] and len(queue.waiting) == 2
    new = FakeUpstream(10, "b")
    queue.add_upstream(new)
    assert new.got == ["only-b:new-app"] and old.got == ["any"]  # then the least busy
