"""Sites: `<sites><site>` with its bindings, applications, virtual directories, limits and
logs, IIS 10's schema. webgarden's own attributes are `app` and `interface` on
`<application>` (marked `extension=True`).
"""

# setting(), child() and collection() return dataclasses.field(), as field() itself does:
# ruff: noqa: RUF009

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from webgarden.config.pools import DEFAULT_POOL
from webgarden.config.schema import child, collection, filled_by, setting
from webgarden.config.values import (
    UINT_MAX,
    BindingInformation,
    Bool,
    Choice,
    Flags,
    Integer,
    Protocol,
    Text,
    TimeSpan,
    module_callable,
    non_empty,
    pool_name,
    site_name,
    url_path,
)

LOG_FIELDS = ("Date", "Time", "ClientIP", "UserName", "SiteName", "ComputerName", "ServerIP",
              "Method", "UriStem", "UriQuery", "HttpStatus", "Win32Status", "BytesSent",
              "BytesRecv", "TimeTaken", "ServerPort", "UserAgent", "Cookie", "Referer",
              "ProtocolVersion", "Host", "HttpSubStatus")
#: IIS 8.0+ site default: the IIS 7 list plus Referer.
DEFAULT_LOG_FIELDS = frozenset({
    "Date", "Time", "ClientIP", "UserName", "ServerIP", "Method", "UriStem", "UriQuery",
    "TimeTaken", "HttpStatus", "Win32Status", "ServerPort", "UserAgent", "HttpSubStatus",
    "Referer",
})

Interface = Literal["wsgi", "asgi", "auto"]
Lifespan = Literal["auto", "on", "off"]
LogonMethod = Literal["Interactive", "Batch", "Network", "ClearText"]
LogFormat = Literal["IIS", "NCSA", "W3C", "Custom"]
LogPeriod = Literal["MaxSize", "Daily", "Weekly", "Monthly", "Hourly"]


#: `sslFlags` bits (IIS's): the certificate is chosen by SNI; it comes from the central store.
SSL_SNI = 1
SSL_CENTRAL_STORE = 2


@dataclass(frozen=True, slots=True)
class HstsConfig:
    """`<site><hsts>` (IIS 10 version 1709): Strict-Transport-Security on https responses,
    and plain http requests redirected to https."""

    enabled: bool = setting("enabled", Bool(), False, help="Send Strict-Transport-Security.")
    max_age: int = setting("max-age", Integer(0, UINT_MAX), 0,
                           help="Seconds a browser keeps to https (max-age).")
    include_sub_domains: bool = setting("includeSubDomains", Bool(), False,
                                        help="The policy covers subdomains too.")
    preload: bool = setting("preload", Bool(), False, help="Add the preload directive.")
    redirect_http_to_https: bool = setting(
        "redirectHttpToHttps", Bool(), False,
        help="Answer plain http requests with 301 to the same URL on https.")

    def header(self) -> bytes:
        """The header line, CRLF-ended."""
        value = f"max-age={self.max_age}"
        if self.include_sub_domains:
            value += "; includeSubDomains"
        if self.preload:
            value += "; preload"
        return f"Strict-Transport-Security: {value}\r\n".encode("ascii")


@dataclass(frozen=True, slots=True)
class Binding:
    """`<binding protocol="http" bindingInformation="IP:port:host" />`."""

    address: str = setting(  # "*" for every address, else an IP (IPv6 without brackets)
        "bindingInformation", BindingInformation(), required=True,
        spread=("address", "port", "host"), positional=True,
        help='"IP:port:host": IP * for every address, host empty for any Host header.')
    port: int = filled_by("bindingInformation")
    host: str = ""  # "" matches any Host header; "*.example.com" a wildcard (IIS 10)
    protocol: str = setting("protocol", Protocol(), "http", required=True,
                            help="http, or https (TLS terminated by the listener).")
    ssl_flags: int = setting(
        "sslFlags", Integer(0, 127), 0,
        help="https: 1 SNI (the certificate is chosen by the client's server name), "
             "2 the central certificate store (<centralCertProvider>).")
    certificate_hash: str = setting(
        "certificateHash", Text(), "",
        help="https outside the central store: the certificate's SHA-1 thumbprint (hex).")
    certificate_store_name: str = setting(
        "certificateStoreName", Text(), "",
        help="https outside the central store: on Linux, a directory of PEM files "
             "(the certificate chain, then its private key, in each).")

    @property
    def https(self) -> bool:
        return self.protocol == "https"

    @property
    def central_store(self) -> bool:
        return bool(self.ssl_flags & SSL_CENTRAL_STORE)


@dataclass(frozen=True, slots=True)
class VirtualDirectoryConfig:
    """`<virtualDirectory path= physicalPath=/>`: a URL path mapped to a directory."""

    path: str = setting("path", Text(url_path), required=True,
                        help="URL path below the application: / or /static.")
    physical_path: str = setting("physicalPath", Text(), "", help="The directory.")
    user_name: str = setting("userName", Text(), "", help="Account to read the directory as.")
    password: str = setting("password", Text(), "", secret=True, help="Its password.")
    logon_method: LogonMethod = setting(
        "logonMethod", Choice("Interactive", "Batch", "Network", "ClearText"), "ClearText",
        help="Windows logon method for userName.")
    allow_sub_dir_config: bool = setting("allowSubDirConfig", Bool(), True,
                                         help="Read web.config files below the directory.")


@dataclass(frozen=True, slots=True)
class ApplicationConfig:
    """One application (`<application path= applicationPool= app=>`), hosted by its pool."""

    path: str = setting("path", Text(url_path), required=True, positional=True,
                        help='The URL prefix: "/" or "/shop", without a trailing slash.')
    pool: str = setting("applicationPool", Text(pool_name), DEFAULT_POOL, positional=True,
                        help="The pool whose workers run the application.")
    app: str = setting("app", Text(module_callable), required=True, extension=True,
                       positional=True,
                       help='webgarden: the callable to serve, "module:callable".')
    interface: Interface = setting(
        "interface", Choice("wsgi", "asgi", "auto"), "auto", extension=True,
        help="webgarden: how to call it; auto decides from the callable (an async "
             "__call__(scope, receive, send) is ASGI, a callable of two parameters WSGI).")
    lifespan: Lifespan = setting(
        "lifespan", Choice("auto", "on", "off"), "auto", extension=True,
        help="webgarden: ASGI lifespan events in each worker (startup before it takes "
             "requests, shutdown when it stops); on: an app that does not support them "
             "fails to load; auto: such an app runs without them; off: never sent.")
    enabled_protocols: str = setting("enabledProtocols", Text(), "http",
                                     help="Protocols the application accepts.")
    service_auto_start_enabled: bool = setting("serviceAutoStartEnabled", Bool(), False,
                                               help="Warm the application up at start.")
    service_auto_start_provider: str = setting("serviceAutoStartProvider", Text(), "",
                                               help="Windows only: the warm-up provider.")
    preload_enabled: bool = setting("preloadEnabled", Bool(), False,
                                    help="Load the application before its first request.")
    virtual_directories: tuple[VirtualDirectoryConfig, ...] = collection(
        "virtualDirectory", VirtualDirectoryConfig, key=("path",),
        defaults="virtualDirectoryDefaults", inherit=False, noun="virtual directory",
        help="Directories served by the application.")


@dataclass(frozen=True, slots=True)
class SiteLimits:
    """`<site><limits>`: HTTP.sys quality of service for one site."""

    max_bandwidth: int = setting("maxBandwidth", Integer(exclude=(0, 1023)), UINT_MAX,
                                 help="Bytes per second for the site (HTTP.sys: >= 1024).")
    max_connections: int = setting("maxConnections", Integer(), UINT_MAX,
                                   help="Simultaneous connections; more get 503 ConnLimit.")
    connection_timeout: float = setting(
        "connectionTimeout", TimeSpan(0, 65535), 120.0,
        help="Idle keep-alive, request body and queue time limit.")
    max_url_segments: int = setting("maxUrlSegments", Integer(0, 16383), 32,
                                    help="Path segments allowed (404.20 above).")


@dataclass(frozen=True, slots=True)
class CustomField:
    """`<logFile><customFields><add>`: an extra W3C log field."""

    log_field_name: str = setting("logFieldName", Text(non_empty), required=True,
                                  help="Field name in the log.")
    source_name: str = setting("sourceName", Text(non_empty), required=True,
                               help="Header or server variable logged.")
    source_type: str = setting(
        "sourceType", Choice("RequestHeader", "ResponseHeader", "ServerVariable"),
        required=True, help="Where sourceName is read.")


@dataclass(frozen=True, slots=True)
class CustomFieldsConfig:
    max_custom_field_length: int = setting("maxCustomFieldLength", Integer(2, 65536), 4096,
                                           help="Longest custom field value logged.")
    fields: tuple[CustomField, ...] = collection(
        "add", CustomField, key=("log_field_name",), clear=True, noun="custom field",
        help="Extra fields.")


@dataclass(frozen=True, slots=True)
class LogFileConfig:
    """`<logFile>` (per site; `<siteDefaults><logFile>` for every site)."""

    log_ext_file_flags: frozenset[str] = setting(
        "logExtFileFlags", Flags(*LOG_FIELDS), DEFAULT_LOG_FIELDS,
        help="W3C fields written.")
    custom_log_plugin_clsid: str = setting("customLogPluginClsid", Text(), "",
                                           help="Windows only: custom logging module.")
    log_format: LogFormat = setting("logFormat", Choice("IIS", "NCSA", "W3C", "Custom"), "W3C",
                                    help="Log file format.")
    log_target_w3c: frozenset[str] = setting(
        "logTargetW3C", Flags("File", "ETW"), frozenset({"File"}), help="Where W3C goes.")
    directory: str = setting("directory", Text(non_empty), r"%SystemDrive%\inetpub\logs\LogFiles",
                             help="Log directory.")
    period: LogPeriod = setting(
        "period", Choice("MaxSize", "Daily", "Weekly", "Monthly", "Hourly"), "Daily",
        help="When a new file starts.")
    truncate_size: int = setting("truncateSize", Integer(1048576, UINT_MAX), 20971520,
                                 help="File size that starts a new file (period MaxSize).")
    local_time_rollover: bool = setting("localTimeRollover", Bool(), False,
                                        help="Name and roll files by local time, not UTC.")
    enabled: bool = setting("enabled", Bool(), True, help="Write the site's log.")
    log_site_id: bool = setting("logSiteId", Bool(), True,
                                help="s-sitename holds the site's id.")
    flush_by_entry_count_w3c_log: int = setting(
        "flushByEntryCountW3CLog", Integer(), 0, help="Flush every N entries; 0: at 64 KB.")
    max_log_line_length: int = setting("maxLogLineLength", Integer(2, 65536), 65536,
                                       help="Longest line written.")
    custom_fields: CustomFieldsConfig = child("customFields", CustomFieldsConfig,
                                              help="Extra fields.")


@dataclass(frozen=True, slots=True)
class TraceFailedRequestsLoggingConfig:
    """`<traceFailedRequestsLogging>`."""

    enabled: bool = setting("enabled", Bool(), False, help="Trace failed requests.")
    directory: str = setting("directory", Text(),
                             r"%SystemDrive%\inetpub\logs\FailedReqLogFiles",
                             help="Trace directory.")
    max_log_files: int = setting("maxLogFiles", Integer(1, 10000), 50, help="Files kept.")
    max_log_file_size_kb: int = setting("maxLogFileSizeKB", Integer(0, 1048576), 1024,
                                        help="Largest trace file, KB.")
    custom_actions_enabled: bool = setting("customActionsEnabled", Bool(), False,
                                           help="Run custom actions on failure.")


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """One site (`<sites><site>`): bindings in, applications out."""

    name: str = setting("name", Text(site_name), required=True, positional=True,
                        help="The site's name.")
    id: int = setting("id", Integer(0, UINT_MAX), required=True, positional=True,
                      help="The site's number (the Default Web Site is 1).")
    bindings: tuple[Binding, ...] = collection(
        "binding", Binding, wrapper="bindings", key=("protocol", "address", "port", "host"),
        clear=True, noun="binding", positional=True,
        help="The addresses, ports and host names the site answers.")
    applications: tuple[ApplicationConfig, ...] = collection(
        "application", ApplicationConfig, key=("path",), defaults="applicationDefaults",
        inherit=False, noun="application", positional=True,
        help="The site's applications; one must be the root, /.")
    server_auto_start: bool = setting("serverAutoStart", Bool(), True,
                                      help="Start the site when the server starts.")
    limits: SiteLimits = child("limits", SiteLimits, help="Bandwidth, connections, timeouts.")
    log_file: LogFileConfig = child("logFile", LogFileConfig, help="The site's log.")
    trace_failed_requests_logging: TraceFailedRequestsLoggingConfig = child(
        "traceFailedRequestsLogging", TraceFailedRequestsLoggingConfig,
        help="Failed request tracing.")
    hsts: HstsConfig = child("hsts", HstsConfig, help="HTTP Strict Transport Security.")

