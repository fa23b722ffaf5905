"""Request handling: the `<system.webServer>` sections the listener acts on, IIS 10's schema.

    <caching>            the response cache (iis-semantics.md §4.2) and its <profiles>
    <staticContent>      <mimeMap> entries and <clientCache>
    <defaultDocument>    <files> tried for a directory
    <directoryBrowse>    listings for a directory without a default document
    <security>           only <requestFiltering> is read (§5); other security sections skipped
    <urlCompression>     whether static and dynamic responses are compressed
    <httpCompression>    <scheme>, <staticTypes>, <dynamicTypes>, minFileSizeForComp
    <webSocket>          WebSocket upgrades: message size limit, pings (IIS 8's section)

Attribute names, types, ranges and defaults are IIS 10's schema (IIS_schema.xml, see the
reference). Some collections start filled, as IIS's shipped applicationHost.config fills
them (`inherited`, config/schema.py): the default documents, a MIME map, IIS's hidden
segments, the compressible types. A file's `<add>` adds to them or replaces one with the
same key, `<remove>` and `<clear/>` take them away.

webgarden's own defaults, beyond IIS's, are in the WEBGARDEN_* tables below and nowhere
else: request filtering also hides what a Python project keeps next to its files
(`__pycache__`, `.git`, `.venv`, `venv`, `.env`) and denies the extensions of its source,
configuration and databases (`.py`, `.pyc`, `.pyo`, `.config`, `.env`, `.ini`, `.toml`,
`.cfg`, `.sqlite3`, `.db`). They can be removed like IIS's own: `<remove segment="venv"/>`.

These settings are server-wide: webgarden reads no `<location>` elements (yet).
"""

# setting(), child() and collection() return dataclasses.field(), as field() itself does:
# ruff: noqa: RUF009

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from webgarden.config.mime_types import DEFAULT_MIME_TYPES
from webgarden.config.schema import child, collection, setting
from webgarden.config.values import (
    UINT_MAX,
    Bool,
    Choice,
    Flags,
    Integer,
    Text,
    TimeSpan,
    non_empty,
)

CachePolicy = Literal["DontCache", "CacheUntilChange", "CacheForTimePeriod", "DisableCache"]
CacheLocation = Literal["Any", "Client", "Downstream", "Server", "None", "ServerAndClient"]
CacheControlMode = Literal["NoControl", "DisableCache", "UseMaxAge", "UseExpires"]

_POLICIES = ("DontCache", "CacheUntilChange", "CacheForTimePeriod", "DisableCache")
_LOCATIONS = ("Any", "Client", "Downstream", "Server", "None", "ServerAndClient")
_SHOW_FLAGS = ("None", "Date", "Time", "Size", "Extension", "LongDate")


# --- <caching> ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CacheProfile:
    """`<caching><profiles><add extension=...>`: how responses for one extension are cached."""

    extension: str = setting("extension", Text(non_empty), required=True,
                             help='The file extension, with its dot: ".png".')
    policy: CachePolicy = setting(
        "policy", Choice(*_POLICIES), "DontCache",
        help="User-mode output cache policy. webgarden has one cache: it follows "
             "kernelCachePolicy, or this when kernelCachePolicy is DontCache.")
    kernel_cache_policy: CachePolicy = setting(
        "kernelCachePolicy", Choice(*_POLICIES), "DontCache",
        help="Kernel (listener) cache policy: CacheUntilChange, CacheForTimePeriod "
             "(for duration), DontCache, or DisableCache (never, whatever the response says).")
    duration: float = setting("duration", TimeSpan(1, 4294967), 30.0,
                              help="How long CacheForTimePeriod keeps a response.")
    location: CacheLocation = setting(
        "location", Choice(*_LOCATIONS), "Server",
        help="Who may cache: the server caches only for Any, Server and ServerAndClient.")
    vary_by_headers: str = setting("varyByHeaders", Text(), "",
                                   help="Request headers, separated by ;, that key entries.")
    vary_by_query_string: str = setting(
        "varyByQueryString", Text(), "",
        help="Query variables, separated by ;, that key entries; * for the whole query. "
             "Empty: a request with a query string is not cached.")


@dataclass(frozen=True, slots=True)
class CachingConfig:
    """`<caching>`: the listener's response cache (HTTP.sys's kernel cache)."""

    enabled: bool = setting("enabled", Bool(), True, help="Output caching at all.")
    enable_kernel_cache: bool = setting("enableKernelCache", Bool(), True,
                                        help="The listener's response cache.")
    max_cache_size: int = setting(
        "maxCacheSize", Integer(0, UINT_MAX), 0,
        help="Cache size in MB; 0 lets the server choose (webgarden: 64 MB per listener).")
    max_response_size: int = setting("maxResponseSize", Integer(0, UINT_MAX), 262144,
                                     help="Largest response cached, bytes (head and body).")
    profiles: tuple[CacheProfile, ...] = collection(
        "add", CacheProfile, wrapper="profiles", key=("extension",), clear=True, remove=True,
        noun="caching profile", help="Caching rules per file extension.")


# --- <staticContent> ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MimeMap:
    """`<mimeMap fileExtension=".css" mimeType="text/css"/>`."""

    file_extension: str = setting("fileExtension", Text(non_empty), required=True,
                                  help='The extension, with its dot: ".css".')
    mime_type: str = setting("mimeType", Text(non_empty), required=True,
                             help="The Content-Type sent for it.")


#: webgarden's MIME map (config/mime_types.py); a file's <mimeMap> entries add to it.
DEFAULT_MIME_MAPS = tuple(MimeMap(ext, mime) for ext, mime in DEFAULT_MIME_TYPES)


@dataclass(frozen=True, slots=True)
class ClientCacheConfig:
    """`<staticContent><clientCache>`: the Cache-Control / Expires sent with static files."""

    cache_control_mode: CacheControlMode = setting(
        "cacheControlMode", Choice("NoControl", "DisableCache", "UseMaxAge", "UseExpires"),
        "NoControl", help="NoControl sends nothing; DisableCache no-cache; UseMaxAge "
                          "max-age=cacheControlMaxAge; UseExpires an Expires of httpExpires.")
    cache_control_max_age: float = setting("cacheControlMaxAge", TimeSpan(), 86400.0,
                                           help="max-age for UseMaxAge.")
    http_expires: str = setting("httpExpires", Text(), "",
                                help="The HTTP date sent as Expires for UseExpires.")
    cache_control_custom: str = setting("cacheControlCustom", Text(), "",
                                        help="Appended to Cache-Control (e.g. public).")
    set_etag: bool = setting("setEtag", Bool(), True, help="Send an ETag with static files.")


@dataclass(frozen=True, slots=True)
class StaticContentConfig:
    """`<staticContent>`: how files are described to clients."""

    default_doc_footer: str = setting("defaultDocFooter", Text(), "",
                                      help="Windows only: a footer appended to files.")
    is_doc_footer_file_name: bool = setting("isDocFooterFileName", Bool(), False,
                                            help="Windows only: the footer names a file.")
    enable_doc_footer: bool = setting("enableDocFooter", Bool(), False,
                                      help="Windows only: append the footer.")
    client_cache: ClientCacheConfig = child("clientCache", ClientCacheConfig,
                                            help="Caching headers for static files.")
    mime_maps: tuple[MimeMap, ...] = collection(
        "mimeMap", MimeMap, key=("file_extension",), clear=True, remove=True,
        inherited=DEFAULT_MIME_MAPS, noun="MIME map",
        help="Extensions served as files, and their Content-Type; an extension not listed "
             "is refused with 404.3. Starts with webgarden's table (DEFAULT_MIME_MAPS).")

    def mime_types(self) -> dict[str, str]:
        """Extension (lower case, with its dot) -> Content-Type."""
        return {m.file_extension.lower(): m.mime_type for m in self.mime_maps}


# --- <defaultDocument>, <directoryBrowse> -------------------------------------------------

@dataclass(frozen=True, slots=True)
class DefaultDocumentFile:
    """`<files><add value="index.html"/>`."""

    value: str = setting("value", Text(non_empty), required=True, help="A file name.")


#: IIS 7+'s shipped list, in its order (applicationHost.config <defaultDocument><files>).
DEFAULT_DOCUMENTS = ("Default.htm", "Default.asp", "index.htm", "index.html", "iisstart.htm")


@dataclass(frozen=True, slots=True)
class DefaultDocumentConfig:
    """`<defaultDocument>`: the file served for a directory's URL."""

    enabled: bool = setting("enabled", Bool(), True, help="Look for default documents.")
    files: tuple[str, ...] = collection(
        "add", DefaultDocumentFile, wrapper="files", key=("value",), clear=True, remove=True,
        scalar="value", inherited=tuple(DefaultDocumentFile(v) for v in DEFAULT_DOCUMENTS),
        noun="default document", help="File names tried in order.")


@dataclass(frozen=True, slots=True)
class DirectoryBrowseConfig:
    """`<directoryBrowse>`: list a directory that has no default document."""

    enabled: bool = setting("enabled", Bool(), False,
                            help="List directories; off, they get 403.14.")
    show_flags: frozenset[str] = setting(
        "showFlags", Flags(*_SHOW_FLAGS), frozenset({"Date", "Time", "Size", "Extension"}),
        help="Columns shown in a listing.")


# --- <security><requestFiltering> ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FileExtensionRule:
    """`<fileExtensions><add fileExtension=".py" allowed="false"/>`."""

    file_extension: str = setting("fileExtension", Text(non_empty), required=True,
                                  help='The extension, with its dot: ".py".')
    allowed: bool = setting("allowed", Bool(), True, required=True,
                            help="false: requests for it get 404.7.")


#: Denied by webgarden beyond IIS: a Python project's source, settings and databases.
WEBGARDEN_DENIED_EXTENSIONS = (".py", ".pyc", ".pyo", ".config", ".env", ".ini", ".toml",
                               ".cfg", ".sqlite3", ".db")


@dataclass(frozen=True, slots=True)
class FileExtensionsConfig:
    """`<requestFiltering><fileExtensions>`."""

    allow_unlisted: bool = setting("allowUnlisted", Bool(), True,
                                   help="Extensions not listed are allowed.")
    apply_to_webdav: bool = setting("applyToWebDAV", Bool(), True,
                                    help="Apply to WebDAV requests too.")
    rules: tuple[FileExtensionRule, ...] = collection(
        "add", FileExtensionRule, key=("file_extension",), clear=True, remove=True,
        inherited=tuple(FileExtensionRule(e, False) for e in WEBGARDEN_DENIED_EXTENSIONS),
        noun="file extension rule",
        help="Allowed and denied extensions; starts with webgarden's denials "
             "(WEBGARDEN_DENIED_EXTENSIONS).")


@dataclass(frozen=True, slots=True)
class HiddenSegment:
    """`<hiddenSegments><add segment="bin"/>`."""

    segment: str = setting("segment", Text(non_empty), required=True,
                           help="A path segment no URL may contain (any case).")


#: IIS's shipped applicationHost.config (ASP.NET's folders and web.config).
IIS_HIDDEN_SEGMENTS = ("web.config", "bin", "App_code", "App_GlobalResources",
                       "App_LocalResources", "App_WebReferences", "App_Data", "App_Browsers")
#: Hidden by webgarden beyond IIS: what a Python project keeps beside its files.
WEBGARDEN_HIDDEN_SEGMENTS = ("__pycache__", ".git", ".venv", "venv", ".env")


@dataclass(frozen=True, slots=True)
class HiddenSegmentsConfig:
    """`<requestFiltering><hiddenSegments>`."""

    apply_to_webdav: bool = setting("applyToWebDAV", Bool(), True,
                                    help="Apply to WebDAV requests too.")
    segments: tuple[str, ...] = collection(
        "add", HiddenSegment, key=("segment",), clear=True, remove=True, scalar="segment",
        inherited=tuple(HiddenSegment(s)
                        for s in (*IIS_HIDDEN_SEGMENTS, *WEBGARDEN_HIDDEN_SEGMENTS)),
        noun="hidden segment",
        help="Segments refused with 404.8: IIS's, then webgarden's (WEBGARDEN_HIDDEN_SEGMENTS).")


@dataclass(frozen=True, slots=True)
class HeaderLimit:
    """`<headerLimits><add header="Content-Type" sizeLimit="100"/>`."""

    header: str = setting("header", Text(non_empty), required=True, help="A header name.")
    size_limit: int = setting("sizeLimit", Integer(), required=True,
                              help="Its longest value, bytes; longer gets 431.")


@dataclass(frozen=True, slots=True)
class RequestLimitsConfig:
    """`<requestFiltering><requestLimits>`."""

    max_allowed_content_length: int = setting(
        "maxAllowedContentLength", Integer(), 30000000,
        help="Largest request body, bytes; larger gets 404.13.")
    max_url: int = setting("maxUrl", Integer(), 4096,
                           help="Longest URL path (without the query), bytes; 404.14.")
    max_query_string: int = setting("maxQueryString", Integer(), 2048,
                                    help="Longest query string, bytes; 404.15.")
    header_limits: tuple[HeaderLimit, ...] = collection(
        "add", HeaderLimit, wrapper="headerLimits", key=("header",), clear=True, remove=True,
        noun="header limit", help="Size limits for single headers.")


@dataclass(frozen=True, slots=True)
class VerbRule:
    """`<verbs><add verb="TRACE" allowed="false"/>`."""

    verb: str = setting("verb", Text(non_empty), required=True, help="A method, e.g. PUT.")
    allowed: bool = setting("allowed", Bool(), required=True,
                            help="false: requests with it get 404.6.")


@dataclass(frozen=True, slots=True)
class VerbsConfig:
    """`<requestFiltering><verbs>`."""

    allow_unlisted: bool = setting("allowUnlisted", Bool(), True,
                                   help="Methods not listed are allowed.")
    apply_to_webdav: bool = setting("applyToWebDAV", Bool(), True,
                                    help="Apply to WebDAV requests too.")
    rules: tuple[VerbRule, ...] = collection(
        "add", VerbRule, key=("verb",), clear=True, remove=True, noun="verb rule",
        help="Allowed and denied methods.")


@dataclass(frozen=True, slots=True)
class DeniedSequence:
    """`<denyUrlSequences><add sequence=".."/>` (and denyQueryStringSequences)."""

    sequence: str = setting("sequence", Text(non_empty), required=True,
                            help="Text no URL (or query string) may contain (any case).")


@dataclass(frozen=True, slots=True)
class AllowedUrl:
    """`<alwaysAllowedUrls><add url="/robots.txt"/>`."""

    url: str = setting("url", Text(non_empty), required=True,
                       help="A URL path that passes request filtering unchecked.")


@dataclass(frozen=True, slots=True)
class AllowedQueryString:
    """`<alwaysAllowedQueryStrings><add queryString="a=b"/>`."""

    query_string: str = setting("queryString", Text(non_empty), required=True,
                                help="A query string that passes the query checks unchecked.")


@dataclass(frozen=True, slots=True)
class RequestFilteringConfig:
    """`<security><requestFiltering>`: requests refused with 404.x before anything runs.

    `<filteringRules>` is not supported: written in a file, it is an error rather than a
    rule silently not enforced."""

    allow_double_escaping: bool = setting(
        "allowDoubleEscaping", Bool(), False,
        help="false: a URL that still holds %XX or + once decoded gets 404.11.")
    allow_high_bit_characters: bool = setting(
        "allowHighBitCharacters", Bool(), True,
        help="false: a URL with non-ASCII characters gets 404.12.")
    unescape_query_string: bool = setting(
        "unescapeQueryString", Bool(), True,
        help="Check query sequences against the decoded query as well as the raw one.")
    remove_server_header: bool = setting("removeServerHeader", Bool(), False,
                                         help="Send no Server header.")
    file_extensions: FileExtensionsConfig = child("fileExtensions", FileExtensionsConfig,
                                                  help="Extensions allowed and denied.")
    request_limits: RequestLimitsConfig = child("requestLimits", RequestLimitsConfig,
                                                help="Sizes of URL, query, body, headers.")
    verbs: VerbsConfig = child("verbs", VerbsConfig, help="Methods allowed and denied.")
    hidden_segments: HiddenSegmentsConfig = child("hiddenSegments", HiddenSegmentsConfig,
                                                  help="Path segments never served.")
    deny_url_sequences: tuple[str, ...] = collection(
        "add", DeniedSequence, wrapper="denyUrlSequences", key=("sequence",), clear=True,
        remove=True, scalar="sequence", noun="denied URL sequence",
        help="URL text refused with 404.5.")
    deny_query_string_sequences: tuple[str, ...] = collection(
        "add", DeniedSequence, wrapper="denyQueryStringSequences", key=("sequence",), clear=True,
        remove=True, scalar="sequence", noun="denied query string sequence",
        help="Query text refused with 404.18.")
    always_allowed_urls: tuple[str, ...] = collection(
        "add", AllowedUrl, wrapper="alwaysAllowedUrls", key=("url",), clear=True,
        remove=True, scalar="url", noun="always allowed URL",
        help="URL paths that skip the URL checks.")
    always_allowed_query_strings: tuple[str, ...] = collection(
        "add", AllowedQueryString, wrapper="alwaysAllowedQueryStrings",
        key=("query_string",), clear=True, remove=True, scalar="query_string",
        noun="always allowed query string", help="Query strings that skip the query checks.")


SSL_ACCESS_FLAGS = ("Ssl", "SslNegotiateCert", "SslRequireCert", "SslMapCert", "Ssl128")


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """`<security><access sslFlags=>`: whether TLS and a client certificate are required.
    Server-wide: webgarden reads no `<location>` (yet), so it holds for every https site."""

    ssl_flags: frozenset[str] = setting(
        "sslFlags", Flags(*SSL_ACCESS_FLAGS), frozenset(),
        help="Ssl: https only (403.4 on http); SslNegotiateCert: ask for a client "
             "certificate; SslRequireCert: refuse the handshake without a valid one; "
             "Ssl128: 128-bit ciphers (always true here).")
    client_certificate_authorities: str = setting(
        "clientCertificateAuthorities", Text(), "", extension=True,
        help="webgarden: a PEM file of the CAs that client certificates must chain to; "
             "empty: the system's CA bundle.")

    @property
    def client_cert(self) -> str:
        """'require', 'optional' or '' (no certificate asked for)."""
        if "SslRequireCert" in self.ssl_flags:
            return "require"
        return "optional" if "SslNegotiateCert" in self.ssl_flags else ""


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """`<security>`: requestFiltering and access are read; authentication, authorization,
    ipSecurity and the rest are Windows features, skipped."""

    XML_OPEN: ClassVar[bool] = True

    request_filtering: RequestFilteringConfig = child(
        "requestFiltering", RequestFilteringConfig, help="Request filtering.")
    access: AccessConfig = child("access", AccessConfig, help="TLS and client certificates.")


# --- <urlCompression>, <httpCompression> --------------------------------------------------

@dataclass(frozen=True, slots=True)
class UrlCompressionConfig:
    """`<urlCompression>`."""

    do_static_compression: bool = setting("doStaticCompression", Bool(), True,
                                          help="Compress static files.")
    do_dynamic_compression: bool = setting("doDynamicCompression", Bool(), True,
                                           help="Compress application responses.")
    dynamic_compression_before_cache: bool = setting(
        "dynamicCompressionBeforeCache", Bool(), False,
        help="Windows only: compress dynamic responses before the output cache.")


#: Largest WebSocket message a client may send, bytes: uvicorn's default (IIS's
#: receiveBufferLimit is 4 MiB; users moving from uvicorn expect 16).
WEBSOCKET_MAX_MESSAGE = 16 * 1024 * 1024
#: Seconds between pings of an idle WebSocket, and for the pong to come: uvicorn's.
WEBSOCKET_PING = 20.0


@dataclass(frozen=True, slots=True)
class WebSocketConfig:
    """`<webSocket>` (IIS 8): upgrades passed to ASGI applications (listener/websocket.py,
    worker/websocket.py). The listener sends these with each upgrade it dispatches."""

    enabled: bool = setting("enabled", Bool(), True,
                            help="Pass WebSocket upgrades to applications; false serves "
                                 "them as plain HTTP requests.")
    receive_buffer_limit: int = setting(
        "receiveBufferLimit", Integer(1, UINT_MAX), WEBSOCKET_MAX_MESSAGE,
        help="Largest message a client may send, bytes; a larger one closes with 1009.")
    ping_interval: float = setting(
        "pingInterval", TimeSpan(0, 86400), WEBSOCKET_PING,
        help="Time between pings the worker sends; 00:00:00: none (IIS's default; "
             "webgarden's is uvicorn's 20 s).")
    ping_timeout: float = setting(
        "pingTimeout", TimeSpan(0, 86400), WEBSOCKET_PING, extension=True,
        help="Time a pong may take before the socket closes with 1011; 00:00:00: no limit.")


@dataclass(frozen=True, slots=True)
class CompressionScheme:
    """`<httpCompression><scheme name="gzip" .../>`: a content coding the server offers."""

    name: str = setting("name", Text(non_empty), required=True,
                        help="The coding: gzip, or br (when the brotli package is installed).")
    do_static_compression: bool = setting("doStaticCompression", Bool(), True,
                                          help="Use it for static files.")
    do_dynamic_compression: bool = setting("doDynamicCompression", Bool(), True,
                                           help="Use it for application responses.")
    dll: str = setting("dll", Text(), "", help="Windows only: the compression DLL.")
    static_compression_level: int = setting("staticCompressionLevel", Integer(0, 11), 7,
                                            help="Level for static files (gzip: 1-9).")
    dynamic_compression_level: int = setting("dynamicCompressionLevel", Integer(0, 11), 0,
                                             help="Level for responses (0: fastest).")


@dataclass(frozen=True, slots=True)
class CompressibleType:
    """`<staticTypes><add mimeType="text/*" enabled="true"/>` (and dynamicTypes)."""

    mime_type: str = setting("mimeType", Text(non_empty), required=True,
                             help="A type, type/* or */*.")
    enabled: bool = setting("enabled", Bool(), required=True, help="Compress it.")


_COMPRESSIBLE = ("text/*", "message/*", "application/javascript", "application/json",
                 "application/xml", "application/atom+xml", "image/svg+xml")
#: Text, JSON, JavaScript, XML and SVG, with IIS's message/* and atom; */* explicitly off.
DEFAULT_COMPRESSIBLE_TYPES = (*(CompressibleType(t, True) for t in _COMPRESSIBLE),
                              CompressibleType("*/*", False))


@dataclass(frozen=True, slots=True)
class HttpCompressionConfig:
    """`<httpCompression>`: what is compressed, how, and from what size."""

    send_cache_headers: bool = setting("sendCacheHeaders", Bool(), False,
                                       help="Send the two headers below with compressed files.")
    expires_header: str = setting("expiresHeader", Text(), "Wed, 01 Jan 1997 12:00:00 GMT",
                                  help="Expires sent when sendCacheHeaders is true.")
    cache_control_header: str = setting("cacheControlHeader", Text(), "max-age=86400",
                                        help="Cache-Control sent when sendCacheHeaders is true.")
    directory: str = setting(
        "directory", Text(), r"%SystemDrive%\inetpub\temp\IIS Temporary Compressed Files",
        help="Windows only: where IIS keeps compressed files (webgarden keeps them in memory).")
    do_disk_space_limiting: bool = setting("doDiskSpaceLimiting", Bool(), True,
                                           help="Windows only: limit that directory.")
    max_disk_space_usage: int = setting("maxDiskSpaceUsage", Integer(), 100,
                                        help="Windows only: its limit, MB.")
    min_file_size_for_comp: int = setting(
        "minFileSizeForComp", Integer(), 2700,
        help="Smallest body compressed, bytes (IIS 7.5+; IIS 7.0 used 256).")
    no_compression_for_http10: bool = setting("noCompressionForHttp10", Bool(), True,
                                              help="Do not compress for HTTP/1.0 requests.")
    no_compression_for_proxies: bool = setting(
        "noCompressionForProxies", Bool(), True,
        help="Do not compress for requests that came through a proxy (a Via header).")
    no_compression_for_range: bool = setting("noCompressionForRange", Bool(), True,
                                             help="Do not compress for Range requests.")
    static_compression_ignore_hit_frequency: bool = setting(
        "staticCompressionIgnoreHitFrequency", Bool(), False,
        help="Windows only: compress static files before they are frequently hit.")
    static_compression_disable_cpu_usage: int = setting(
        "staticCompressionDisableCpuUsage", Integer(0, 100), 100,
        help="Windows only: CPU percent that stops static compression.")
    static_compression_enable_cpu_usage: int = setting(
        "staticCompressionEnableCpuUsage", Integer(0, 100), 50,
        help="Windows only: CPU percent that resumes it.")
    dynamic_compression_disable_cpu_usage: int = setting(
        "dynamicCompressionDisableCpuUsage", Integer(0, 100), 90,
        help="Windows only: CPU percent that stops dynamic compression.")
    dynamic_compression_enable_cpu_usage: int = setting(
        "dynamicCompressionEnableCpuUsage", Integer(0, 100), 50,
        help="Windows only: CPU percent that resumes it.")
    dynamic_compression_buffer_limit: int = setting(
        "dynamicCompressionBufferLimit", Integer(), 65536,
        help="Bytes of a dynamic response buffered before compressed output is flushed.")
    schemes: tuple[CompressionScheme, ...] = collection(
        "scheme", CompressionScheme, key=("name",), clear=True, remove=True,
        inherited=(CompressionScheme("br"), CompressionScheme("gzip")), noun="scheme",
        help="Codings offered, in the server's order of preference (br is offered only "
             "when the brotli package is importable).")
    static_types: tuple[CompressibleType, ...] = collection(
        "add", CompressibleType, wrapper="staticTypes", key=("mime_type",), clear=True,
        remove=True, inherited=DEFAULT_COMPRESSIBLE_TYPES, noun="static type",
        help="Content types of files that are compressed.")
    dynamic_types: tuple[CompressibleType, ...] = collection(
        "add", CompressibleType, wrapper="dynamicTypes", key=("mime_type",), clear=True,
        remove=True, inherited=DEFAULT_COMPRESSIBLE_TYPES, noun="dynamic type",
        help="Content types of application responses that are compressed.")


# --- <system.webServer> -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WebServerConfig:
    """The `<system.webServer>` sections about serving: caching, files, filtering,
    compression. (`<serverRuntime>` is ServerConfig.server_runtime.)"""

    caching: CachingConfig = child("caching", CachingConfig, help="The response cache.")
    static_content: StaticContentConfig = child("staticContent", StaticContentConfig,
                                                help="MIME types and client caching.")
    default_document: DefaultDocumentConfig = child(
        "defaultDocument", DefaultDocumentConfig, help="Files served for a directory.")
    directory_browse: DirectoryBrowseConfig = child(
        "directoryBrowse", DirectoryBrowseConfig, help="Directory listings.")
    security: SecurityConfig = child("security", SecurityConfig, help="Request filtering.")
    url_compression: UrlCompressionConfig = child("urlCompression", UrlCompressionConfig,
                                                  help="Whether responses are compressed.")
    http_compression: HttpCompressionConfig = child("httpCompression", HttpCompressionConfig,
                                                    help="How responses are compressed.")
    web_socket: WebSocketConfig = child("webSocket", WebSocketConfig,
                                        help="WebSocket upgrades.")

    @property
    def request_filtering(self) -> RequestFilteringConfig:
        """Shortcut for security.request_filtering."""
        return self.security.request_filtering
