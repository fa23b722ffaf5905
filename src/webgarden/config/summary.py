"""A readable summary of a configuration, for `webgarden config check`."""

from __future__ import annotations

from webgarden.config.model import Binding, PoolConfig, ServerConfig
from webgarden.config.values import format_bytes, format_timespan


def summary(config: ServerConfig) -> str:
    apps = [a for s in config.sites for a in s.applications]
    head = (f"{_count(len(config.sites), 'site')}, {_count(len(apps), 'application')}, "
            f"{_count(len(config.pools), 'pool')}")
    lines = [f"{head} ({config.source})" if config.source else head, "", "Sites"]
    for site in config.sites:
        bindings = ", ".join(_binding(b) for b in site.bindings)
        lines.append(f"  {site.name} (id {site.id}): {bindings}")
        width = max((len(a.path) for a in site.applications), default=1)
        for app in site.applications:
            interface = "" if app.interface == "auto" else f" ({app.interface})"
            lines.append(f"    {app.path:<{width}}  -> {app.pool}: {app.app}{interface}")
    lines += ["", "Pools"]
    for pool in config.pools:
        lines.append(f"  {pool.name}: {_pool(pool, len(config.applications_of(pool.name)))}")
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _binding(binding: Binding) -> str:
    address = f"[{binding.address}]" if ":" in binding.address else binding.address
    return f"{binding.protocol} {address}:{binding.port}:{binding.host}"


def _pool(pool: PoolConfig, applications: int) -> str:
    identity: str = pool.identity_type
    if identity == "SpecificUser":
        identity += f" {pool.user_name}"
    parts = [
        f"{_count(pool.max_processes, 'worker')} x {pool.threads} threads",
        f"queue {pool.queue_length}",
        f"identity {identity}",
        _recycle(pool),
        _count(applications, "application") if applications else "no applications",
    ]
    return ", ".join(parts)


def _recycle(pool: PoolConfig) -> str:
    restart = pool.recycling.periodic_restart
    when = [f"every {format_timespan(restart.time)}"] if restart.time else []
    when += [f"at {format_timespan(t)}" for t in restart.schedule]
    when += [f"after {restart.requests} requests"] if restart.requests else []
    # IIS gives memory limits in KB; shown in the command line's one spelling of a size.
    when += [f"over {format_bytes(restart.memory * 1024)} virtual memory"] if restart.memory else []
    when += ([f"over {format_bytes(restart.private_memory * 1024)} private memory"]
             if restart.private_memory else [])
    return f"recycle {' or '.join(when)}" if when else "no periodic recycle"
