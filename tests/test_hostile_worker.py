"""A compromised application against the server: real server, real workers, raw frames.

The app (tests/apps/hostile.py) writes to its own worker's sockets as an intruder would.
Each test breaks one rule of THREAT_MODEL.md and checks the server's answer: the secret
never reaches the client, the link is closed and the worker replaced, `worker.violation`
names the rule, and the server goes on serving.

The secret is a file the worker's user cannot read: mode 600 and owned by root when the
tests run as root (the workers then run as nobody), else mode 000.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness import Client, ServerProcess, raw_request

SECRET = b"the secret the worker's user may not read\n" * 10


@pytest.fixture
def server(start_server) -> ServerProcess:
    return start_server("hostile:application", "--threads", "2")


@pytest.fixture
def secret(shared_tmp: Path) -> Iterator[Path]:
    path = shared_tmp / "secret.txt"
    path.write_bytes(SECRET)
    path.chmod(0o600 if os.geteuid() == 0 else 0)
    yield path
    path.chmod(0o600)


def get(server: ServerProcess, target: str) -> bytes:
    """Everything the server sends for one request, until it closes the connection."""
    request = f"GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode()
    return raw_request(server.port, request)


def assert_refused(server: ServerProcess, target: str, rule: str) -> bytes:
    """Send `target`; the worker that served it breaks `rule`: check what follows."""
    server.wait_event(lambda e: e["event"] == "worker.ready")
    before = len(server.events())
    answer = get(server, target)
    violation = server.wait_event(
        lambda e: e["event"] == "worker.violation", after=before)
    assert violation["reason"] == rule, violation
    assert violation["pool"] == "DefaultAppPool" and violation["detail"]
    pid = violation["pid"]
    server.wait_event(lambda e: e["event"] == "worker.exit" and e["pid"] == pid, after=before)
    server.wait_event(lambda e: e["event"] == "worker.ready" and e["pid"] != pid, after=before)
    assert httpx.get(f"{server.url}/hello").text == "hello"  # the server serves on
    return answer


def test_an_o_path_descriptor_handed_over_as_a_file_is_refused(server, secret: Path) -> None:
    answer = assert_refused(server, f"/opath?path={secret}&size={len(SECRET)}",
                            "bad-descriptor")
    assert SECRET[:20] not in answer
    violation = [e for e in server.events() if e["event"] == "worker.violation"][-1]
    assert "O_PATH" in violation["detail"]


def test_another_processs_pid_and_descriptor_named_in_a_sendfile_are_never_opened(
    server, secret: Path
) -> None:
    # This process holds the secret open: the old protocol would have had the server open
    # /proc/<this pid>/fd/<fd> with its own rights.
    with open(secret, "rb") as held:
        target = f"/old-style?pid={os.getpid()}&fd={held.fileno()}&count={len(SECRET)}"
        answer = assert_refused(server, target, "bad-payload")
    assert SECRET[:20] not in answer


def test_a_sendfile_whose_descriptor_never_comes_is_a_violation(server, secret: Path) -> None:
    answer = assert_refused(server, f"/no-descriptor?count={len(SECRET)}", "descriptor-missing")
    assert SECRET[:20] not in answer


@pytest.mark.parametrize("kind", ["write-only", "directory", "socket"])
def test_a_descriptor_that_is_not_a_readable_regular_file_is_refused(
    server, shared_tmp: Path, kind: str
) -> None:
    target = shared_tmp / ("dir" if kind == "directory" else "writable.txt")
    if kind == "directory":
        target.mkdir()
    else:
        target.write_bytes(b"0123456789")
    target.chmod(0o777)
    assert_refused(server, f"/raw-descriptor?kind={kind}&path={target}", "bad-descriptor")


def test_more_file_than_the_content_length_allows_is_refused(server, shared_tmp: Path) -> None:
    target = shared_tmp / "long.txt"
    target.write_bytes(b"x" * 1000)
    target.chmod(0o644)
    answer = assert_refused(server, f"/beyond?path={target}", "body-beyond-length")
    assert b"x" * 11 not in answer


def test_two_descriptors_in_one_message_are_refused(server, shared_tmp: Path) -> None:
    target = shared_tmp / "ten.txt"
    target.write_bytes(b"0123456789")
    target.chmod(0o644)
    assert_refused(server, f"/two-descriptors?path={target}", "bad-descriptor-message")


def test_a_frame_for_a_stream_the_worker_was_not_given_is_refused(server) -> None:
    answer = assert_refused(server, "/unknown-stream", "unknown-stream")
    assert b"forged" not in answer
    assert answer.startswith(b"HTTP/1.1 502 ")  # its own request, untouched, gets 502


def test_an_oversized_frame_is_refused_before_anything_is_buffered(server) -> None:
    assert_refused(server, "/oversized", "frame-too-large")


def test_a_frame_type_only_the_listener_may_send_is_refused(server) -> None:
    assert_refused(server, "/forbidden-type", "forbidden-frame-type")


def test_a_second_ready_with_an_absurd_capacity_is_refused(server) -> None:
    assert_refused(server, "/second-ready", "bad-ready")


def test_a_second_response_head_is_refused(server) -> None:
    assert_refused(server, "/second-head", "second-response-head")


# -- the legitimate zero-copy path ------------------------------------------------------


@pytest.fixture
def blob(shared_tmp: Path) -> tuple[Path, bytes]:
    data = os.urandom(2 * 1024 * 1024 + 333)
    path = shared_tmp / "blob.bin"
    path.write_bytes(data)
    path.chmod(0o644)
    return path, data


def test_a_file_the_worker_never_reads_reaches_the_client_zero_copy(server, blob) -> None:
    path, data = blob
    with httpx.Client(base_url=server.url) as http:
        for _ in range(3):  # on one keep-alive connection: each response ends where it should
            response = http.get("/noread", params={"path": str(path)})
            assert response.content == data
    assert not [e for e in server.events() if e["event"] == "worker.violation"]


def test_a_file_from_an_offset_and_up_to_a_content_length_is_sent_exactly(
    server, blob
) -> None:
    path, data = blob
    with httpx.Client(base_url=server.url) as http:
        response = http.get("/file", params={"path": str(path), "offset": "1000"})
        assert response.content == data[1000:]
        response = http.get("/file", params={"path": str(path), "offset": "77",
                                             "length": "5000"})
        assert response.headers["content-length"] == "5000"
        assert response.content == data[77:5077]
        head = http.head("/file", params={"path": str(path), "offset": "5"})
        assert head.headers["content-length"] == str(len(data) - 5) and head.content == b""
    assert not [e for e in server.events() if e["event"] == "worker.violation"]


def test_a_file_shorter_than_its_content_length_goes_with_the_length_it_has(
    server, blob
) -> None:
    path, data = blob
    client = Client(server.port)
    for _ in range(2):  # the connection stays in step: the declared length is what came
        client.send(f"GET /file?path={path}&offset={len(data) - 10}&length=100 HTTP/1.1\r\n"
                    "Host: a\r\n\r\n".encode())
        status, headers, body = client.read_response()
        assert status == 200 and headers["content-length"] == "10" and body == data[-10:]
    client.close()


def test_a_directly_started_worker_passes_its_files_the_same_way(start_server, blob) -> None:
    server = start_server("hostile:application", "--spawn-method", "direct")
    path, data = blob
    assert httpx.get(f"{server.url}/noread", params={"path": str(path)}).content == data
    started = [e for e in server.events() if e["event"] == "worker.start"]
    assert started and all(e["spawn"] == "exec" for e in started)


def test_a_child_that_keeps_writing_to_the_stack_pipe_leaves_nothing_in_the_server(
    server: ServerProcess,
) -> None:
    """The server reads a worker's stack pipe one chunk per loop turn, and closes it when
    the worker exits, although a child of the worker still holds its write end."""
    server.wait_event(lambda e: e["event"] == "worker.ready")
    stray = httpx.get(f"{server.url}/stray-stacks").json()
    try:
        pipe = f"pipe:[{stray['inode']}]"
        fds = f"/proc/{server.proc.pid}/fd"
        assert pipe in {os.readlink(f"{fds}/{n}") for n in os.listdir(fds)}  # its read end
        assert httpx.get(f"{server.url}/hello").text == "hello"  # the loop is not held
        assert_refused(server, "/second-ready", "bad-ready")  # the worker goes
        held = set()
        for n in os.listdir(fds):
            with contextlib.suppress(OSError):
                held.add(os.readlink(f"{fds}/{n}"))
        assert pipe not in held
    finally:
        os.kill(stray["child"], signal.SIGKILL)


def test_a_worker_that_repeats_its_load_failure_is_stopped_at_the_second(
    tmp_path: Path,
) -> None:
    """ABORT on stream 0 (a load failure) comes once: a worker flooding it before READY
    would write an event line for each; the second is a violation, and the worker goes."""
    import subprocess
    import sys

    from harness import APPS

    log = tmp_path / "events.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "webgarden", "run", "hostile_abort:application",
         "--spawn-method", "direct", "--bind", "127.0.0.1:0",
         "--control", str(tmp_path / "c.sock"), "--event-log", str(log)],
        cwd=str(APPS), env={**os.environ, "PYTHONPATH": str(APPS)},
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0  # its application never loaded
    events = [json.loads(line) for line in log.read_text().splitlines()]
    failures = [e for e in events if e["event"] == "worker.load_failed"]
    violations = [e for e in events if e["event"] == "worker.violation"]
    assert len(failures) == 1 and failures[0]["error"] == "flood 0", failures[:3]
    assert [v["reason"] for v in violations] == ["second-load-failure"]


def test_a_worker_that_breaks_the_link_before_its_pool_was_ever_ready_fails_the_start(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from harness import APPS

    result = subprocess.run(
        [sys.executable, "-m", "webgarden", "run", "hostile_ready:application",
         "--spawn-method", "direct", "--bind", "127.0.0.1:0",
         "--control", str(tmp_path / "c.sock"), "--event-log", str(tmp_path / "e.jsonl")],
        cwd=str(APPS), env={**os.environ, "PYTHONPATH": str(APPS)},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "given up before it was ready (violation)" in result.stderr
