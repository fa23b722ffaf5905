"""The example applications in examples/, served by a real `webgarden run`, tested over HTTP.

Each test starts the example from its own directory, as its README says to, with two
workers, and talks to it with httpx.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness import ROOT, ServerProcess

EXAMPLES = ROOT / "examples"
FLASK_DIR = EXAMPLES / "flask_app"
DJANGO_DIR = EXAMPLES / "django_app"
FLASK_FILE = FLASK_DIR / "static" / "garden.txt"
DJANGO_FILE = DJANGO_DIR / "mysite" / "static" / "garden.txt"

StartServer = Callable[..., ServerProcess]

CONCURRENCY = 8
MAX_ROUNDS = 25  # at most 200 requests to see both workers of the web garden


@pytest.fixture
def flask_server(start_server: StartServer) -> ServerProcess:
    return start_server("app:app", "--workers", "2", cwd=FLASK_DIR)


@pytest.fixture
def django_server(start_server: StartServer) -> ServerProcess:
    return start_server("mysite.wsgi:application", "--workers", "2", cwd=DJANGO_DIR)


def get(server: ServerProcess, path: str, **kwargs: object) -> httpx.Response:
    return httpx.get(server.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]


def post(server: ServerProcess, path: str, **kwargs: object) -> httpx.Response:
    return httpx.post(server.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]


# -- shared checks ------------------------------------------------------------------------


def check_whoami(server: ServerProcess) -> None:
    response = get(server, "/whoami")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    data = response.json()
    assert data["pid"] in server.worker_pids()
    assert data["pid"] != server.proc.pid  # the app runs in a worker, not the listener
    assert data["pool"] == "DefaultAppPool"
    assert data["server"].lower().startswith("webgarden")


def check_large_body_echo(server: ServerProcess) -> None:
    body = os.urandom(100 * 1024)
    response = post(
        server, "/echo", content=body, headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert int(response.headers["content-length"]) == len(body)
    assert response.content == body


def check_json_and_form_echo(server: ServerProcess) -> None:
    payload = {"name": "webgarden", "workers": 2, "nested": {"ünïcode": ["a", "b"]}}
    response = post(server, "/echo", json=payload)
    assert response.status_code == 200
    assert response.json() == {"json": payload}

    response = post(server, "/echo", data={"text": "hello, webgarden", "tag": ["a", "b"]})
    assert response.status_code == 200
    assert response.json() == {"form": {"text": ["hello, webgarden"], "tag": ["a", "b"]}}


def check_file(server: ServerProcess, path: Path) -> None:
    expected = path.read_bytes()
    response = get(server, "/download")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["content-length"] == str(len(expected))
    assert "transfer-encoding" not in response.headers
    assert response.content == expected

    head = httpx.head(server.url + "/download", timeout=30)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(expected))
    assert head.content == b""


def check_server_error(server: ServerProcess, message: str) -> httpx.Response:
    response = get(server, "/boom")
    assert response.status_code == 500
    assert "Traceback" not in response.text
    assert message not in response.text
    log = server.stderr
    assert "Traceback (most recent call last)" in log
    assert f"RuntimeError: {message}" in log
    # the worker survived: the next request is answered normally
    assert get(server, "/whoami").status_code == 200
    return response


def check_both_workers_answer(server: ServerProcess) -> None:
    # `server.started` comes with the first ready worker; wait for the second one too.
    ready = 0

    def second_ready(event: dict[str, object]) -> bool:
        nonlocal ready
        ready += event["event"] == "worker.ready"
        return ready >= 2

    server.wait_event(second_ready, timeout=60)
    workers = set(server.worker_pids())
    assert len(workers) == 2

    seen: set[int] = set()
    barrier = threading.Barrier(CONCURRENCY)
    clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(CONCURRENCY)]

    def ask(client: httpx.Client) -> int:
        barrier.wait(timeout=30)  # send each round's requests at once, on separate connections
        response = client.get("/whoami")
        assert response.status_code == 200
        pid: int = response.json()["pid"]
        return pid

    try:
        with ThreadPoolExecutor(CONCURRENCY) as executor:
            for _ in range(MAX_ROUNDS):
                seen.update(executor.map(ask, clients))
                if len(seen) == 2:
                    break
    finally:
        for client in clients:
            client.close()
    assert seen == workers


# -- the Flask example --------------------------------------------------------------------


def test_flask_example_serves_its_index_page(flask_server: ServerProcess) -> None:
    response = get(flask_server, "/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert int(response.headers["content-length"]) == len(response.content)
    assert "<h1>Hello from Flask on webgarden</h1>" in response.text
    assert "date" in response.headers


def test_flask_example_reports_its_worker_pid_and_pool(flask_server: ServerProcess) -> None:
    check_whoami(flask_server)


def test_flask_example_echoes_a_large_post_body(flask_server: ServerProcess) -> None:
    check_large_body_echo(flask_server)


def test_flask_example_echoes_json_and_form_bodies(flask_server: ServerProcess) -> None:
    check_json_and_form_echo(flask_server)


def test_flask_example_streams_a_generated_response_whole(flask_server: ServerProcess) -> None:
    lines = 5000
    expected = "".join(f"line {i} of {lines} from /stream\n" for i in range(lines))
    with httpx.stream("GET", flask_server.url + f"/stream?lines={lines}", timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert "content-length" not in response.headers
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.headers["content-encoding"] == "gzip"  # httpx accepts it
        body = b"".join(response.iter_bytes())  # decompressed
    assert body.decode() == expected


def test_flask_example_error_route_gives_500_and_logs_the_traceback(
    flask_server: ServerProcess,
) -> None:
    response = check_server_error(flask_server, "this route fails on purpose")
    assert "Internal Server Error" in response.text
    assert "Exception on /boom [GET]" in flask_server.stderr  # Flask's own log line


def test_flask_example_sends_its_static_file_exactly(flask_server: ServerProcess) -> None:
    check_file(flask_server, FLASK_FILE)


def test_flask_example_answers_a_range_request_for_its_file(flask_server: ServerProcess) -> None:
    expected = FLASK_FILE.read_bytes()
    response = get(flask_server, "/download", headers={"Range": "bytes=1000-70999"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 1000-70999/{len(expected)}"
    assert response.headers["content-length"] == "70000"
    assert response.content == expected[1000:71000]


def test_flask_example_is_answered_by_both_workers_of_the_garden(
    flask_server: ServerProcess,
) -> None:
    check_both_workers_answer(flask_server)


def test_flask_example_unknown_path_is_a_404(flask_server: ServerProcess) -> None:
    response = get(flask_server, "/no/such/page")
    assert response.status_code == 404
    assert "Not Found" in response.text


# -- the Django example -------------------------------------------------------------------


def test_django_example_serves_its_index_page(django_server: ServerProcess) -> None:
    response = get(django_server, "/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert int(response.headers["content-length"]) == len(response.content)
    assert "<h1>Hello from Django on webgarden</h1>" in response.text
    assert response.headers["x-frame-options"] == "DENY"  # the middleware ran


def test_django_example_reports_its_worker_pid_and_pool(django_server: ServerProcess) -> None:
    check_whoami(django_server)


def test_django_example_echoes_a_large_post_body(django_server: ServerProcess) -> None:
    check_large_body_echo(django_server)


def test_django_example_echoes_json_and_form_bodies(django_server: ServerProcess) -> None:
    check_json_and_form_echo(django_server)


def test_django_example_error_view_gives_500_and_logs_the_traceback(
    django_server: ServerProcess,
) -> None:
    response = check_server_error(django_server, "this view fails on purpose")
    assert "Server Error (500)" in response.text
    assert "Internal Server Error: /boom" in django_server.stderr  # django.request's log


def test_django_example_sends_its_file_response_exactly(django_server: ServerProcess) -> None:
    check_file(django_server, DJANGO_FILE)


def test_django_example_is_answered_by_both_workers_of_the_garden(
    django_server: ServerProcess,
) -> None:
    check_both_workers_answer(django_server)


def test_django_example_refuses_a_host_not_in_allowed_hosts(django_server: ServerProcess) -> None:
    response = get(django_server, "/", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert "Invalid HTTP_HOST header" in django_server.stderr


def test_django_example_echo_refuses_get(django_server: ServerProcess) -> None:
    response = get(django_server, "/echo")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_django_example_json_echo_rejects_a_malformed_body(django_server: ServerProcess) -> None:
    response = post(
        django_server,
        "/echo",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.text == "not JSON\n"
