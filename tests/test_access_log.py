"""Site logs (W3C Extended) and the HTTPERR log, end to end: a real server writes them, the
tests read them. Lines are written within a second (the listener's tick flushes them);
the tests wait on the files, woken by inotify, never by sleeping."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import _INOTIFY, free_port, raw_request

CONFIG = """<configuration>
  <system.applicationHost>
    <applicationPools><add name="P" startMode="AlwaysRunning" threads="2" /></applicationPools>
    <sites>
      <siteDefaults><logFile directory="{logs}" {log_attributes} /></siteDefaults>
      <site name="logged" id="3">
        <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:" /></bindings>
        <application path="/" applicationPool="P" app="testapp:application">
          <virtualDirectory path="/" physicalPath="{root}" />
        </application>
      </site>
    </sites>
  </system.applicationHost>
</configuration>
"""
EVERY_FIELD = ("Date, Time, ClientIP, UserName, SiteName, ComputerName, ServerIP, Method, "
               "UriStem, UriQuery, HttpStatus, Win32Status, BytesSent, BytesRecv, TimeTaken, "
               "ServerPort, UserAgent, Cookie, Referer, ProtocolVersion, Host, HttpSubStatus")



class Logged:
    """A running server whose site (id 3) logs to `logs`."""

    def __init__(self, start_server: Callable[..., Any], tmp: Path, root: Path,
                 log_attributes: str = "", logs: Path | None = None) -> None:
        self.logs = logs or tmp / "logs"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "applicationHost.config"
        self.config.write_text(CONFIG.format(logs=self.logs, port=self.port, root=root,
                                             log_attributes=log_attributes))
        self.server = start_server("serve", "-c", str(self.config))

    @property
    def site_log(self) -> Path:
        """Today's (UTC) file of the site; a test around midnight may see tomorrow's."""
        return self.logs / "W3SVC3" / datetime.now(UTC).strftime("u_ex%y%m%d.log")

    @property
    def httperr_log(self) -> Path:
        return self.logs / "HTTPERR" / "httperr1.log"

    def entries(self, path: Path | None = None) -> list[dict[str, str]]:
        """The file's entries as {field: value}, by its latest #Fields line."""
        path = path or self.site_log
        if not path.exists():
            return []
        fields: list[str] = []
        found = []
        for line in path.read_bytes().decode().split("\r\n"):
            if line.startswith("#Fields: "):
                fields = line[len("#Fields: "):].split(" ")
            elif line and not line.startswith("#"):
                values = line.split(" ")
                assert len(values) == len(fields), (fields, line)
                found.append(dict(zip(fields, values, strict=True)))
        return found

    def wait_entries(self, predicate: Callable[[dict[str, str]], bool], count: int = 1,
                     path: Path | None = None, timeout: float = 10) -> list[dict[str, str]]:
        """The entries that match, once there are `count` of them."""
        path = path or self.site_log
        return wait_for(lambda: [e for e in self.entries(path) if predicate(e)],
                        lambda found: len(found) >= count, path, timeout)


def wait_for(get: Callable[[], Any], done: Callable[[Any], bool], path: Path,
             timeout: float = 10) -> Any:
    """`get()` once `done` says so. Wakes when `path` is written (inotify); while it does
    not exist yet, checks again every 50 ms, up to `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {value!r}")
        watched = path if path.exists() else next(p for p in path.parents if p.exists())
        _INOTIFY.wait(watched, 0.05)


@pytest.fixture
def root(shared_tmp: Path) -> Path:
    www = shared_tmp / "www"
    www.mkdir()
    (www / "hello.txt").write_text("static hello\n")
    (www / "app.config").write_text("<secret/>")
    return www


@pytest.fixture
def logged(start_server, tmp_path: Path, root: Path) -> Logged:
    return Logged(start_server, tmp_path, root, f'logExtFileFlags="{EVERY_FIELD}"')


class KeepAlive:
    """One keep-alive connection: requests out, responses (head and body) back, as bytes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def exchange(self, request: bytes) -> bytes:
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(rest) < length:
            rest += self._recv()
        self.buffer = rest[length:]
        return head + b"\r\n\r\n" + rest[:length]

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        assert data, "the server closed the connection"
        return data

    def close(self) -> None:
        self.sock.close()


def get(path: str, agent: str, extra: str = "") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {agent}\r\n{extra}"
            "\r\n").encode()


def _one(logged: Logged, agent: str) -> dict[str, str]:
    """The one entry of the requests tagged with User-Agent `agent` (spaces become +)."""
    tag = agent.replace(" ", "+")
    (entry,) = logged.wait_entries(lambda e: e["cs(User-Agent)"] == tag)
    return entry


def test_a_site_log_appears_in_its_w3svc_folder_with_the_iis_header(
        start_server, tmp_path: Path, root: Path) -> None:
    site = Logged(start_server, tmp_path, root)  # the default field set
    before = datetime.now(UTC).replace(microsecond=0)
    response = httpx.get(f"{site.base}/hello?x=1",
                         headers={"User-Agent": "Mozilla/5.0 (X11; Linux) test",
                                  "Referer": "http://example.com/a b"})
    assert response.text == "Hello, World!"
    (entry,) = site.wait_entries(lambda e: e["cs-uri-stem"] == "/hello")
    text = site.site_log.read_bytes().decode()
    lines = text.split("\r\n")
    assert lines[0] == "#Software: webgarden/0.1.0" and lines[1] == "#Version: 1.0"
    started = datetime.strptime(lines[2], "#Date: %Y-%m-%d %H:%M:%S").replace(
        tzinfo=UTC)
    assert before <= started <= datetime.now(UTC)
    assert lines[3] == (
        "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
        "cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken")
    when = datetime.strptime(f"{entry['date']} {entry['time']}", "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=UTC)
    assert before <= when <= datetime.now(UTC)  # UTC
    assert entry["s-ip"] == entry["c-ip"] == "127.0.0.1"
    assert (entry["cs-method"], entry["cs-uri-query"], entry["s-port"]) == \
        ("GET", "x=1", str(site.port))
    assert entry["cs-username"] == "-"
    assert entry["cs(User-Agent)"] == "Mozilla/5.0+(X11;+Linux)+test"  # spaces become +
    assert entry["cs(Referer)"] == "http://example.com/a+b"
    assert (entry["sc-status"], entry["sc-substatus"], entry["sc-win32-status"]) == \
        ("200", "0", "0")
    assert int(entry["time-taken"]) >= 0
    assert os.listdir(site.logs / "W3SVC3") == [site.site_log.name]


def test_each_kind_of_response_is_logged_once_with_its_status_and_bytes(logged: Logged) -> None:
    client = KeepAlive(logged.port)
    worker = get("/hello", "kind worker")
    static = get("/hello.txt", "kind static")
    answers = {"kind worker": (worker, client.exchange(worker)),
               "kind static": (static, client.exchange(static))}
    for i in range(4):  # past frequentHitThreshold (2): from the third on, cache hits
        request = get("/hello.txt", f"kind cached {i}")
        answers[f"kind cached {i}"] = (request, client.exchange(request))
    client.close()
    hidden = get("/app.config", "kind denied", "Connection: close\r\n")
    answers["kind denied"] = (hidden, raw_request(logged.port, hidden))
    stats = json.loads(logged.server.admin("cache", "stats", "--json").stdout)
    assert stats["hits"] >= 3  # kind cached 1, 2 and 3; the last two on the fast path
    expected = {"kind worker": ("/hello", "200", "0"), "kind static": ("/hello.txt", "200", "0"),
                "kind denied": ("/app.config", "404", "7")}  # request filtering: 404.7
    expected.update({f"kind cached {i}": ("/hello.txt", "200", "0") for i in range(4)})
    for agent, (request, response) in answers.items():
        entry = _one(logged, agent)
        assert (entry["cs-uri-stem"], entry["sc-status"], entry["sc-substatus"]) == \
            expected[agent], agent
        assert response.startswith(b"HTTP/1.1 " + entry["sc-status"].encode())
        assert int(entry["sc-bytes"]) == len(response), agent
        assert int(entry["cs-bytes"]) == len(request), agent
        assert entry["sc-win32-status"] == "0"
        assert entry["s-sitename"] == "W3SVC3" and entry["s-computername"] == \
            socket.gethostname()
        assert (entry["cs-version"], entry["cs-host"]) == ("HTTP/1.1", "127.0.0.1")
    assert len(logged.entries()) == len(answers)  # nothing else, nothing twice


def test_a_request_repeated_on_one_connection_logs_each_ones_own_bytes(logged: Logged) -> None:
    client = KeepAlive(logged.port)
    sent = []
    for path in ("/hello", "/hello.txt"):  # a worker's answer, and a file (then cache hits)
        for pad in range(6):  # the same request but for a header's length
            request = get(path, "kind repeat", f"X-Pad: {'p' * pad}\r\n")
            sent.append((path, request, client.exchange(request)))
    client.close()
    entries = logged.wait_entries(lambda e: e["cs(User-Agent)"] == "kind+repeat", len(sent))
    assert len(entries) == len(sent)
    for entry, (path, request, response) in zip(entries, sent, strict=True):
        assert (entry["cs-uri-stem"], entry["sc-status"]) == (path, "200")
        assert (int(entry["cs-bytes"]), int(entry["sc-bytes"])) == (len(request), len(response))


def test_a_304_and_a_request_with_a_body_are_logged_with_their_bytes(logged: Logged) -> None:
    etag = httpx.get(f"{logged.base}/hello.txt").headers["etag"]
    conditional = get("/hello.txt", "kind 304", f"If-None-Match: {etag}\r\nConnection: close\r\n")
    response = raw_request(logged.port, conditional)
    assert response.startswith(b"HTTP/1.1 304 ")
    entry = _one(logged, "kind 304")
    assert (entry["sc-status"], int(entry["sc-bytes"])) == ("304", len(response))
    body = b"x" * 10000
    post = (b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: kind post\r\n"
            b"Connection: close\r\nContent-Length: 10000\r\n\r\n" + body)
    answer = raw_request(logged.port, post)
    assert answer.endswith(body)
    entry = _one(logged, "kind post")
    assert (entry["cs-method"], int(entry["cs-bytes"]), int(entry["sc-bytes"])) == \
        ("POST", len(post), len(answer))


def test_the_listeners_own_error_pages_go_to_the_site_log_and_to_httperr(logged: Logged) -> None:
    assert logged.server.admin("stop", "apppool", "P").returncode == 0
    request = get("/hello", "kind disabled", "Connection: close\r\n")
    response = raw_request(logged.port, request)
    assert response.startswith(b"HTTP/1.1 503 ")
    entry = _one(logged, "kind disabled")
    assert (entry["sc-status"], int(entry["sc-bytes"])) == ("503", len(response))
    (line,) = wait_for(lambda: httperr_entries(logged), bool, logged.httperr_log)
    assert line[6:] == ["HTTP/1.1", "GET", "/hello", "503", "3", "Disabled", "P"]


def httperr_entries(logged: Logged) -> list[list[str]]:
    path = logged.httperr_log
    if not path.exists():
        return []
    lines = path.read_bytes().decode().split("\r\n")
    return [line.split(" ") for line in lines if line and not line.startswith("#")]


def test_a_malformed_request_and_an_unknown_host_are_logged_in_httperr_only(
        logged: Logged) -> None:
    bad = raw_request(logged.port, b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n")
    assert bad.startswith(b"HTTP/1.1 400 ")
    lost = raw_request(logged.port, b"GET /where HTTP/1.1\r\n\r\n")  # HTTP/1.1 needs a Host
    assert lost.startswith(b"HTTP/1.1 400 ")
    lines = wait_for(lambda: httperr_entries(logged), lambda found: len(found) >= 2,
                     logged.httperr_log)
    text = logged.httperr_log.read_bytes().decode()
    assert text.startswith("#Software: webgarden/0.1.0\r\n#Version: 1.0\r\n#Date: ")
    assert ("#Fields: date time c-ip c-port s-ip s-port cs-version cs-method cs-uri sc-status "
            "s-siteid s-reason s-queuename\r\n") in text
    by_reason = {line[11]: line for line in lines}
    malformed, hostname = by_reason["BadRequest"], by_reason["Hostname"]
    assert malformed[2] == "127.0.0.1" and int(malformed[3]) > 0
    assert malformed[4:6] == ["127.0.0.1", str(logged.port)]
    assert malformed[6:] == ["HTTP/1.1", "GET", "/x", "400", "-", "BadRequest", "-"]
    assert hostname[6:] == ["HTTP/1.1", "GET", "/where", "400", "-", "Hostname", "-"]
    assert len(lines) == 2
    events = [e for e in logged.server.events() if e["event"] == "httperr"]
    assert sorted(e["reason"] for e in events) == ["BadRequest", "Hostname"]
    # Neither reached the site: its log has nothing (it may not even exist yet).
    httpx.get(f"{logged.base}/hello", headers={"User-Agent": "kind after"})
    _one(logged, "kind after")
    assert [e["cs-uri-stem"] for e in logged.entries()] == ["/hello"]


def test_a_request_its_client_abandons_is_logged_once_as_dropped(logged: Logged) -> None:
    sock = socket.create_connection(("127.0.0.1", logged.port))
    sock.sendall(get("/hold?tag=gone", "kind gone"))
    wait_for(lambda: logged.server.stderr, lambda text: "holding gone" in text,
             logged.server.stderr_path)
    sock.close()
    logged.server.wait_event(lambda e: e["event"] == "request.dropped")
    entry = _one(logged, "kind gone")
    assert (entry["cs-uri-stem"], entry["sc-status"], entry["sc-win32-status"]) == \
        ("/hold", "-", "64")
    (line,) = wait_for(lambda: httperr_entries(logged), bool, logged.httperr_log)
    assert line[6:] == ["HTTP/1.1", "GET", "/hold?tag=gone", "-", "3", "Connection_Dropped",
                        "P"]
    for pid in logged.server.worker_pids():
        os.kill(pid, signal.SIGUSR1)  # let the held request go: the answer is dropped
    httpx.get(f"{logged.base}/hello", headers={"User-Agent": "kind after"})
    _one(logged, "kind after")
    assert len(logged.entries()) == 2


def test_a_fully_sent_response_is_logged_as_sent_when_its_client_closes_before_the_end(
        logged: Logged) -> None:
    # /drip sends every byte of its Content-Length, then holds its stream open (the END
    # frame comes only after SIGUSR1): the client has the whole answer and leaves first.
    sock = socket.create_connection(("127.0.0.1", logged.port), timeout=10)
    sock.sendall(get("/drip?n=3", "kind dripped"))
    data = b""
    while b"drop 2\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection early"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"drop 0\ndrop 1\ndrop 2\n"
    wait_for(lambda: logged.server.stderr, lambda text: "dripped" in text,
             logged.server.stderr_path)
    sock.close()
    entry = _one(logged, "kind dripped")
    assert (entry["sc-status"], entry["sc-win32-status"]) == ("200", "0")
    assert int(entry["sc-bytes"]) == len(data)
    for pid in logged.server.worker_pids():
        os.kill(pid, signal.SIGUSR1)  # the stream ends now; nothing more is logged for it
    httpx.get(f"{logged.base}/hello", headers={"User-Agent": "kind after"})
    _one(logged, "kind after")
    assert len(logged.entries()) == 2
    assert not [line for line in httperr_entries(logged) if "Connection_Dropped" in line]


def test_a_response_the_app_breaks_off_is_logged_as_cut_by_the_server(logged: Logged) -> None:
    broken = raw_request(logged.port, get("/error-after-start", "kind broken"))
    assert broken.startswith(b"HTTP/1.1 200 ")  # the head went out; the body never ended
    entry = _one(logged, "kind broken")
    assert (entry["sc-status"], entry["sc-win32-status"]) == ("200", "1236")
    assert int(entry["sc-bytes"]) == len(broken)
    (line,) = wait_for(lambda: httperr_entries(logged), bool, logged.httperr_log)
    assert line[6:] == ["HTTP/1.1", "GET", "/error-after-start", "200", "3",
                        "Connection_Abandoned_By_AppPool", "P"]


def test_lines_still_buffered_at_shutdown_are_written(logged: Logged) -> None:
    response = raw_request(logged.port, get("/hello", "kind last", "Connection: close\r\n"))
    assert response.startswith(b"HTTP/1.1 200 ")
    assert logged.server.stop() == 0
    assert [e["cs(User-Agent)"] for e in logged.entries()] == ["kind+last"]


def test_log_ext_file_flags_choose_the_fields(start_server, tmp_path: Path, root: Path) -> None:
    site = Logged(start_server, tmp_path, root,
                  'logExtFileFlags="TimeTaken, Host, Date, HttpStatus, UriStem, Cookie"')
    httpx.get(f"{site.base}/hello", headers={"Cookie": "a=1", "Host": "127.0.0.1"})
    site.wait_entries(lambda e: True)
    text = site.site_log.read_bytes().decode()
    assert "\r\n#Fields: date cs-uri-stem cs(Cookie) cs-host sc-status time-taken\r\n" in text
    (entry,) = site.entries()
    assert (entry["cs-uri-stem"], entry["cs(Cookie)"], entry["cs-host"], entry["sc-status"]) == \
        ("/hello", "a=1", "127.0.0.1", "200")


def test_a_reload_that_changes_the_fields_starts_a_new_header_in_the_same_file(
        start_server, tmp_path: Path, root: Path) -> None:
    site = Logged(start_server, tmp_path, root, 'logExtFileFlags="Date, UriStem, HttpStatus"')
    httpx.get(f"{site.base}/hello")
    site.wait_entries(lambda e: e["cs-uri-stem"] == "/hello")
    text = site.config.read_text().replace('"Date, UriStem, HttpStatus"',
                                           '"Date, Time, UriStem, UriQuery, BytesSent"')
    site.config.write_text(text)
    site.server.signal(signal.SIGHUP)
    site.server.wait_event(lambda e: e["event"] == "config.applied")
    response = raw_request(site.port, get("/hello?after=1", "x", "Connection: close\r\n"))
    (entry,) = site.wait_entries(lambda e: e.get("cs-uri-query") == "after=1")
    assert int(entry["sc-bytes"]) == len(response)
    fields = [line for line in site.site_log.read_bytes().decode().split("\r\n")
              if line.startswith("#Fields: ")]
    assert fields == ["#Fields: date cs-uri-stem sc-status",
                      "#Fields: date time cs-uri-stem cs-uri-query sc-bytes"]


def test_an_unwritable_log_directory_is_said_once_and_the_server_keeps_serving(
        start_server, tmp_path: Path, root: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the log directory should be")
    site = Logged(start_server, tmp_path, root, logs=blocker / "logs")
    for _ in range(3):
        assert httpx.get(f"{site.base}/hello").text == "Hello, World!"
    event = site.server.wait_event(lambda e: e["event"] == "log.unwritable")
    assert "W3SVC3" in event["file"] and event["error"]
    assert httpx.get(f"{site.base}/hello.txt").text == "static hello\n"
    bad = raw_request(site.port, b"NOT-HTTP\r\n\r\n")  # HTTPERR cannot be written either
    assert bad.startswith(b"HTTP/1.1 400 ")
    site.server.wait_event(lambda e: e["event"] == "log.unwritable" and "HTTPERR" in e["file"])
    assert httpx.get(f"{site.base}/hello").text == "Hello, World!"
    unwritable = [e for e in site.server.events() if e["event"] == "log.unwritable"]
    assert len(unwritable) == 2  # once per file, not once per line


def test_an_unimplemented_log_format_is_said_at_start(start_server, tmp_path: Path,
                                                      root: Path) -> None:
    site = Logged(start_server, tmp_path, root, 'logFormat="NCSA"')
    event = site.server.wait_event(lambda e: e["event"] == "log.format_unsupported")
    assert (event["site"], event["format"]) == ("logged", "NCSA")
    assert httpx.get(f"{site.base}/hello").text == "Hello, World!"
    assert not (site.logs / "W3SVC3").exists()


def test_a_size_rolled_file_moves_on_to_the_next_number_with_a_new_header(
        tmp_path: Path) -> None:
    from webgarden.listener.logfiles import RollingFile

    errors: list[str] = []
    (tmp_path / "httperr4.log").write_bytes(b"x" * 150)  # from an earlier run, full already
    rolling = RollingFile(str(tmp_path), lambda started: b"#H\r\n", sequence_prefix="httperr",
                          truncate_size=100, flush_entries=1,
                          on_error=lambda path, exc: errors.append(path))
    rolling.add(b"a" * 60 + b"\r\n", 1)
    rolling.add(b"b" * 60 + b"\r\n", 1)  # 5 is over 100 bytes now: the next line goes to 6
    rolling.add(b"c\r\n", 2)
    rolling.close()
    assert (tmp_path / "httperr5.log").read_bytes() == b"#H\r\n" + b"a" * 60 + b"\r\n" + \
        b"b" * 60 + b"\r\n"
    assert (tmp_path / "httperr6.log").read_bytes() == b"#H\r\nc\r\n"
    assert errors == []


def test_a_period_rolled_file_keeps_each_line_in_the_file_of_its_time(tmp_path: Path) -> None:
    from webgarden.listener import w3c
    from webgarden.listener.logfiles import RollingFile

    def name(second: int) -> str:
        return w3c.file_name("Hourly", time.gmtime(second))

    rolling = RollingFile(str(tmp_path), lambda started: b"#H %d\r\n" % started, name=name,
                          on_error=lambda path, exc: None)
    eleven = 1_700_000_000 - 1_700_000_000 % 3600 + 11 * 3600 - 1  # a second before 11:00
    rolling.add(b"before\r\n", eleven)
    rolling.add(b"after\r\n", eleven + 1)  # the hour turns: the buffer goes to the old file
    rolling.flush()
    before, after = name(eleven), name(eleven + 1)
    assert before != after
    assert (tmp_path / before).read_bytes() == b"#H %d\r\nbefore\r\n" % eleven
    assert (tmp_path / after).read_bytes() == b"#H %d\r\nafter\r\n" % (eleven + 1)


def test_run_log_dir_puts_the_logs_where_the_user_says(start_server, tmp_path: Path) -> None:
    logs = tmp_path / "my-logs"
    server = start_server("testapp:application", "--log-dir", str(logs))
    assert httpx.get(server.url + "/hello?via=run").status_code == 200
    site_log = logs / "W3SVC1" / f"u_ex{datetime.now(UTC):%y%m%d}.log"
    text = wait_for(lambda: site_log.read_text() if site_log.exists() else "",
                    lambda t: "/hello via=run" in t, site_log)
    assert " GET /hello via=run " in text


def test_identical_requests_answered_without_the_parser_stay_right(
        logged: Logged, root: Path) -> None:
    """A cache hit's exact bytes, repeated on its connection, are answered without parsing
    them again: still fresh after the file changes, and logged as themselves even when
    another request came between."""
    client = KeepAlive(logged.port)
    file_hit, other = get("/hello.txt", "kind same"), get("/hello", "kind same")
    bodies = [client.exchange(file_hit).partition(b"\r\n\r\n")[2] for _ in range(5)]
    assert set(bodies) == {b"static hello\n"}
    (root / "hello.txt").write_text("changed hello\n")
    assert client.exchange(file_hit).endswith(b"\r\n\r\nchanged hello\n")
    assert client.exchange(other).endswith(b"Hello, World!")
    assert client.exchange(file_hit).endswith(b"\r\n\r\nchanged hello\n")
    client.close()
    entries = logged.wait_entries(lambda e: e["cs(User-Agent)"] == "kind+same", 8)
    assert [e["cs-uri-stem"] for e in entries] == ["/hello.txt"] * 6 + ["/hello", "/hello.txt"]
    assert {int(e["cs-bytes"]) for e in entries if e["cs-uri-stem"] == "/hello.txt"} == {
        len(file_hit)}
