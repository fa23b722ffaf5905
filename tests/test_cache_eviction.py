"""The response cache at its memory cap, end to end: a real server, real sockets.

`<caching maxCacheSize="1">` is one MB: the cache turns it into 1 << 20 bytes (cache.py,
CacheSettings.from_config), charging each entry its serialized response plus
ENTRY_OVERHEAD. Six distinct 240,000-byte files make entries of about 240.6 KB each, so
four fit and a fifth must evict. Everything observed comes from outside the process: the
response bodies, and the counters `webgarden cache stats` reads over the control socket
(a hit adds one to `hits`, a miss one to `misses`, a store one to `stores`, an eviction
one to `evictions`). Each step waits for its response, then asks for the counters: the
listener counts and stores before it writes the response, so nothing here sleeps.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import Client, ServerProcess
from webgarden.admin.control import call
from webgarden.listener.cache import ENTRY_OVERHEAD

CAP_MB = 1
CAP = CAP_MB * 1024 * 1024
BODY = 240_000  # under maxResponseSize (262144) with its head; 4 entries fit in 1 MB, 5 do not
FILES = [f"/f{i}.bin" for i in range(6)]

# OnDemand: no worker is started, every request here is a file the listener answers.
CONFIG = """<configuration>
  <system.applicationHost>
    <applicationPools><add name="P" startMode="OnDemand" /></applicationPools>
    <sites><site name="files" id="1">
      <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:" /></bindings>
      <application path="/" applicationPool="P" app="testapp:application">
        <virtualDirectory path="/" physicalPath="{root}" />
      </application>
    </site></sites>
  </system.applicationHost>
  <system.webServer>
    <serverRuntime frequentHitThreshold="2" frequentHitTimePeriod="00:01:00" />
    <caching maxCacheSize="{cap_mb}" />
  </system.webServer>
</configuration>
"""


class Site:
    """One keep-alive connection to the server, and its cache counters after each request."""

    def __init__(self, server: ServerProcess, port: int, bodies: dict[str, bytes]) -> None:
        self.server, self.bodies = server, bodies
        self.client = Client(port)
        self.min_entry = BODY + ENTRY_OVERHEAD  # what each entry is charged at least
        self.last = self.stats()
        self.log: list[tuple[str, str]] = []  # (path, "hit" | "miss"), for failure messages

    def stats(self) -> dict[str, int]:
        result: Any = call(str(self.server.control), {"verb": "stats", "object": "cache"})
        return dict(result)

    def get(self, path: str, coding: str = "identity") -> dict[str, int]:
        """GET `path`, check the whole body, check the cap; the counters' change."""
        accept = "" if coding == "identity" else f"Accept-Encoding: {coding}\r\n"
        self.client.send(f"GET {path} HTTP/1.1\r\nHost: files\r\n{accept}\r\n".encode())
        status, headers, body = self.client.read_response()
        assert status == 200, (path, status, headers)
        assert headers.get("content-encoding", "identity") == coding, (path, headers)
        if coding == "gzip":
            body = gzip.decompress(body)
        assert body == self.bodies[path], f"{path}: wrong body ({len(body)} bytes)"
        now = self.stats()
        delta = {name: now[name] - self.last[name] for name in now}
        self.last = now
        assert now["bytes"] <= CAP, (path, now)
        assert now["entries"] * self.min_entry <= now["bytes"], now
        assert delta["hits"] + delta["misses"] == 1, (path, delta)  # one lookup a request
        self.log.append((path, "hit" if delta["hits"] else "miss"))
        return delta

    def hit(self, path: str, coding: str = "identity") -> dict[str, int]:
        delta = self.get(path, coding)
        assert delta["hits"] == 1 and delta["stores"] == 0, (path, delta, self.log)
        return delta

    def miss(self, path: str, stored: bool, evicted: int = 0, coding: str = "identity"
             ) -> dict[str, int]:
        delta = self.get(path, coding)
        assert delta["misses"] == 1, (path, delta, self.log)
        assert delta["stores"] == int(stored), (path, delta, self.log)
        assert delta["evictions"] == evicted, (path, delta, self.log)
        return delta

    def cache(self, path: str, evicted: int = 0, coding: str = "identity") -> None:
        """Two requests (frequentHitThreshold): the first is not stored, the second is."""
        self.miss(path, stored=False, coding=coding)
        self.miss(path, stored=True, evicted=evicted, coding=coding)


@pytest.fixture
def site(start_server, shared_tmp: Path) -> Iterator[Site]:
    root = shared_tmp / "www"
    root.mkdir()
    bodies = {}
    for path in FILES:
        bodies[path] = os.urandom(BODY)
        (root / path.lstrip("/")).write_bytes(bodies[path])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = shared_tmp / "applicationHost.config"
    config.write_text(CONFIG.format(port=port, root=root, cap_mb=CAP_MB))
    server = start_server("serve", "-c", str(config))
    site = Site(server, port, bodies)
    yield site
    site.client.close()


def test_the_least_recently_used_file_is_evicted_at_max_cache_size(site: Site) -> None:
    f0, f1, f2, f3, f4, f5 = FILES
    assert site.last["entries"] == 0
    for path in (f0, f1, f2, f3):  # LRU order now f0 f1 f2 f3
        site.cache(path)
        site.hit(path)  # a hit: this connection's later requests take the fast path
    assert site.last["entries"] == 4 and site.last["evictions"] == 0
    assert site.last["bytes"] > 4 * BODY  # the bodies are charged, not just counted

    site.hit(f0)  # f0 is used again: f1 f2 f3 f0; f1, though stored later, is the oldest
    site.hit(f0)
    site.cache(f4, evicted=1)  # f1 goes: f2 f3 f0 f4
    assert site.last["entries"] == 4 and site.last["bytes"] <= CAP

    site.hit(f0)  # the recently used survived: f2 f3 f4 f0
    site.miss(f1, stored=False)  # the evicted one: a miss (fast path too), served whole
    site.miss(f1, stored=True, evicted=1)  # back in, and the oldest (f2) goes: f3 f4 f0 f1
    site.miss(f2, stored=False)
    site.hit(f3)  # f4 f0 f1 f3
    site.cache(f5, evicted=1)  # f4 goes: f0 f1 f3 f5
    site.miss(f4, stored=False)
    for path in (f0, f1, f3, f5):
        site.hit(path)
    assert site.last["entries"] == 4 and site.last["evictions"] == 3

    # The command line reads the same counters from the same control socket.
    shown = site.server.admin("cache", "stats", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == site.stats()


def test_evicting_one_variant_of_a_file_keeps_its_other_variants(site: Site,
                                                                   shared_tmp: Path) -> None:
    text = (b"All work and no play makes a dull garden.\n" * 5000)[:200_000]
    (shared_tmp / "www" / "t.txt").write_bytes(text)
    site.bodies["/t.txt"] = text
    site.min_entry = ENTRY_OVERHEAD  # the gzip variant is small
    site.cache("/t.txt")
    site.hit("/t.txt")  # the identity variant, also remembered by the fast path
    site.cache("/t.txt", coding="gzip")  # the gzip variant: LRU order t t.gz
    for path in FILES[:3]:  # t t.gz f0 f1 f2: about 925 KB
        site.cache(path)
    site.cache(FILES[3], evicted=1)  # the identity variant goes: t.gz f0 f1 f2 f3
    assert site.last["entries"] == 5
    unchanged = site.miss("/t.txt", stored=False)  # evicted: a miss, served whole
    assert unchanged["invalidations"] == 0 and site.last["entries"] == 5  # nothing changed
    site.hit("/t.txt", coding="gzip")
