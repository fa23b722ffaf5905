"""The server's configuration as frozen, typed objects.

Names follow IIS's applicationHost.config (`queueLength`, `maxProcesses`, `shutdownTimeLimit`,
`connectionTimeout`, ...), written in snake case; defaults are IIS 10's wherever IIS has the
concept (see shared/reference/iis-semantics.md). Python adds only what IIS cannot say: where
an application's callable is, and how many threads a worker runs.

Each field declares its XML attribute, type, range, default and help once, where it is
defined (config/schema.py explains how); pools live in config/pools.py and sites in
config/sites.py, and are re-exported here. Everything that reads configuration reads these
objects; nothing reads the command line or the XML file directly.
"""

# setting(), child() and collection() return dataclasses.field(), as field() itself does:

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from webgarden.config.pools import (
    ASGI_CONCURRENCY,
    DEFAULT_POOL,
    CpuConfig,
    EnvironmentVariable,
    FailureConfig,
    PeriodicRestartConfig,
    PoolConfig,
    RecyclingConfig,
)
from webgarden.config.schema import setting
from webgarden.config.sites import (
    ApplicationConfig,
    Binding,
    CustomField,
    CustomFieldsConfig,
    LogFileConfig,
    SiteConfig,
    SiteLimits,
    TraceFailedRequestsLoggingConfig,
    VirtualDirectoryConfig,
)
from webgarden.config.unenforced import Unsupported
from webgarden.config.values import INT_MAX, UINT_MAX, Bool, Choice, Integer, Text, TimeSpan
from webgarden.config.webserver import WebServerConfig

__all__ = [
    "DEFAULT_POOL", "DEFAULT_SITE", "ApplicationConfig", "Binding", "CentralCertProvider",
    "CpuConfig", "CustomField",
    "CustomFieldsConfig", "EnvironmentVariable", "FailureConfig", "Limits", "LogFileConfig",
    "PeriodicRestartConfig", "PoolConfig", "RecyclingConfig", "ServerConfig",
    "ServerRuntimeConfig", "SiteConfig", "SiteLimits", "TraceFailedRequestsLoggingConfig",
    "VirtualDirectoryConfig", "WebServerConfig", "single_app",
]

DEFAULT_SITE = "Default Web Site"

#: HTTP.sys's own header wait when webLimits/@headerWaitTimeout is 0 (its IIS default).
HTTP_SYS_HEADER_WAIT = 120.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Listener limits: `<webLimits>` and HTTP.sys's registry parameters."""

    connection_timeout: float = setting(
        "connectionTimeout", TimeSpan(), 120.0,
        help="Server-wide idle keep-alive limit (a site's <limits> may set its own).")
    header_wait_timeout: float = setting(
        "headerWaitTimeout", TimeSpan(0, 65535, zero_means=HTTP_SYS_HEADER_WAIT),
        HTTP_SYS_HEADER_WAIT,
        help="Time for a request head to arrive. IIS's default 00:00:00 means HTTP.sys's "
             "own, 2 minutes.")
    max_field_length: int = 16384  # HTTP.sys MaxFieldLength: one header (or the URL)
    max_request_bytes: int = 16384  # HTTP.sys MaxRequestBytes: request line + headers
    http2_max_concurrent_streams: int = 100  # HTTP.sys Http2MaxConcurrentStreams
    http2_cleartext: bool = setting(
        "http2Cleartext", Bool(), False, extension=True,
        help="Accept HTTP/2 by prior knowledge (h2c) on http bindings: a connection that "
             "opens with the HTTP/2 preface speaks HTTP/2. Off, as HTTP.sys (HTTP/2 only "
             "over TLS, by ALPN).")
    min_bytes_per_second: int = setting(
        "minBytesPerSecond", Integer(), 240,
        help="Slowest response send rate before the connection is closed.")
    max_global_bandwidth: int = setting(
        "maxGlobalBandwidth", Integer(exclude=(0, 1023)), UINT_MAX,
        help="Bytes per second for the whole server (HTTP.sys: >= 1024).")
    demand_start_threshold: int = setting(
        "demandStartThreshold", Integer(10, INT_MAX), INT_MAX,
        help="Most worker processes started at once.")
    dynamic_idle_threshold: int = setting(
        "dynamicIdleThreshold", Integer(0, 10000), 0,
        help="Percent of committed memory above which idle timeouts shorten; 0 disables.")
    dynamic_registration_threshold: int = setting(
        "dynamicRegistrationThreshold", Integer(0, UINT_MAX), 100,
        help="Above this many sites, a site is registered at its first request.")
    min_tls_version: str = setting(
        "minTlsVersion", Choice("1.2", "1.3"), "1.2", extension=True,
        help="webgarden: the oldest TLS version https bindings accept.")
    allow_underscores_in_headers: bool = setting(
        "allowUnderscoresInHeaders", Bool(), False, extension=True,
        help="Pass request headers whose names contain '_' to applications. Off (nginx's "
             "underscores_in_headers off): they are dropped and counted, since X_User and "
             "X-User would both reach a WSGI app as HTTP_X_USER.")


@dataclass(frozen=True, slots=True)
class CentralCertProvider:
    """`<centralCertProvider>` (IIS 8's central certificate store): one `<host>.pem` per
    host name in `physicalPath` (the chain, then the private key); `_.example.com.pem` is
    the wildcard `*.example.com`."""

    enabled: bool = setting("enabled", Bool(), False, help="Use the central store.")
    physical_path: str = setting("physicalPath", Text(), "",
                                 help="The directory of <host>.pem files.")
    user_name: str = setting("userName", Text(), "", help="Windows only: the share's user.")
    password: str = setting("password", Text(), "", secret=True,
                            help="Windows only: its password.")
    private_key_password: str = setting("privateKeyPassword", Text(), "", secret=True,
                                        help="Windows only: the .pfx files' password.")


@dataclass(frozen=True, slots=True)
class ServerRuntimeConfig:
    """`<system.webServer><serverRuntime>`."""

    enabled: bool = setting("enabled", Bool(), True, help="Serve requests.")
    app_concurrent_request_limit: int = setting(
        "appConcurrentRequestLimit", Integer(), 5000,
        help="Requests an application runs at once; more get 503.2.")
    max_request_entity_allowed: int = setting(
        "maxRequestEntityAllowed", Integer(), UINT_MAX, help="Largest request body, bytes.")
    upload_read_ahead_size: int = setting(
        "uploadReadAheadSize", Integer(0, INT_MAX), 49152,
        help="Request body read before the application is called, bytes.")
    alternate_host_name: str = setting("alternateHostName", Text(), "",
                                       help="Host name used in redirects when none is sent.")
    enable_nagling: bool = setting("enableNagling", Bool(), False,
                                   help="Leave Nagle's algorithm on for responses.")
    frequent_hit_threshold: int = setting(
        "frequentHitThreshold", Integer(1, INT_MAX), 2,
        help="Hits within frequentHitTimePeriod that make a URL worth caching.")
    frequent_hit_time_period: float = setting(
        "frequentHitTimePeriod", TimeSpan(), 10.0, help="The window for frequentHitThreshold.")
    authenticated_user_override: Literal["UseAuthenticatedUser", "UseWorkerProcessUser"] = \
        setting("authenticatedUserOverride",
                Choice("UseAuthenticatedUser", "UseWorkerProcessUser"), "UseAuthenticatedUser",
                help="Whose identity serves static files.")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    sites: tuple[SiteConfig, ...]
    pools: tuple[PoolConfig, ...]
    limits: Limits = field(default_factory=Limits)
    event_log: str | None = None  # JSON lines; None: standard error
    listen_address: str = "127.0.0.1"  # where a "*" binding listens (loopback by default)
    server_runtime: ServerRuntimeConfig = field(default_factory=ServerRuntimeConfig)
    source: str | None = None  # the file it was loaded from
    unsupported: tuple[Unsupported, ...] = ()  # settings it sets that nothing enforces yet
    web_server: WebServerConfig = field(default_factory=WebServerConfig)  # system.webServer
    central_certs: CentralCertProvider = field(default_factory=CentralCertProvider)

    def pool(self, name: str) -> PoolConfig:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(name)

    def applications_of(self, pool: str) -> list[ApplicationConfig]:
        """The applications a pool's workers load, in a stable order (their index on the wire)."""
        return [a for s in self.sites for a in s.applications if a.pool == pool]


def single_app(
    app: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    threads: int = 8,
    prefetch: int | None = None,
    queue_length: int = 1000,
    limits: Limits | None = None,
    event_log: str | None = None,
    shutdown_time_limit: float = 90.0,
    rapid_fail_max_crashes: int = 5,
    identity: str | None = None,
    spawn_method: str = "smart",
    log_directory: str | None = None,
    interface: str = "auto",
    lifespan: str = "auto",
    asgi_concurrency: int = ASGI_CONCURRENCY,
) -> ServerConfig:
    """`webgarden run module:app`: one site, one application at "/", one pool.

    `identity`: a user name (SpecificUser), "LocalSystem" (the server's own user), or None
    (IIS's default ApplicationPoolIdentity: `nobody` under a root server).
    `rapid_fail_max_crashes` 0 turns rapid-fail protection off."""
    if identity is None:
        identity_type, user_name = "ApplicationPoolIdentity", ""
    elif identity == "LocalSystem":
        identity_type, user_name = "LocalSystem", ""
    else:
        identity_type, user_name = "SpecificUser", identity
    failure = FailureConfig(
        rapid_fail_protection=rapid_fail_max_crashes > 0,
        rapid_fail_protection_max_crashes=max(rapid_fail_max_crashes, 1),
    )
    pool = PoolConfig(
        queue_length=queue_length,
        max_processes=workers,
        threads=threads,
        prefetch=prefetch,
        asgi_concurrency=asgi_concurrency,
        shutdown_time_limit=shutdown_time_limit,
        failure=failure,
        identity_type=identity_type,  # type: ignore[arg-type]
        user_name=user_name,
        start_mode="AlwaysRunning",
        spawn_method=spawn_method,  # type: ignore[arg-type]
    )
    site = SiteConfig(
        name=DEFAULT_SITE,
        id=1,
        bindings=(Binding(address=host, port=port),),
        applications=(ApplicationConfig(path="/", pool=pool.name, app=app,
                                        interface=interface,  # type: ignore[arg-type]
                                        lifespan=lifespan),),  # type: ignore[arg-type]
    )
    if log_directory is not None:
        site = dataclasses.replace(
            site, log_file=dataclasses.replace(site.log_file, directory=log_directory))
    return ServerConfig(
        sites=(site,), pools=(pool,), limits=limits or Limits(), event_log=event_log
    )
