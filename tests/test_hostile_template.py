"""A compromised application in its pool's template: the template runs the application's
import code, so what it says on the spawn channel is a claim the server checks. A lying
template is stopped and says why in the event log; the pool's workers are then spawned
directly, and the server serves on.
"""

from __future__ import annotations

import httpx

from harness import ServerProcess


def _serves_directly(server: ServerProcess) -> None:
    server.wait_event(lambda e: e["event"] == "worker.start" and e["spawn"] == "exec")
    assert httpx.get(f"{server.url}/").text == "hello"


def test_a_fork_answer_nobody_asked_for_stops_the_template(start_server) -> None:
    server = start_server("hostile_template_early:application", "--spawn-method", "smart")
    violation = server.wait_event(lambda e: e["event"] == "template.violation")
    assert violation["reason"] == "Forked answers no Fork"
    _serves_directly(server)


def test_a_forked_pid_that_is_not_the_new_worker_is_never_acted_on(start_server) -> None:
    server = start_server("hostile_template_pid:application", "--spawn-method", "smart")
    bad = server.wait_event(lambda e: e["event"] == "template.bad_pid")
    assert bad["reported"] == server.proc.pid
    server.wait_event(lambda e: e["event"] == "template.exit" and e["pid"] == bad["pid"])
    _serves_directly(server)
    assert server.proc.poll() is None  # the server was never signalled
