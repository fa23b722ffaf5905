"""The applicationHost.config loader: defaults, value formats, defaults elements, collections."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from config_documents import POOL, document, site
from webgarden.config import ConfigErrors, load, loads
from webgarden.config.loader import Configuration
from webgarden.config.model import (
    Binding,
    Limits,
    LogFileConfig,
    PoolConfig,
    ServerRuntimeConfig,
    SiteLimits,
)
from webgarden.config.schema import MISSING, rows
from webgarden.config.values import format_timespan, parse_timespan

# IIS 10's defaults, copied from shared/reference/iis-semantics.md §1-2 (not from the code).
IIS_POOL_DEFAULTS = {
    "queue_length": 1000, "auto_start": True, "start_mode": "OnDemand",
    "managed_runtime_version": "", "managed_pipeline_mode": "Integrated",
    "identity_type": "ApplicationPoolIdentity", "load_user_profile": False,
    "set_profile_environment": True, "logon_type": "LogonBatch", "idle_timeout": 20 * 60.0,
    "idle_timeout_action": "Terminate", "max_processes": 1, "pinging_enabled": True,
    "ping_interval": 30.0, "ping_response_time": 90.0, "startup_time_limit": 90.0,
    "shutdown_time_limit": 90.0, "log_event_on_process_model": {"IdleTimeout"},
    "threads": 8, "prefetch": None, "python_path": (), "environment_variables": (),
}
IIS_RECYCLING_DEFAULTS = {
    "disallow_overlapping_rotation": False, "disallow_rotation_on_config_change": False,
    "log_event_on_recycle": {"Time", "Requests", "Schedule", "Memory", "IsapiUnhealthy",
                             "OnDemand", "ConfigChange", "PrivateMemory"},
}
IIS_PERIODIC_RESTART_DEFAULTS = {
    "time": 29 * 3600.0, "requests": 0, "memory": 0, "private_memory": 0, "schedule": (),
}
IIS_FAILURE_DEFAULTS = {
    "rapid_fail_protection": True, "rapid_fail_protection_interval": 300.0,
    "rapid_fail_protection_max_crashes": 5, "load_balancer_capabilities": "HttpLevel",
    "orphan_worker_process": False,
}
IIS_CPU_DEFAULTS = {
    "limit": 0, "action": "NoAction", "reset_interval": 300.0, "smp_affinitized": False,
    "smp_processor_affinity_mask": 4294967295, "smp_processor_affinity_mask2": 4294967295,
    "processor_group": 0, "numa_node_assignment": "MostAvailableMemory",
    "numa_node_affinity_mode": "Soft",
}
IIS_SITE_LIMITS = {"max_bandwidth": 4294967295, "max_connections": 4294967295,
                   "connection_timeout": 120.0, "max_url_segments": 32}
IIS_LOG_FILE = {"log_format": "W3C", "period": "Daily", "truncate_size": 20971520,
                "local_time_rollover": False, "enabled": True, "max_log_line_length": 65536}
IIS_WEB_LIMITS = {"connection_timeout": 120.0, "min_bytes_per_second": 240,
                  "max_global_bandwidth": 4294967295, "demand_start_threshold": 2147483647,
                  "dynamic_idle_threshold": 0, "dynamic_registration_threshold": 100}
IIS_SERVER_RUNTIME = {"enabled": True, "app_concurrent_request_limit": 5000,
                      "max_request_entity_allowed": 4294967295, "upload_read_ahead_size": 49152,
                      "enable_nagling": False, "frequent_hit_threshold": 2,
                      "frequent_hit_time_period": 10.0}


def _matches(obj: object, expected: dict[str, object]) -> None:
    for name, value in expected.items():
        assert getattr(obj, name) == value, name


def test_a_minimal_file_gets_iis_10_defaults_everywhere() -> None:
    config = loads(document())
    pool, = config.pools
    _matches(pool, IIS_POOL_DEFAULTS)
    _matches(pool.recycling, IIS_RECYCLING_DEFAULTS)
    _matches(pool.recycling.periodic_restart, IIS_PERIODIC_RESTART_DEFAULTS)
    _matches(pool.failure, IIS_FAILURE_DEFAULTS)
    _matches(pool.cpu, IIS_CPU_DEFAULTS)
    _matches(config.sites[0].limits, IIS_SITE_LIMITS)
    _matches(config.sites[0].log_file, IIS_LOG_FILE)
    _matches(config.limits, IIS_WEB_LIMITS)
    _matches(config.server_runtime, IIS_SERVER_RUNTIME)
    assert "Referer" in config.sites[0].log_file.log_ext_file_flags  # IIS 8.0+
    assert config.sites[0].applications[0].interface == "auto"


def test_python_defaults_are_the_schema_defaults() -> None:
    config = loads(document())
    assert config.pools[0] == replace(PoolConfig(), name="P")
    assert (config.limits, config.server_runtime) == (Limits(), ServerRuntimeConfig())
    assert config.sites[0].limits == SiteLimits() and config.sites[0].log_file == LogFileConfig()


def test_header_wait_timeout_zero_means_http_sys_two_minutes() -> None:
    config = loads(document(host_extra='<webLimits headerWaitTimeout="00:00:00" />'))
    assert config.limits.header_wait_timeout == 120.0
    config = loads(document(host_extra='<webLimits headerWaitTimeout="00:00:10" />'))
    assert config.limits.header_wait_timeout == 10.0


def test_max_processes_zero_is_one_per_numa_node_which_is_one() -> None:
    pools = '<add name="P"><processModel maxProcesses="0" /></add>'
    assert loads(document(pools)).pools[0].max_processes == 1


@pytest.mark.parametrize(("text", "seconds"), [
    ("00:00:30", 30.0), ("00:20:00", 1200.0), ("01:30:00", 5400.0),
    ("29:00:00", 104400.0), ("720:00:00", 2592000.0), ("1.00:00:00", 86400.0),
    ("1.02:03:04", 93784.0), ("1:02:03:04", 93784.0), ("30.00:00:00", 2592000.0),
    ("00:00:01.5", 1.5), ("00:00:00.0000001", 1e-7), ("0:0:5", 5.0),
])
def test_time_spans_are_read_in_every_iis_form(text: str, seconds: float) -> None:
    assert parse_timespan(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [
    "30", "", "1:2", "00:60:00", "00:00:60", "1.24:00:00", "-00:00:01", "1.2.3",
    "00:00:00.12345678", "00:00", "aa:bb:cc", " 00:00:30",
])
def test_malformed_time_spans_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="time span"):
        parse_timespan(text)


@pytest.mark.parametrize(("seconds", "text"), [
    (30.0, "00:00:30"), (104400.0, "1.05:00:00"), (1.5, "00:00:01.5"), (0.0, "00:00:00"),
])
def test_time_spans_are_written_as_iis_writes_them(seconds: float, text: str) -> None:
    assert format_timespan(seconds) == text
    assert parse_timespan(text) == seconds


def test_every_pool_attribute_is_read() -> None:
    pools = """<add name="Shop" queueLength="50" autoStart="false" startMode="AlwaysRunning"
        managedPipelineMode="classic" threads="4" prefetch="2" pythonPath="lib;../vendor:src">
      <processModel identityType="SpecificUser" userName="shop" password="s3cret"
          idleTimeout="1.00:00:00" maxProcesses="3" pingingEnabled="FALSE" pingInterval="00:00:05"
          pingResponseTime="00:00:20" startupTimeLimit="00:00:10" shutdownTimeLimit="00:00:15" />
      <recycling disallowOverlappingRotation="true" logEventOnRecycle="Time, Schedule">
        <periodicRestart time="1.00:00:00" requests="1000" memory="1024" privateMemory="2048">
          <schedule><add value="03:00:00" /><add value="15:30:00" /></schedule>
        </periodicRestart>
      </recycling>
      <failure rapidFailProtection="false" rapidFailProtectionInterval="00:10:00"
          rapidFailProtectionMaxCrashes="3" loadBalancerCapabilities="TcpLevel"
          orphanWorkerProcess="true" orphanActionExe="dump" orphanActionParams="%1%" />
      <cpu limit="50000" action="KillW3wp" resetInterval="00:01:00" />
      <environmentVariables><add name="MODE" value="prod" /></environmentVariables>
    </add>"""
    sites = site(apps='<application path="/" applicationPool="Shop" app="m:app" />')
    config = loads(document(pools, sites), "/etc/webgarden/shop.config")
    pool = config.pool("Shop")
    assert (pool.queue_length, pool.auto_start, pool.start_mode) == (50, False, "AlwaysRunning")
    assert pool.managed_pipeline_mode == "Classic"  # enums in any case, kept as IIS spells them
    assert (pool.threads, pool.prefetch, pool.worker_prefetch) == (4, 2, 2)
    assert pool.python_path == ("/etc/webgarden/lib", "/etc/vendor", "/etc/webgarden/src")
    assert (pool.identity_type, pool.user_name, pool.password) == ("SpecificUser", "shop",
                                                                   "s3cret")
    assert "s3cret" not in repr(pool)
    assert (pool.idle_timeout, pool.max_processes, pool.pinging_enabled) == (86400.0, 3, False)
    assert (pool.ping_interval, pool.ping_response_time) == (5.0, 20.0)
    assert (pool.startup_time_limit, pool.shutdown_time_limit) == (10.0, 15.0)
    assert pool.recycling.disallow_overlapping_rotation
    assert pool.recycling.log_event_on_recycle == {"Time", "Schedule"}
    restart = pool.recycling.periodic_restart
    assert (restart.time, restart.requests, restart.memory, restart.private_memory) == (
        86400.0, 1000, 1024, 2048)
    assert restart.schedule == (3 * 3600.0, 15.5 * 3600.0)
    failure = pool.failure
    assert (failure.rapid_fail_protection, failure.rapid_fail_protection_interval,
            failure.rapid_fail_protection_max_crashes) == (False, 600.0, 3)
    assert (failure.load_balancer_capabilities, failure.orphan_worker_process,
            failure.orphan_action_exe, failure.orphan_action_params) == (
        "TcpLevel", True, "dump", "%1%")
    assert (pool.cpu.limit, pool.cpu.action, pool.cpu.reset_interval) == (50000, "KillW3wp", 60.0)
    assert pool.environment == {"MODE": "prod"}


def test_bindings_are_split_into_address_port_and_host() -> None:
    sites = """<site name="s" id="1"><bindings>
      <binding protocol="HTTP" bindingInformation="*:80:" />
      <binding protocol="http" bindingInformation=":8080:Shop.Example" />
      <binding protocol="http" bindingInformation="10.0.0.1:8081:*.example.com" />
      <binding protocol="http" bindingInformation="[::1]:8082:" />
    </bindings><application path="/" applicationPool="P" app="m:app" /></site>"""
    bindings = loads(document(sites=sites)).sites[0].bindings
    assert bindings == (
        Binding("*", 80), Binding("*", 8080, "shop.example"),
        Binding("10.0.0.1", 8081, "*.example.com"), Binding("::1", 8082),
    )


def test_application_pool_defaults_fill_in_what_a_pool_leaves_out() -> None:
    pools = """
      <applicationPoolDefaults queueLength="500" threads="2">
        <processModel idleTimeout="00:05:00" maxProcesses="2" />
        <environmentVariables>
          <add name="A" value="1" /><add name="B" value="2" />
        </environmentVariables>
      </applicationPoolDefaults>
      <add name="P" threads="16"><processModel maxProcesses="4" /></add>
      <add name="Q"><environmentVariables><remove name="a" /></environmentVariables></add>"""
    p, q = loads(document(pools)).pools
    assert (p.queue_length, p.threads, p.idle_timeout, p.max_processes) == (500, 16, 300.0, 4)
    assert (q.queue_length, q.threads, q.max_processes) == (500, 2, 2)
    assert p.environment == {"A": "1", "B": "2"} and q.environment == {"B": "2"}


def test_site_and_application_defaults_nest_from_sites_to_site() -> None:
    sites = """
      <siteDefaults>
        <limits connectionTimeout="00:00:45" /><logFile period="Hourly" />
      </siteDefaults>
      <applicationDefaults applicationPool="P" interface="wsgi" />
      <virtualDirectoryDefaults physicalPath="/srv/default" />
      <site name="a" id="1">
        <bindings><binding protocol="http" bindingInformation="*:8080:a" /></bindings>
        <application path="/" app="a:app"><virtualDirectory path="/" /></application>
      </site>
      <site name="b" id="2">
        <bindings><binding protocol="http" bindingInformation="*:8080:b" /></bindings>
        <limits maxConnections="10" />
        <applicationDefaults applicationPool="Q" />
        <application path="/" app="b:app" />
        <application path="/p" applicationPool="P" app="b:app" />
      </site>"""
    a, b = loads(document(POOL + '<add name="Q" />', sites)).sites
    assert (a.applications[0].pool, a.applications[0].interface) == ("P", "wsgi")
    assert a.applications[0].virtual_directories[0].physical_path == "/srv/default"
    assert [(x.path, x.pool, x.interface) for x in b.applications] == [
        ("/", "Q", "wsgi"), ("/p", "P", "wsgi")]
    assert (a.limits.connection_timeout, a.log_file.period) == (45.0, "Hourly")
    assert (b.limits.connection_timeout, b.limits.max_connections) == (45.0, 10)


def test_an_application_without_a_pool_runs_in_default_app_pool() -> None:
    sites = site(apps='<application path="/" app="m:app" />')
    config = loads(document('<add name="DefaultAppPool" />', sites))
    assert config.sites[0].applications[0].pool == "DefaultAppPool"


def test_pool_names_match_in_any_case_and_applications_get_the_pools_spelling() -> None:
    sites = site(apps='<application path="/" applicationPool="shoppool" app="m:app" />')
    config = loads(document('<add name="ShopPool" />', sites))
    assert config.sites[0].applications[0].pool == "ShopPool"
    assert len(config.applications_of("ShopPool")) == 1


def test_clear_drops_inherited_and_earlier_items() -> None:
    sites = """
      <siteDefaults><bindings><binding protocol="http" bindingInformation="*:80:" /></bindings>
      </siteDefaults>
      <site name="s" id="1">
        <bindings>
          <binding protocol="http" bindingInformation="*:79:" />
          <clear />
          <binding protocol="http" bindingInformation="*:81:" />
        </bindings>
        <application path="/" applicationPool="P" app="m:app" />
      </site>
      <site name="t" id="2">
        <bindings><binding protocol="http" bindingInformation="*:82:" /></bindings>
        <application path="/" applicationPool="P" app="m:app" />
      </site>"""
    s, t = loads(document(sites=sites)).sites
    assert [b.port for b in s.bindings] == [81]
    assert [b.port for b in t.bindings] == [80, 82]


def test_system_web_server_is_read_for_server_runtime_and_otherwise_skipped() -> None:
    web = """<system.webServer>
      <serverRuntime frequentHitThreshold="5" frequentHitTimePeriod="00:00:20"
                     appConcurrentRequestLimit="100" />
      <caching enabled="true"><profiles><add extension=".png" policy="CacheUntilChange" />
      </profiles></caching>
    </system.webServer>"""
    runtime = loads(document(root_extra=web)).server_runtime
    assert (runtime.frequent_hit_threshold, runtime.frequent_hit_time_period,
            runtime.app_concurrent_request_limit) == (5, 20.0, 100)


def test_load_reads_a_file_and_resolves_python_path_against_its_directory(
        tmp_path: Path) -> None:
    path = tmp_path / "conf" / "app.config"
    path.parent.mkdir()
    path.write_text(document('<add name="P" pythonPath="lib" />'), encoding="utf-8")
    config = load(path)
    assert config.source == str(path)
    assert config.pools[0].python_path == (str(tmp_path / "conf" / "lib"),)


def test_loads_accepts_bytes_in_the_declared_encoding() -> None:
    text = '<?xml version="1.0" encoding="iso-8859-1"?>\n' + document(
        sites=site(name="Café"))
    assert loads(text.encode("iso-8859-1")).sites[0].name == "Café"


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors, match="cannot read"):
        load(tmp_path / "absent.config")


def test_the_example_multisite_configuration_loads() -> None:
    root = Path(__file__).resolve().parent.parent
    config = load(root / "examples" / "multisite.config")
    assert [s.name for s in config.sites] == ["Demo", "Tests", "Everything else"]
    assert {(b.address, b.port) for s in config.sites for b in s.bindings} == {
        ("127.0.0.1", 8080)}
    assert [b.host for s in config.sites for b in s.bindings] == [
        "demo.example.test", "tests.example.test", "*.example.test"]
    assert [p.name for p in config.pools] == ["DemoPool", "AppsPool"]
    assert [a.app for a in config.applications_of("DemoPool")] == [
        "webgarden.demo:application"] * 2
    assert len(config.applications_of("AppsPool")) == 2
    assert config.pool("AppsPool").python_path == (str(root / "tests" / "apps"),)
    assert (root / "tests" / "apps" / "testapp.py").exists()


def test_every_default_is_a_value_its_own_attribute_accepts() -> None:
    for row in rows(Configuration, "configuration"):
        kind, default = row.setting.kind, row.setting.default
        if default is not MISSING and default is not None:
            assert kind.parse(kind.format(default)) == default, row.path


def test_only_webgarden_s_own_attributes_are_marked_as_extensions() -> None:
    extensions = {r.path for r in rows(Configuration, "configuration") if r.setting.extension}
    pools = "configuration/system.applicationHost/applicationPools/add"
    app = "configuration/system.applicationHost/sites/site/application"
    assert extensions == {f"{pools}/@threads", f"{pools}/@prefetch", f"{pools}/@pythonPath",
                          f"{pools}/@spawnMethod",
                          f"{pools}/@executionTimeout",
                          f"{pools}/@asgiConcurrency", f"{app}/@lifespan",
                          f"{app}/@app", f"{app}/@interface",
                          "configuration/system.applicationHost/webLimits/@minTlsVersion",
                          "configuration/system.applicationHost/webLimits"
                          "/@allowUnderscoresInHeaders",
                          "configuration/system.applicationHost/webLimits/@http2Cleartext",
                          "configuration/system.webServer/webSocket/@pingTimeout",
                          "configuration/system.webServer/security/access"
                          "/@clientCertificateAuthorities"}
