"""What changed between two configurations, and so what a running server must do. Sans-IO.

Rules (WAS on a configuration change, iis-semantics.md §1.3):
- Pools are matched by name. A pool in the new configuration only is added (start it), one
  in the old only is removed (stop it).
- A pool is changed when any of its settings differs or its applications do (one added,
  removed, reordered, or any of its own settings, `app` included). A changed pool is
  recycled (reason ConfigChange): new workers read the new configuration, the old ones
  drain. `recycling/@disallowRotationOnConfigChange="true"` keeps the running workers for
  settings changes, as in IIS; a webgarden worker loads its applications when it starts, so
  a change to the pool's applications recycles regardless.
- Bindings are compared per site; endpoints are the (address, port) pairs the listener
  listens on, which open and close with them.
- Routing changed: some (binding, application path) now leads elsewhere, or an
  application's position in its pool (its index on the wire) moved; the listener rebuilds
  its router.
- Web server changed: a `<system.webServer>` section other than serverRuntime (caching,
  static content, default documents, request filtering, compression) differs; the listener
  rebuilds its static-file rules and flushes its response cache. An application's virtual
  directories (which files it serves) count as routing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from webgarden.config.model import Binding, PoolConfig, ServerConfig

SiteBinding = tuple[str, Binding]  # (site name, binding)


@dataclass(frozen=True, slots=True)
class PoolChange:
    name: str
    changed: tuple[str, ...]  # PoolConfig field names, and "applications"
    recycle: bool  # False: settings changed, but disallowRotationOnConfigChange keeps workers


@dataclass(frozen=True, slots=True)
class ConfigDiff:
    pools_added: tuple[str, ...] = ()
    pools_removed: tuple[str, ...] = ()
    pools_changed: tuple[str, ...] = ()  # names; pool_changes says what and whether to recycle
    pool_changes: tuple[PoolChange, ...] = ()
    sites_added: tuple[str, ...] = ()
    sites_removed: tuple[str, ...] = ()
    sites_changed: tuple[str, ...] = ()
    bindings_added: tuple[SiteBinding, ...] = ()
    bindings_removed: tuple[SiteBinding, ...] = ()
    endpoints_added: tuple[tuple[str, int], ...] = ()
    endpoints_removed: tuple[tuple[str, int], ...] = ()
    routing_changed: bool = False
    limits_changed: bool = False  # webLimits or serverRuntime
    web_server_changed: bool = False  # caching, staticContent, requestFiltering, ...

    @property
    def empty(self) -> bool:
        return self == ConfigDiff()

    def __bool__(self) -> bool:
        return not self.empty

    @property
    def pools_to_recycle(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.pool_changes if c.recycle)


def diff(old: ServerConfig, new: ServerConfig) -> ConfigDiff:
    old_pools = {p.name: p for p in old.pools}
    new_pools = {p.name: p for p in new.pools}
    old_sites = {s.name: s for s in old.sites}
    new_sites = {s.name: s for s in new.sites}
    old_bindings = _bindings(old)
    new_bindings = _bindings(new)
    old_endpoints = {(b.address, b.port) for _, b in old_bindings}
    new_endpoints = {(b.address, b.port) for _, b in new_bindings}
    changes = tuple(
        change for name, pool in new_pools.items() if name in old_pools
        if (change := _pool_change(old, new, old_pools[name], pool)) is not None
    )
    return ConfigDiff(
        pools_added=tuple(n for n in new_pools if n not in old_pools),
        pools_removed=tuple(n for n in old_pools if n not in new_pools),
        pools_changed=tuple(c.name for c in changes),
        pool_changes=changes,
        sites_added=tuple(n for n in new_sites if n not in old_sites),
        sites_removed=tuple(n for n in old_sites if n not in new_sites),
        sites_changed=tuple(n for n, s in new_sites.items()
                            if n in old_sites and old_sites[n] != s),
        bindings_added=tuple(b for b in new_bindings if b not in old_bindings),
        bindings_removed=tuple(b for b in old_bindings if b not in new_bindings),
        endpoints_added=tuple(sorted(new_endpoints - old_endpoints)),
        endpoints_removed=tuple(sorted(old_endpoints - new_endpoints)),
        routing_changed=_routes(old) != _routes(new),
        limits_changed=(old.limits, old.server_runtime) != (new.limits, new.server_runtime),
        web_server_changed=old.web_server != new.web_server,
    )


def _pool_change(old: ServerConfig, new: ServerConfig, before: PoolConfig, after: PoolConfig
                 ) -> PoolChange | None:
    changed = [f.name for f in fields(PoolConfig)
               if getattr(before, f.name) != getattr(after, f.name)]
    apps_changed = old.applications_of(before.name) != new.applications_of(after.name)
    if apps_changed:
        changed.append("applications")
    if not changed:
        return None
    keep = after.recycling.disallow_rotation_on_config_change and not apps_changed
    return PoolChange(after.name, tuple(changed), recycle=not keep)


def _bindings(config: ServerConfig) -> list[SiteBinding]:
    return [(site.name, b) for site in config.sites for b in site.bindings]


def _routes(config: ServerConfig) -> frozenset[object]:
    """Everything the listener's router is built from."""
    routes: set[object] = set()
    for site in config.sites:
        bindings = frozenset((b.address, b.port, b.host.lower()) for b in site.bindings)
        apps = frozenset(
            (a.path, a.pool, config.applications_of(a.pool).index(a), a.virtual_directories)
            for a in site.applications
        )
        routes.add((site.name, bindings, apps))
    return frozenset(routes)
