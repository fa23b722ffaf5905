"""Static files and the response cache, end to end: the listener answers, no worker."""

from __future__ import annotations

import gzip
import os
import socket
from pathlib import Path

import httpx
import pytest

from harness import Client, raw_request

CONFIG = """<configuration>
  <system.applicationHost>
    <applicationPools><add name="P" startMode="AlwaysRunning" threads="2" /></applicationPools>
    <sites><site name="files" id="1">
      <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:" /></bindings>
      <application path="/" applicationPool="P" app="testapp:application">
        <virtualDirectory path="/" physicalPath="{root}" />
      </application>
    </site></sites>
  </system.applicationHost>
</configuration>
"""


@pytest.fixture
def files(start_server, shared_tmp: Path):
    root = shared_tmp / "www"
    (root / "docs").mkdir(parents=True)
    (root / "hello.txt").write_text("static hello\n")
    (root / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    (root / "style.css").write_text("body { color: green; }\n" * 400)
    (root / "docs" / "index.html").write_text("<h1>docs</h1>")
    (root / "empty").mkdir()
    (root / ".env").write_text("SECRET=1")
    (root / "app.py").write_text("print('source')")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (shared_tmp / "outside.txt").write_text("outside the root")
    (root / "escape.txt").symlink_to(shared_tmp / "outside.txt")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = root / "site.config"  # inside the root: it must never be served
    config.write_text(CONFIG.format(port=port, root=root))
    server = start_server("serve", "-c", str(config))
    server.base, server.root, server.port_ = f"http://127.0.0.1:{port}", root, port
    return server


def test_a_file_is_served_by_the_listener_with_validators(files) -> None:
    response = httpx.get(f"{files.base}/hello.txt")
    assert response.text == "static hello\n"
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["etag"].startswith('"') and "last-modified" in response.headers
    assert httpx.get(f"{files.base}/hello").text == "Hello, World!"  # not a file: the app


def test_conditional_requests_get_304_and_ranges_206_or_416(files) -> None:
    first = httpx.get(f"{files.base}/hello.txt")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert httpx.get(f"{files.base}/hello.txt", headers={"If-None-Match": etag}).status_code == 304
    assert httpx.get(f"{files.base}/hello.txt",
                     headers={"If-Modified-Since": modified}).status_code == 304
    part = httpx.get(f"{files.base}/hello.txt", headers={"Range": "bytes=7-11"})
    assert (part.status_code, part.text) == (206, "hello")
    assert part.headers["content-range"] == "bytes 7-11/13"
    bad = httpx.get(f"{files.base}/hello.txt", headers={"Range": "bytes=100-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == "bytes */13"
    stale = httpx.get(f"{files.base}/hello.txt",
                      headers={"Range": "bytes=0-3", "If-Range": '"not-the-etag"'})
    assert (stale.status_code, stale.text) == (200, "static hello\n")


def test_a_large_file_and_its_ranges_go_out_whole(files) -> None:
    data = (files.root / "big.bin").read_bytes()
    assert httpx.get(f"{files.base}/big.bin").content == data
    tail = httpx.get(f"{files.base}/big.bin", headers={"Range": "bytes=-1000"})
    assert tail.status_code == 206 and tail.content == data[-1000:]


@pytest.mark.parametrize("target", [
    b"/../outside.txt", b"/%2e%2e/outside.txt", b"/docs/..%2f..%2foutside.txt",
    b"/..\\outside.txt", b"/hello.txt%00.png", b"/escape.txt", b"/.env", b"/app.py",
    b"/__pycache__/x.pyc", b"/site.config", b"/%2eenv",
])
def test_nothing_outside_or_forbidden_is_ever_served(files, target: bytes) -> None:
    data = raw_request(files.port_, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    status = int(data.split(b" ", 2)[1])
    assert status in (400, 404), data[:200]
    assert b"outside the root" not in data and b"SECRET" not in data and b"print(" not in data


def test_default_documents_redirects_and_directories(files) -> None:
    redirect = httpx.get(f"{files.base}/docs")
    assert redirect.status_code == 301 and redirect.headers["location"] == "/docs/"
    assert httpx.get(f"{files.base}/docs/").text == "<h1>docs</h1>"
    assert httpx.get(f"{files.base}/empty/").status_code == 403  # no listing by default


def test_compressible_files_are_gzipped_for_clients_that_accept_it(files) -> None:
    raw = (files.root / "style.css").read_bytes()
    with socket.create_connection(("127.0.0.1", files.port_)) as sock:
        sock.sendall(b"GET /style.css HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n"
                     b"Connection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Encoding: gzip" in head and b"Vary: Accept-Encoding" in head
    assert gzip.decompress(body) == raw and len(body) < len(raw)
    assert httpx.get(f"{files.base}/style.css", headers={"Accept-Encoding": "identity"}).content == raw


def test_a_file_changed_on_disk_is_served_fresh_at_once(files) -> None:
    path = files.root / "hello.txt"
    for _ in range(4):  # past the frequent-hit threshold: now in the cache
        assert httpx.get(f"{files.base}/hello.txt").text == "static hello\n"
    stats = files.admin("cache", "stats", "--json")
    assert '"hits": ' in stats.stdout and '"stores": 1' in stats.stdout
    path.write_text("changed!\n")
    assert httpx.get(f"{files.base}/hello.txt").text == "changed!\n"


def test_dynamic_responses_are_cached_after_the_hit_threshold_only_when_allowed(files) -> None:
    with httpx.Client(base_url=files.base) as http:
        bodies = [http.get("/cached").text for _ in range(5)]
        # HTTP.sys: stored on its second request within 10 s; then the app is not called.
        assert bodies[:2] == ["call 1", "call 2"] and set(bodies[2:]) == {"call 2"}
        cookies = [http.get("/cached-cookie").text for _ in range(4)]
        assert cookies == ["call 1", "call 2", "call 3", "call 4"]  # Set-Cookie: never cached
        private = [http.get("/cached-private").text for _ in range(4)]
        assert private == ["call 1", "call 2", "call 3", "call 4"]
        authed = [http.get("/cached", headers={"Authorization": "Basic eDp5"}).text
                  for _ in range(2)]
        assert authed == ["call 3", "call 4"]  # credentials: never answered from the cache
    assert files.admin("cache", "flush").returncode == 0
    assert httpx.get(f"{files.base}/cached").text == "call 5"


def test_once_hot_in_the_cache_a_file_still_honours_every_request_header(files) -> None:
    with httpx.Client(base_url=files.base) as http:
        plain = [http.get("/hello.txt") for _ in range(6)]  # stored, then answered fast
        assert {r.text for r in plain} == {"static hello\n"}
        etag = plain[-1].headers["etag"]
        assert http.get("/hello.txt", headers={"If-None-Match": etag}).status_code == 304
        part = http.get("/hello.txt", headers={"Range": "bytes=0-5"})
        assert (part.status_code, part.text) == (206, "static")
        head = http.head("/hello.txt")
        assert head.status_code == 200 and head.content == b""
        closing = http.get("/hello.txt", headers={"Connection": "close"})
        assert closing.headers["connection"] == "close" and closing.text == "static hello\n"
    stats = files.admin("cache", "stats", "--json").stdout
    assert '"stores": 1' in stats


def test_dynamic_text_is_gzipped_by_the_worker_above_the_size_threshold(files) -> None:
    def get(path: str, encoding: str) -> tuple[bytes, bytes]:
        with socket.create_connection(("127.0.0.1", files.port_)) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\nAccept-Encoding: {encoding}\r\n"
                         "Connection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return head, body

    expected = b"All work and no play makes a dull garden.\n" * 100  # 4,200 bytes
    head, body = get("/text", "gzip")
    assert b"Content-Encoding: gzip" in head and b"Vary: Accept-Encoding" in head
    assert gzip.decompress(body) == expected and len(body) < 200
    head, body = get("/text", "identity")
    assert b"Content-Encoding" not in head and body == expected
    head, body = get("/text?lines=10", "gzip")  # 420 bytes: under minFileSizeForComp
    assert b"Content-Encoding" not in head and len(body) == 420


def test_a_streamed_dynamic_response_is_gzipped_piece_by_piece(files) -> None:
    client = Client(files.port_)
    expected = b"".join(f"part {i}\n".encode() for i in range(200))
    client.send(b"GET /stream?n=200 HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n")
    status, headers, body = client.read_response()
    assert (status, headers["content-encoding"], headers["vary"]) == (200, "gzip",
                                                                    "Accept-Encoding")
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    assert gzip.decompress(body) == expected
    client.send(b"GET /stream?n=200 HTTP/1.1\r\nHost: a\r\n\r\n")  # same connection
    status, headers, body = client.read_response()
    assert "content-encoding" not in headers and body == expected
    client.close()


@pytest.mark.parametrize("how", ["rewrite", "rename over", "delete"])
def test_a_hot_file_is_fresh_at_once_however_it_changes(files, how: str) -> None:
    """Hot files are watched (inotify), not stat'ed per hit: every way of changing one is
    seen by the very next request on the same connection."""
    path = files.root / "hot.txt"
    path.write_text("before\n")
    client = Client(files.port_)
    request = b"GET /hot.txt HTTP/1.1\r\nHost: a\r\n\r\n"
    for _ in range(5):  # stored, then answered on the fast path, then without the parser
        client.send(request)
        assert client.read_response()[2] == b"before\n"
    if how == "rewrite":
        path.write_text("after!\n")
    elif how == "rename over":
        (files.root / "hot.tmp").write_text("after!\n")
        os.replace(files.root / "hot.tmp", path)
    else:
        path.unlink()
    client.send(request)
    status, _, body = client.read_response()
    assert (status, body) == ((404, body) if how == "delete" else (200, b"after!\n"))
    client.close()
