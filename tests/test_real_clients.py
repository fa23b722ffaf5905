"""The server against real third-party clients (curl), not only Python ones."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl)")


@pytest.fixture
def server(start_server):
    return start_server("testapp:application", "--threads", "2")


def _curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    return subprocess.run([CURL, "-sS", *args], capture_output=True, timeout=60)


def test_curl_uploads_a_large_body_with_expect_100_continue(server, tmp_path: Path) -> None:
    data = tmp_path / "upload.bin"
    data.write_bytes(b"q" * (3 * 1024 * 1024))
    result = _curl("-v", "--data-binary", f"@{data}", f"{server.url}/digest")
    assert result.stdout.startswith(b"3145728 ")
    assert b"Expect: 100-continue" in result.stderr and b"HTTP/1.1 100 Continue" in result.stderr


def test_curl_sends_a_chunked_upload(server) -> None:
    result = subprocess.run(
        [CURL, "-sS", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-",
         f"{server.url}/echo"],
        input=b"streamed from stdin", capture_output=True, timeout=60,
    )
    assert result.stdout == b"streamed from stdin"


def test_curl_reuses_one_connection_for_several_urls(server) -> None:
    result = _curl("-v", f"{server.url}/hello", f"{server.url}/hello", f"{server.url}/pid")
    assert result.stdout.startswith(b"Hello, World!Hello, World!")
    assert b"Re-using existing connection" in result.stderr or b"Reusing existing" in result.stderr
