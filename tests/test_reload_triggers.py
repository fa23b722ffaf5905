"""A reload goes through the pool's one configuration path (`AppPool.apply`), which re-arms
what the configuration drives: a limit a reload adds is enforced, a schedule it removes is
gone. Real server, real reloads (SIGHUP after rewriting the file)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx

from harness import free_port

CONFIG = """<configuration><system.applicationHost>
    <applicationPools>
      <add name="P" startMode="AlwaysRunning" threads="2">
        <recycling><periodicRestart time="00:00:00" {periodic}>{schedule}</periodicRestart>
        </recycling>
      </add>
    </applicationPools>
    <sites><site name="s" id="1">
      <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:" /></bindings>
      <application path="/" applicationPool="P" app="testapp:application" />
    </site></sites>
</system.applicationHost></configuration>
"""


class _Site:
    def __init__(self, start_server, tmp_path: Path, periodic: str = "", schedule: str = ""
                 ) -> None:
        self.port = free_port()
        self.path = tmp_path / "reload.config"
        self.write(periodic, schedule)
        self.server = start_server("serve", "-c", str(self.path))
        self.server.wait_event(lambda e: e["event"] == "worker.ready")

    def write(self, periodic: str = "", schedule: str = "") -> None:
        self.path.write_text(CONFIG.format(port=self.port, periodic=periodic, schedule=schedule))

    def reload(self, periodic: str = "", schedule: str = "") -> int:
        """Rewrite the file and reload; the index of the `config.applied` event. (Saving
        the file may reload it too: the SIGHUP then finds it unchanged.)"""
        mark = len(self.server.events())
        self.write(periodic, schedule)
        self.server.signal(signal.SIGHUP)
        self.server.wait_event(lambda e: e["event"] == "config.applied", after=mark)
        return mark

    def triggers(self) -> list[str]:
        result = self.server.admin("list", "apppools", "--json")
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout)[0]["triggers"])


def test_a_reload_that_adds_a_private_memory_limit_recycles_the_pool_over_it(
        start_server, tmp_path) -> None:
    site = _Site(start_server, tmp_path)
    assert site.triggers() == []
    mark = site.reload(periodic='privateMemory="150000"')
    assert site.triggers() == ["privateMemory 150000 KB"]
    server = site.server
    server.wait_event(lambda e: e["event"] == "worker.ready", after=mark)  # ConfigChange
    with httpx.Client(base_url=f"http://127.0.0.1:{site.port}", timeout=30) as http:
        assert http.get("/grow?mb=200").text == "grown"
    event = server.wait_event(lambda e: e["event"] == "pool.recycle"
                              and e["reason"] == "PrivateMemory", after=mark)
    assert event["iis_event"] == 5117 and event["measured_kb"] > 150000


def test_a_reload_that_removes_a_schedule_leaves_no_timer_behind(start_server, tmp_path) -> None:
    schedule = '<schedule><add value="03:00:00" /><add value="15:30:00" /></schedule>'
    site = _Site(start_server, tmp_path, schedule=schedule)
    assert site.triggers() == ["schedule 03:00:00", "schedule 15:30:00"]
    site.reload(schedule='<schedule><add value="15:30:00" /></schedule>')
    assert site.triggers() == ["schedule 15:30:00"]
    site.reload()
    assert site.triggers() == []
    # A removed limit goes too, and one a reload sets is armed once, not once per reload.
    site.reload(periodic='requests="1000"')
    site.reload(periodic='requests="2000"')
    assert site.triggers() == ["requests 2000"]
