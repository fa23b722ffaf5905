"""The ASGI examples (FastAPI, Django's ASGI handler), served by a real `webgarden run` from
their own directories as their READMEs say, with two workers, over httpx and curl."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from harness import ROOT, ServerProcess

EXAMPLES = ROOT / "examples"
FASTAPI_DIR = EXAMPLES / "fastapi_app"
DJANGO_DIR = EXAMPLES / "django_app"


@pytest.fixture
def fastapi_server(start_server) -> ServerProcess:
    return start_server("main:app", "--workers", "2", cwd=FASTAPI_DIR)


@pytest.fixture
def django_server(start_server) -> ServerProcess:
    return start_server("mysite.asgi:application", "--workers", "2", cwd=DJANGO_DIR)


def test_fastapi_answers_json_from_a_worker_whose_lifespan_state_it_carries(
        fastapi_server) -> None:
    with httpx.Client(base_url=fastapi_server.url, timeout=30) as http:
        seen = set()
        for _ in range(10):
            data = http.get("/").json()
            assert data["message"] == "Hello from FastAPI on webgarden"
            assert data["started_by"] == data["pid"]  # startup ran in that very worker
            seen.add(data["pid"])
        assert seen <= set(fastapi_server.worker_pids())
        assert http.get("/items/42", params={"q": "x"}).json() == {"item_id": 42, "q": "x"}
        assert http.post("/echo", json={"a": [1, 2]}).json() == {"json": {"a": [1, 2]}}
        assert http.get("/items/not-a-number").status_code == 422  # FastAPI's validation


def test_fastapi_streams_a_response_and_sends_a_file_zero_copy(fastapi_server) -> None:
    with httpx.stream("GET", f"{fastapi_server.url}/stream?n=4", timeout=30) as response:
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.read() == b"line 0\nline 1\nline 2\nline 3\n"
    file = FASTAPI_DIR / "static" / "garden.txt"
    curl = subprocess.run(["curl", "-s", "-D", "-", f"{fastapi_server.url}/download"],
                          capture_output=True, timeout=30).stdout
    head, _, body = curl.partition(b"\r\n\r\n")
    assert body == file.read_bytes()
    assert f"Content-Length: {file.stat().st_size}".encode() in head  # sent whole, by length


def test_fastapi_errors_are_500_without_the_traceback(fastapi_server) -> None:
    response = httpx.get(f"{fastapi_server.url}/boom", timeout=30)
    assert response.status_code == 500 and b"on purpose" not in response.content


def test_django_asgi_serves_its_views(django_server) -> None:
    with httpx.Client(base_url=django_server.url, timeout=30) as http:
        index = http.get("/")
        assert index.status_code == 200 and "Hello from Django on webgarden" in index.text
        assert http.get("/whoami").json()["pid"] in django_server.worker_pids()
        assert http.post("/echo", json={"k": "v"}).json() == {"json": {"k": "v"}}
        assert http.get("/boom").status_code == 500
        download = http.get("/download")
        assert download.content == (DJANGO_DIR / "mysite" / "static" / "garden.txt").read_bytes()
    django_server.stop()
    assert "does not support ASGI lifespan" in django_server.stderr  # said once, then served
