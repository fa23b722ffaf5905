"""The server's configuration as frozen, typed objects.

Names follow IIS's applicationHost.config (`queueLength`, `maxProcesses`, `shutdownTimeLimit`,
`connectionTimeout`, ...), written in snake case; defaults are IIS's wherever IIS has the
concept (see shared/reference/iis-semantics.md). Python adds only what IIS cannot say: where
an application's callable is, and how many threads a worker runs.

Everything that reads configuration reads these objects; nothing reads the command line or
the XML file directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_POOL = "DefaultAppPool"
DEFAULT_SITE = "Default Web Site"


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """One application pool (`<applicationPools><add>`)."""

    name: str = DEFAULT_POOL
    queue_length: int = 1000  # queueLength: requests held before 503 QueueFull
    max_processes: int = 1  # processModel/@maxProcesses: > 1 is a web garden
    threads: int = 8  # Python: requests one worker runs at once (WSGI threads)
    prefetch: int | None = None  # Python: requests a worker holds beyond its threads (None: 3 x threads)
    startup_time_limit: float = 90.0  # processModel/@startupTimeLimit, seconds
    shutdown_time_limit: float = 90.0  # processModel/@shutdownTimeLimit, seconds
    python_path: tuple[str, ...] = ()  # Python: extra import paths for the workers

    @property
    def worker_prefetch(self) -> int:
        return 3 * self.threads if self.prefetch is None else self.prefetch


@dataclass(frozen=True, slots=True)
class ApplicationConfig:
    """One application (`<application path= applicationPool=>`), hosted by its pool."""

    path: str  # "/" or "/shop": the URL prefix, without a trailing slash
    pool: str
    app: str  # Python: "module:callable"


@dataclass(frozen=True, slots=True)
class Binding:
    """`<binding protocol="http" bindingInformation="IP:port:host" />`."""

    address: str  # "*" for every address, else an IP
    port: int
    host: str = ""  # "" matches any Host header


@dataclass(frozen=True, slots=True)
class SiteConfig:
    name: str
    id: int
    bindings: tuple[Binding, ...]
    applications: tuple[ApplicationConfig, ...]


@dataclass(frozen=True, slots=True)
class Limits:
    """Listener limits: HTTP.sys's registry parameters and the site/webLimits timeouts."""

    connection_timeout: float = 120.0  # site limits/@connectionTimeout: keep-alive idle
    header_wait_timeout: float = 120.0  # webLimits/@headerWaitTimeout (HTTP.sys: 2 min)
    max_field_length: int = 16384  # HTTP.sys MaxFieldLength: one header (or the URL)
    max_request_bytes: int = 16384  # HTTP.sys MaxRequestBytes: request line + headers


@dataclass(frozen=True, slots=True)
class ServerConfig:
    sites: tuple[SiteConfig, ...]
    pools: tuple[PoolConfig, ...]
    limits: Limits = field(default_factory=Limits)
    event_log: str | None = None  # JSON lines; None: standard error
    listen_address: str = "127.0.0.1"  # where a "*" binding listens (loopback by default)

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
) -> ServerConfig:
    """`webgarden run module:app`: one site, one application at "/", one pool."""
    pool = PoolConfig(
        queue_length=queue_length,
        max_processes=workers,
        threads=threads,
        prefetch=prefetch,
        shutdown_time_limit=shutdown_time_limit,
    )
    site = SiteConfig(
        name=DEFAULT_SITE,
        id=1,
        bindings=(Binding(address=host, port=port),),
        applications=(ApplicationConfig(path="/", pool=pool.name, app=app),),
    )
    return ServerConfig(
        sites=(site,), pools=(pool,), limits=limits or Limits(), event_log=event_log
    )
