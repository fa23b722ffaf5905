"""The metabase end to end: many sites and pools on one port, reloads, identities."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness import APPS, ROOT, free_port, raw_request

CONFIG = """<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.applicationHost>
    <applicationPools>
      <add name="PoolA" queueLength="1000" threads="4">
        <processModel pingInterval="00:00:05" {identity_a} />
      </add>
      <add name="PoolB" threads="4" startMode="AlwaysRunning">
        <processModel maxProcesses="2" {identity_b} />
      </add>
    </applicationPools>
    <sites>
      <site name="shop" id="1">
        <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:shop.test" /></bindings>
        <application path="/" applicationPool="PoolA" app="siteapps:{shop_app}" />
        <application path="/api" applicationPool="PoolB" app="siteapps:api" />
      </site>
      <site name="blog" id="2">
        <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:blog.test" /></bindings>
        <application path="/" applicationPool="PoolA" app="siteapps:blog" />
      </site>
      <site name="wild" id="3">
        <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:*.wild.test" />{extra_binding}</bindings>
        <application path="/" applicationPool="PoolB" app="siteapps:admin" />
      </site>
    </sites>
  </system.applicationHost>
</configuration>
"""



def _write(path: Path, port: int, **overrides: str) -> None:
    values = {"shop_app": "shop", "identity_a": "", "identity_b": "", "extra_binding": "",
              "port": str(port)}
    values.update(overrides)
    text = CONFIG.format(**values)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)  # atomic: a watcher never sees half a file


@pytest.fixture
def site(start_server, tmp_path):
    port = free_port()
    config = tmp_path / "applicationHost.config"
    _write(config, port)
    server = start_server("serve", "-c", str(config))
    server.config_path, server.fixed_port = config, port
    return server


def _get(server, host: str, path: str = "/") -> dict:
    response = httpx.get(f"http://127.0.0.1:{server.fixed_port}{path}", headers={"Host": host})
    assert response.status_code == 200, (host, path, response.status_code, response.text)
    return response.json()


def test_every_request_lands_in_its_site_application_and_pool(site) -> None:
    shop = _get(site, "shop.test", "/cart")
    assert (shop["app"], shop["pool"], shop["script_name"], shop["path_info"]) == (
        "shop", "PoolA", "", "/cart")
    api = _get(site, "shop.test:80", "/api/orders")
    assert (api["app"], api["pool"], api["script_name"], api["path_info"]) == (
        "api", "PoolB", "/api", "/orders")
    assert _get(site, "SHOP.TEST", "/apis")["app"] == "shop"  # whole segments only
    blog = _get(site, "blog.test")
    assert (blog["app"], blog["pool"]) == ("blog", "PoolA")
    assert blog["pid"] == shop["pid"]  # one worker of PoolA loads both of its applications
    admin = _get(site, "x.wild.test")
    assert (admin["app"], admin["pool"]) == ("admin", "PoolB")
    assert _get(site, "deep.x.wild.test")["app"] == "admin"


def test_an_on_demand_pool_starts_its_worker_at_the_first_request(site) -> None:
    started = [e for e in site.events() if e["event"] == "worker.start"]
    assert {e["pool"] for e in started} == {"PoolB"}  # AlwaysRunning; PoolA is OnDemand
    assert _get(site, "blog.test")["pool"] == "PoolA"  # waits in the queue while it starts
    site.wait_event(lambda e: e["event"] == "pool.demand_start" and e["pool"] == "PoolA")


def test_an_unknown_host_gets_http_sys_invalid_hostname(site) -> None:
    data = raw_request(site.fixed_port, b"GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"<h2>Bad Request - Invalid Hostname</h2>" in data
    assert b"HTTP Error 400. The request hostname is invalid." in data


def test_a_web_garden_spreads_requests_over_its_workers(site) -> None:
    site.wait_event(lambda e: e["event"] == "worker.ready" and e["pool"] == "PoolB")
    pids: set[int] = set()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(10):
            pids |= {r["pid"] for r in pool.map(lambda _: _get(site, "a.wild.test"), range(16))}
            if len(pids) == 2:
                break
    assert len(pids) == 2


def _load(server, stop: threading.Event) -> list[int]:
    statuses = []
    hosts = ["shop.test", "blog.test", "a.wild.test"]
    with httpx.Client(base_url=f"http://127.0.0.1:{server.fixed_port}") as client:
        i = 0
        while not stop.is_set() or i < 30:
            try:
                statuses.append(client.get("/", headers={"Host": hosts[i % 3]}).status_code)
            except httpx.HTTPError:
                statuses.append(0)
            i += 1
            if i > 3000:
                break
    return statuses


def test_a_reload_recycles_only_the_changed_pool_without_a_failed_request(site) -> None:
    def ready_b() -> set[int]:
        return {e["pid"] for e in site.events()
                if e["event"] == "worker.ready" and e["pool"] == "PoolB"}

    first = site.wait_event(lambda e: e["event"] == "worker.ready" and e["pool"] == "PoolB")
    site.wait_event(lambda e: e["event"] == "worker.ready" and e["pool"] == "PoolB"
                    and e["pid"] != first["pid"])  # the web garden's second worker
    before_b = ready_b()
    stop = threading.Event()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(_load, site, stop) for _ in range(4)]
        _write(site.config_path, site.fixed_port, shop_app="shop_v2")
        site.signal(signal.SIGHUP)
        applied = site.wait_event(lambda e: e["event"] == "config.applied")
        assert applied["pools_recycled"] == ["PoolA"]
        site.wait_event(lambda e: e["event"] == "worker.ready" and e["pool"] == "PoolA",
                        after=site.events().index(applied))
        stop.set()
        statuses = [s for f in futures for s in f.result()]
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert _get(site, "shop.test")["app"] == "shop-v2"
    recycles = [e for e in site.events() if e["event"] == "pool.recycle"]
    assert [(e["pool"], e["reason"]) for e in recycles] == [("PoolA", "ConfigChange")]
    assert ready_b() == before_b  # PoolB's workers were never touched


def test_a_broken_file_is_refused_and_the_old_configuration_keeps_serving(site) -> None:
    text = site.config_path.read_text()
    site.config_path.write_text(text.replace('queueLength="1000"', 'queueLength="5"'))
    site.signal(signal.SIGHUP)
    rejected = site.wait_event(lambda e: e["event"] == "config.rejected")
    assert "queueLength" in rejected["error"] and "between 10 and 65535" in rejected["error"]
    assert ":5:" in rejected["error"]  # the line of the pool's <add>
    assert _get(site, "shop.test")["app"] == "shop"


def test_a_changed_file_is_reloaded_without_a_signal_and_new_bindings_listen(site) -> None:
    extra = free_port()
    keep = httpx.Client(base_url=f"http://127.0.0.1:{site.fixed_port}")  # an established connection
    assert keep.get("/", headers={"Host": "blog.test"}).status_code == 200
    _write(site.config_path, site.fixed_port,
           extra_binding=f'<binding protocol="http" bindingInformation="127.0.0.1:{extra}:" />')
    applied = site.wait_event(lambda e: e["event"] == "config.applied")
    assert f"127.0.0.1:{extra}" in applied["bindings"] and applied["pools_recycled"] == []
    assert httpx.get(f"http://127.0.0.1:{extra}/").json()["app"] == "admin"
    assert keep.get("/", headers={"Host": "blog.test"}).status_code == 200  # still the same one
    keep.close()


def test_config_check_prints_a_summary_or_every_error(tmp_path: Path) -> None:
    good = ROOT / "examples" / "multisite.config"
    result = subprocess.run([sys.executable, "-m", "webgarden", "config", "check", str(good)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Sites" in result.stdout and "Pools" in result.stdout
    bad = tmp_path / "bad.config"
    bad.write_text(CONFIG.format(shop_app="shop", identity_a="", identity_b="", extra_binding="",
                                 port="80").replace('threads="4"', 'thread="4"'))
    result = subprocess.run([sys.executable, "-m", "webgarden", "config", "check", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "bad.config:5:" in result.stderr and "did you mean threads?" in result.stderr


# -- identities (need root and useradd) ------------------------------------------------

USERS = ("wgtest_a", "wgtest_b")


def _ensure_users() -> None:
    if os.geteuid() != 0:
        pytest.skip("switching worker users needs the tests to run as root")
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not installed (apt-get install passwd)")
    for user in USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", user], check=True)


def test_workers_run_as_their_pools_user_and_cannot_read_each_others_files(
    start_server, tmp_path, shared_tmp
) -> None:
    _ensure_users()
    secret = shared_tmp / "b-only.txt"
    secret.write_text("for pool B only")
    b = pwd.getpwnam("wgtest_b")
    os.chown(secret, b.pw_uid, b.pw_gid)
    secret.chmod(0o600)
    port = free_port()
    config = tmp_path / "ids.config"
    _write(config, port, identity_a='identityType="SpecificUser" userName="wgtest_a"',
           identity_b='identityType="SpecificUser" userName="wgtest_b"')
    server = start_server("serve", "-c", str(config))
    server.fixed_port = port
    a_pid, b_pid = _get(server, "shop.test")["pid"], _get(server, "a.wild.test")["pid"]
    for pid, user in ((a_pid, "wgtest_a"), (b_pid, "wgtest_b")):
        status = Path(f"/proc/{pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(pwd.getpwnam(user).pw_uid)] * 4
    read_a = httpx.get(f"http://127.0.0.1:{port}/read?{secret}", headers={"Host": "shop.test"})
    read_b = httpx.get(f"http://127.0.0.1:{port}/read?{secret}", headers={"Host": "x.wild.test"})
    assert (read_a.status_code, read_b.status_code) == (403, 200)
    assert read_b.text == "for pool B only"


def test_a_root_server_never_runs_workers_as_root_by_default(site) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a root server switches users")
    info = _get(site, "shop.test")
    assert info["uid"] == pwd.getpwnam("nobody").pw_uid
    start = next(e for e in site.events() if e["event"] == "worker.start")
    assert start["user"] == "nobody"


def test_a_user_that_does_not_exist_is_a_clear_startup_error(tmp_path: Path) -> None:
    config = tmp_path / "nouser.config"
    _write(config, free_port(), identity_a='identityType="SpecificUser" userName="no_such_user_x"')
    result = subprocess.run([sys.executable, "-m", "webgarden", "serve", "-c", str(config),
                             "--control", str(tmp_path / "c.sock")],
                            capture_output=True, text=True, timeout=60, cwd=APPS)
    assert result.returncode == 2
    assert result.stderr.strip() == "webgarden: pool 'PoolA': no such user 'no_such_user_x'"
