"""Loading an applicationHost.config-style file into a ServerConfig. No sockets, no imports
of applications: the only I/O is `load` and `check` reading the file.

The file:

    <configuration>
      <system.applicationHost>
        <applicationPools> <add name=...> ... <applicationPoolDefaults> </applicationPools>
        <sites> <site name= id=> ... <siteDefaults> <applicationDefaults> ... </sites>
        <webLimits .../>
      </system.applicationHost>
      <system.webServer>            <serverRuntime>, and the sections of config/webserver.py
                                    (caching, staticContent, defaultDocument, directoryBrowse,
                                    security/requestFiltering, urlCompression, httpCompression);
                                    other sections (handlers, modules, ...) are skipped
    </configuration>

Anything else is an error. Stages: xmltree.parse (safe XML, line numbers) -> reader (schema,
values) -> builder (defaults, collections, keys) -> the cross-checks below, which need the
whole file:

- every application's pool exists;
- every site has a binding and a root application (`path="/"`), as IIS requires;
- no two sites share a binding (same IP, port and host);
- there is at least one site;
- `pythonPath` entries and relative `physicalPath`s are made relative to the file's
  directory.

All errors of all stages are collected; `load`/`loads` raise them together as ConfigErrors,
`check` returns them.
"""

# setting(), child() and collection() return dataclasses.field(), as field() itself does:
# ruff: noqa: RUF009

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from webgarden.config.builder import Builder
from webgarden.config.diff import ConfigDiff, diff
from webgarden.config.errors import ConfigError, ConfigErrors
from webgarden.config.model import (
    DEFAULT_POOL,
    CentralCertProvider,
    Limits,
    PoolConfig,
    ServerConfig,
    ServerRuntimeConfig,
    SiteConfig,
)
from webgarden.config.reader import Reader, Report
from webgarden.config.schema import child, collection, spec_of
from webgarden.config.summary import summary
from webgarden.config.unenforced import scan
from webgarden.config.webserver import WebServerConfig

if TYPE_CHECKING:  # xmltree pulls in xml.sax and urllib: imported when a file is parsed
    from webgarden.config.xmltree import Node

__all__ = ["ConfigDiff", "ConfigError", "ConfigErrors", "check", "diff", "load", "loads",
           "summary"]  # the whole API, as webgarden.config has it


@dataclass(frozen=True, slots=True)
class ApplicationHost:
    """`<system.applicationHost>`."""

    pools: tuple[PoolConfig, ...] = collection(
        "add", PoolConfig, wrapper="applicationPools", key=("name",),
        defaults="applicationPoolDefaults", noun="application pool",
        help="The application pools.")
    sites: tuple[SiteConfig, ...] = collection(
        "site", SiteConfig, wrapper="sites", key=("name",), unique=(("id",),),
        defaults="siteDefaults", noun="site", help="The sites.")
    web_limits: Limits = child("webLimits", Limits, help="Server-wide limits.")
    central_cert_provider: CentralCertProvider = child(
        "centralCertProvider", CentralCertProvider,
        help="The central certificate store (https bindings with sslFlags 2).")


@dataclass(frozen=True, slots=True)
class WebServer(WebServerConfig):
    """`<system.webServer>`: serverRuntime and WebServerConfig's sections; other sections
    (handlers, modules, httpErrors, ...) are skipped."""

    XML_OPEN: ClassVar[bool] = True

    server_runtime: ServerRuntimeConfig = child("serverRuntime", ServerRuntimeConfig,
                                                help="Request processing settings.")


@dataclass(frozen=True, slots=True)
class Configuration:
    """`<configuration>`, the root."""

    application_host: ApplicationHost = child("system.applicationHost", ApplicationHost,
                                              help="The server.")
    web_server: WebServer = child("system.webServer", WebServer, help="Request handling.")


def load(path: str | os.PathLike[str]) -> ServerConfig:
    """The configuration in `path`; ConfigErrors lists every problem found."""
    config, errors = _load_file(path)
    if errors or config is None:
        raise ConfigErrors(errors)
    return config


def loads(text: str | bytes, filename: str = "<string>", *, base_dir: str | None = None
          ) -> ServerConfig:
    """`load` for text in hand. Relative pythonPath entries are resolved against `base_dir`,
    else against `filename`'s directory when it is a real path, else left as written."""
    config, errors = _load_text(text, filename, base_dir)
    if errors or config is None:
        raise ConfigErrors(errors)
    return config


def check(path: str | os.PathLike[str]) -> list[ConfigError]:
    """Every problem in the file at `path`, in file order; [] if it loads."""
    return _load_file(path)[1]


def _load_file(path: str | os.PathLike[str]) -> tuple[ServerConfig | None, list[ConfigError]]:
    filename = os.fspath(path)
    try:
        data = Path(filename).read_bytes()
    except OSError as exc:
        return None, [ConfigError(f"cannot read: {exc.strerror or exc}", filename=filename)]
    config, errors = _load_text(data, filename, str(Path(filename).resolve().parent))
    return (replace(config, source=filename) if config else None), errors


def _load_text(text: str | bytes, filename: str, base_dir: str | None
               ) -> tuple[ServerConfig | None, list[ConfigError]]:
    if base_dir is None and not filename.startswith("<"):
        base_dir = os.path.dirname(filename) or "."
    from webgarden.config.xmltree import parse

    try:
        root = parse(text, filename)
    except ConfigError as exc:
        return None, [exc]
    report = Report(filename)
    if root.tag != "configuration":
        report.error(root, "the root element must be <configuration>")
        return None, report.errors
    parsed = Reader(report).element(root, spec_of(Configuration))
    builder = Builder(report)
    document: Configuration = builder.build(Configuration, parsed, {})
    host = document.application_host
    _cross_check(host, builder, report, _section(root))
    report.errors.sort(key=lambda e: e.line or 0)
    if report.errors:
        return None, report.errors
    pools = tuple(_resolve_paths(p, base_dir) for p in host.pools)
    sites = tuple(_resolve_physical_paths(s, base_dir) for s in _canonical_pools(host))
    web = document.web_server
    central = host.central_cert_provider
    if central.physical_path and base_dir is not None:
        central = replace(central, physical_path=os.path.normpath(
            os.path.join(base_dir, central.physical_path)))
    config = ServerConfig(sites=sites, pools=pools, limits=host.web_limits,
                          central_certs=central,
                          unsupported=scan(root, filename, Configuration),
                          server_runtime=web.server_runtime,
                          web_server=WebServerConfig(**{f.name: getattr(web, f.name)
                                                        for f in fields(WebServerConfig)}))
    return config, []


def _canonical_pools(host: ApplicationHost) -> tuple[SiteConfig, ...]:
    """Applications name their pool as the pool spells itself: IIS matches pool names in any
    case, the rest of webgarden compares them exactly."""
    names = {p.name.lower(): p.name for p in host.pools}
    return tuple(
        replace(site, applications=tuple(replace(a, pool=names[a.pool.lower()])
                                         for a in site.applications))
        for site in host.sites
    )


def _section(root: Node) -> Node:
    return next((n for n in root.children if n.tag == "system.applicationHost"), root)


def _resolve_paths(pool: PoolConfig, base_dir: str | None) -> PoolConfig:
    if not pool.python_path or base_dir is None:
        return pool
    paths = tuple(os.path.normpath(os.path.join(base_dir, p)) for p in pool.python_path)
    return replace(pool, python_path=paths)


def _resolve_physical_paths(site: SiteConfig, base_dir: str | None) -> SiteConfig:
    """A relative physicalPath is relative to the configuration file's directory."""
    if base_dir is None:
        return site
    apps = tuple(
        replace(app, virtual_directories=tuple(
            replace(v, physical_path=os.path.normpath(os.path.join(base_dir, v.physical_path)))
            if v.physical_path and not os.path.isabs(v.physical_path) else v
            for v in app.virtual_directories))
        for app in site.applications
    )
    return replace(site, applications=apps)


def _cross_check(host: ApplicationHost, builder: Builder, report: Report, section: Node) -> None:
    if not host.sites and not _any_site_written(section):
        report.error(section, "no <site> is defined: the server would serve nothing")
    pools = {p.name.lower() for p in host.pools}
    check_pools = PoolConfig not in builder.dropped  # else a reference may be to that one
    bound: dict[tuple[str, int, str], SiteConfig] = {}
    for site in host.sites:
        origin = builder.origin(site)
        if origin is not None and not origin.tainted:
            node = origin.parsed.node
            if not site.bindings:
                report.error(node, "the site has no <binding>: nothing can reach it")
            if not any(a.path == "/" for a in site.applications):
                report.error(node, 'the site has no root application (<application path="/">)')
        for app in site.applications if check_pools else ():
            _check_pool(app, pools, builder, report)
        for binding in site.bindings:
            _check_certificate(binding, host.central_cert_provider, builder, report)
            key = (binding.address, binding.port, binding.host.lower())
            first = bound.setdefault(key, site)
            where = builder.origin(binding)
            if first is not site and where is not None and not where.tainted:
                report.error(where.parsed.node, f"binding already used by site {first.name!r}",
                             "bindingInformation", where.parsed.node.attributes.get(
                                 "bindingInformation"))


def _check_certificate(binding: Any, central: CentralCertProvider, builder: Builder,
                       report: Report) -> None:
    """An https binding names where its certificate comes from: the central store (sslFlags
    2, with <centralCertProvider enabled>), or certificateHash and certificateStoreName."""
    where = builder.origin(binding)
    if not binding.https or where is None or where.tainted:
        return
    node = where.parsed.node
    if binding.central_store:
        if not (central.enabled and central.physical_path):
            report.error(node, "sslFlags asks for the central certificate store, but "
                         "<centralCertProvider enabled=\"true\" physicalPath=...> is not set",
                         "sslFlags", node.attributes.get("sslFlags"))
    elif not (binding.certificate_hash and binding.certificate_store_name):
        report.error(node, "the https binding names no certificate: set sslFlags=\"3\" "
                     "(SNI, central store) or certificateHash and certificateStoreName",
                     "certificateHash")


def _any_site_written(section: Node) -> bool:
    return any(s.tag == "site" for n in section.children if n.tag == "sites" for s in n.children)


def _check_pool(app: Any, pools: set[str], builder: Builder, report: Report) -> None:
    origin = builder.origin(app)
    if origin is None or origin.tainted or app.pool.lower() in pools:
        return
    written = origin.parsed.origins.get("pool")
    if written is None:
        report.error(origin.parsed.node,
                     f"no applicationPool given, and the default {DEFAULT_POOL!r} is not "
                     "defined in <applicationPools>", "applicationPool")
    else:
        report.error(written.node, "no application pool has this name", written.attribute,
                     written.raw)
