"""Settings the schema accepts but the server does not act on: one table, and the scan that
names every one a file sets.

The schema keeps IIS's names and accepts every attribute IIS's schema has (STYLE.md 8: a
typo is an error, and a file written for IIS loads). Some of them webgarden has not built
yet, and some mean nothing on Linux. Accepting such a setting silently would let a user
believe a limit holds that does not (`<site><limits maxConnections="100">`), so each one a
file sets to something other than its default is named: a `config.unsupported` event at
every load (start and reload) and a line in `webgarden config check`.

`UNENFORCED` is the one list. A row is a schema path as `schema.rows` spells it, below
`<configuration>`: an attribute (`.../limits/@maxBandwidth`), or an element whose every
occurrence is unenforced (`.../environmentVariables/add`). When a later change builds a
setting, removing its row is the whole change (tests/test_config_unenforced.py checks that
every row names a real setting). The audit behind it: every attribute of `schema.rows`
whose field nothing outside `config/` reads, on 2026-11-28.

Values written in a defaults element (`<applicationPoolDefaults>`, `<siteDefaults>`,
`<applicationDefaults>`, `<virtualDirectoryDefaults>`) count as the element they give
defaults to.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from webgarden.config.schema import rows

if TYPE_CHECKING:  # xmltree pulls in xml.sax: imported when a file is parsed
    from webgarden.config.xmltree import Node

NOT_YET = "not enforced yet"
WINDOWS = "has no effect on Linux (Windows only)"
NO_WEBDAV = "has no effect (webgarden serves no WebDAV)"

_HOST = "system.applicationHost"
_POOL = f"{_HOST}/applicationPools/add"
_SITE = f"{_HOST}/sites/site"
_APP = f"{_SITE}/application"
_WEB = "system.webServer"
_FILTER = f"{_WEB}/security/requestFiltering"
_HTTPC = f"{_WEB}/httpCompression"


@dataclass(frozen=True)
class Unenforced:
    """One setting accepted but not acted on; `values`: only these (any case), else any
    value other than the default."""

    path: str
    why: str
    values: frozenset[str] = frozenset()


def _rows(why: str, *paths: str) -> tuple[Unenforced, ...]:
    return tuple(Unenforced(path, why) for path in paths)


#: `<binding sslFlags>` bits webgarden does not act on: 4 no HTTP/2 (h2 is offered on every
#: https binding), 8 no OCSP stapling (none is done), 16 no QUIC (none is served), 32 no
#: TLS 1.3 over TCP, 64 no legacy TLS (TLS 1.2 is the minimum anyway): a value with any of
#: them set is named.
_SSL_FLAGS_UNENFORCED = frozenset(str(v) for v in range(128) if v & (4 | 8 | 16 | 32 | 64))

UNENFORCED: tuple[Unenforced, ...] = (
    Unenforced(f"{_SITE}/bindings/binding/@sslFlags",
               "bits 4, 8, 16, 32 and 64 are not enforced (only 1 SNI and 2 central store are)",
               _SSL_FLAGS_UNENFORCED),
    *_rows(NOT_YET,
           f"{_HOST}/webLimits/@minBytesPerSecond",
           f"{_HOST}/webLimits/@maxGlobalBandwidth",
           f"{_HOST}/webLimits/@demandStartThreshold",
           f"{_HOST}/webLimits/@dynamicIdleThreshold",
           f"{_HOST}/webLimits/@dynamicRegistrationThreshold",
           f"{_POOL}/@autoStart",
           f"{_POOL}/environmentVariables/add",
           f"{_POOL}/processModel/@loadUserProfile",
           f"{_POOL}/processModel/@setProfileEnvironment",
           f"{_POOL}/processModel/@idleTimeoutAction",
           f"{_POOL}/failure/@autoShutdownExe",
           f"{_POOL}/failure/@autoShutdownParams",
           f"{_POOL}/cpu/@numaNodeAssignment",
           f"{_POOL}/cpu/@numaNodeAffinityMode",
           f"{_SITE}/@serverAutoStart",
           f"{_SITE}/limits/@maxBandwidth",
           f"{_SITE}/limits/@maxConnections",
           f"{_SITE}/limits/@connectionTimeout",
           f"{_SITE}/limits/@maxUrlSegments",
           f"{_SITE}/traceFailedRequestsLogging/@enabled",
           f"{_SITE}/traceFailedRequestsLogging/@directory",
           f"{_SITE}/traceFailedRequestsLogging/@maxLogFiles",
           f"{_SITE}/traceFailedRequestsLogging/@maxLogFileSizeKB",
           f"{_SITE}/traceFailedRequestsLogging/@customActionsEnabled",
           f"{_APP}/@enabledProtocols",
           f"{_APP}/@serviceAutoStartEnabled",
           f"{_APP}/@preloadEnabled",
           f"{_APP}/virtualDirectory/@userName",
           f"{_APP}/virtualDirectory/@password",
           f"{_APP}/virtualDirectory/@logonMethod",
           f"{_FILTER}/@removeServerHeader",
           f"{_HTTPC}/@sendCacheHeaders",
           f"{_HTTPC}/@expiresHeader",
           f"{_HTTPC}/@cacheControlHeader",
           f"{_HTTPC}/@dynamicCompressionBufferLimit",
           f"{_WEB}/serverRuntime/@enabled",
           f"{_WEB}/serverRuntime/@appConcurrentRequestLimit",
           f"{_WEB}/serverRuntime/@maxRequestEntityAllowed",
           f"{_WEB}/serverRuntime/@uploadReadAheadSize",
           f"{_WEB}/serverRuntime/@alternateHostName",
           f"{_WEB}/serverRuntime/@enableNagling",
           f"{_WEB}/serverRuntime/@authenticatedUserOverride"),
    *_rows(WINDOWS,
           f"{_HOST}/centralCertProvider/@userName",
           f"{_HOST}/centralCertProvider/@password",
           f"{_HOST}/centralCertProvider/@privateKeyPassword",
           f"{_POOL}/@enable32BitAppOnWin64",
           f"{_POOL}/@managedRuntimeVersion",
           f"{_POOL}/@managedRuntimeLoader",
           f"{_POOL}/@enableConfigurationOverride",
           f"{_POOL}/@managedPipelineMode",
           f"{_POOL}/@CLRConfigFile",
           f"{_POOL}/@passAnonymousToken",
           f"{_POOL}/processModel/@password",
           f"{_POOL}/processModel/@logonType",
           f"{_POOL}/processModel/@manualGroupMembership",
           f"{_POOL}/processModel/@requestQueueDelegatorIdentity",
           f"{_POOL}/cpu/@processorGroup",
           f"{_SITE}/logFile/@customLogPluginClsid",
           f"{_APP}/@serviceAutoStartProvider",
           f"{_APP}/virtualDirectory/@allowSubDirConfig",
           f"{_WEB}/staticContent/@defaultDocFooter",
           f"{_WEB}/staticContent/@isDocFooterFileName",
           f"{_WEB}/staticContent/@enableDocFooter",
           f"{_WEB}/urlCompression/@dynamicCompressionBeforeCache",
           f"{_HTTPC}/@directory",
           f"{_HTTPC}/@doDiskSpaceLimiting",
           f"{_HTTPC}/@maxDiskSpaceUsage",
           f"{_HTTPC}/@staticCompressionIgnoreHitFrequency",
           f"{_HTTPC}/@staticCompressionDisableCpuUsage",
           f"{_HTTPC}/@staticCompressionEnableCpuUsage",
           f"{_HTTPC}/@dynamicCompressionDisableCpuUsage",
           f"{_HTTPC}/@dynamicCompressionEnableCpuUsage",
           f"{_HTTPC}/scheme/@dll"),
    *_rows(NO_WEBDAV,
           f"{_FILTER}/fileExtensions/@applyToWebDAV",
           f"{_FILTER}/verbs/@applyToWebDAV",
           f"{_FILTER}/hiddenSegments/@applyToWebDAV"),
)

_BY_PATH = {row.path: row for row in UNENFORCED}

#: A defaults element -> the path it stands for, by its parent's path tail.
_DEFAULTS = {
    "applicationPoolDefaults": {"applicationPools": "add"},
    "siteDefaults": {"sites": "site"},
    "applicationDefaults": {"sites": "site/application", "site": "application"},
    "virtualDirectoryDefaults": {"sites": "site/application/virtualDirectory",
                                 "site": "application/virtualDirectory",
                                 "application": "virtualDirectory"},
}


@dataclass(frozen=True)
class Unsupported:
    """One unenforced setting a file sets, where it sets it."""

    filename: str
    line: int
    element: str  # as written: `limits`, `add name="Shop"`
    attribute: str | None  # None: the element itself
    value: str | None
    why: str

    def __str__(self) -> str:
        what = f"<{self.element}>"
        if self.attribute is not None:
            what += f' attribute {self.attribute}="{self.value}"'
        return f"{self.filename}:{self.line}: {what}: {self.why}"

    def fields(self) -> dict[str, Any]:
        """The `config.unsupported` event's fields."""
        return {"file": self.filename, "line": self.line, "element": self.element,
                "attribute": self.attribute, "value": self.value, "reason": self.why}


class Events(Protocol):
    def emit(self, event: str, **fields: Any) -> None: ...


def announce(events: Events, found: tuple[Unsupported, ...]) -> None:
    """One `config.unsupported` event per setting found (the server calls this at a load)."""
    for use in found:
        events.emit("config.unsupported", **use.fields())


def scan(root: Node, filename: str, schema: type) -> tuple[Unsupported, ...]:
    """Every unenforced setting the file at `root` sets; `schema` is the root's class."""
    settings = {row.path.partition("/")[2]: row.setting for row in rows(schema, root.tag)}
    return tuple(_scan(root, "", filename, settings))


def _scan(node: Node, path: str, filename: str, settings: dict[str, Any]
          ) -> Iterator[Unsupported]:
    for child in node.children:
        tail = path.rpartition("/")[2]
        tag = _DEFAULTS.get(child.tag, {}).get(tail, child.tag)
        here = f"{path}/{tag}" if path else tag
        element = _BY_PATH.get(here)
        if element is not None:
            yield Unsupported(filename, child.line, child.label, None, None, element.why)
        for attribute, raw in child.attributes.items():
            row = _BY_PATH.get(f"{here}/@{attribute}")
            if row is not None and _set(row, raw, settings.get(f"{here}/@{attribute}")):
                yield Unsupported(filename, child.line, child.label, attribute, raw, row.why)
        yield from _scan(child, here, filename, settings)


def _set(row: Unenforced, raw: str, setting: Any) -> bool:
    """Whether `raw` asks for something: one of the row's values, or not the default."""
    if row.values:
        return raw.strip().lower() in row.values
    if setting is None:
        return True
    try:
        return bool(setting.kind.parse(raw) != setting.default)
    except ValueError:
        return False  # a bad value is an error the reader reports
