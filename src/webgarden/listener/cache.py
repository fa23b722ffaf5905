"""The response cache: HTTP.sys's kernel cache rules and its store. Sans-IO.

Nothing here reads the clock: every call that needs the time takes `now` (seconds, any
monotonic origin). Nothing here does I/O: file revalidation takes the stat function.

Theory of operation. The listener calls `lookup(request, now)` for every request:

- a `Hit` renders the whole response with `hit.render(date_line)`: the entry holds the
  serialized response without its Date line, so a hit costs one dict lookup and one join
  (`date_line` is the current `Date: ...\\r\\n`, plus any per-connection line such as
  `Connection: close\\r\\n`). A conditional request (If-None-Match / If-Modified-Since)
  that matches the entry's validators renders a 304 instead.
- a `Miss` carries the key to store under, or None when the request may not use the
  cache at all. After producing the response the listener calls
  `store(miss.key, response, now)`; it says why it did not store (a `Skip`), or None.

Rules (iis-semantics.md §4; KB817445; HTTP API 2.0 "kernel-mode cache" rules):

Requests that neither hit nor store: not GET; with a body; HTTP other than 1.0/1.1/2;
with Authorization; with Range or If-Range (HTTP.sys serves whole responses only); with
`Translate: f`; with an Expect other than 100-continue; with If-Match or
If-Unmodified-Since (rare on GET; the full path answers them); with a query string,
unless the extension's profile has varyByQueryString (`*`: the whole query keys the
entry; `a;b`: only those variables, in any order; HTTP.sys itself never caches a query:
webgarden has one cache where IIS has two, so it takes the user-mode cache's rule).

Responses stored only if: status 200; a non-empty body; head and body at most
maxResponseSize (256 KB) and headers at most 1024 bytes (KB817445 #17); no Set-Cookie; Vary
naming nothing but Accept-Encoding and the profile's varyByHeaders; no Cache-Control
no-store, private or no-cache; a Last-Modified, if any, that parses; a Content-Encoding
that is identity or the coding the key was negotiated for; not a default document
reached through its directory (KB817445 #21: "/" is not cached, "/index.html" is); the
profile's location lets the server cache (Any, Server, ServerAndClient) and its policy is
not DisableCache. And then for how long:

- the profile's policy (kernelCachePolicy, else policy): CacheForTimePeriod keeps the
  response for `duration`; CacheUntilChange until `invalidate()` / `invalidate_file()`;
- else a static file: until the file changes (`revalidate()` with a stat function, or
  `invalidate_file()` from a watcher), as IIS caches static content automatically;
- else an application response with `Cache-Control: public` and s-maxage or max-age > 0:
  that long (s-maxage first, this being a shared cache);
- else not at all. A profile wins over the response's max-age; nothing wins over
  no-store, private or no-cache.

The frequent-hit rule: a response is stored only when its key was looked up at least
frequentHitThreshold (2) times within frequentHitTimePeriod (10 s) (`<serverRuntime>`;
IIS 6: "requested twice within 10 seconds"); the window starts at the first miss.

The store is an LRU under a byte budget (maxCacheSize MB; 0 means DEFAULT_MAX_CACHE_MB):
a hit moves its entry to the end, a store evicts from the front until it fits. Every
entry is charged its bytes plus ENTRY_OVERHEAD. `scavenge(now)`, to be called every
SCAVENGER_PERIOD, drops entries not hit for that long (HTTP.sys's UriScavengerPeriod,
120 s) and expired ones. Keys: (site, path, query as varied, coding, varied headers),
where coding is the coding webgarden/compression.py negotiated for the request.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar
from urllib.parse import parse_qsl

from webgarden.config.model import ServerConfig
from webgarden.config.webserver import CacheProfile
from webgarden.listener.conditional import Validators, evaluate, parse_http_date
from webgarden.listener.static import FileTarget, extension

#: HTTP.sys's UriScavengerPeriod: entries not hit for this long are dropped.
SCAVENGER_PERIOD = 120.0
#: maxCacheSize 0 means "let the server choose"; HTTP.sys sizes by RAM, webgarden takes this.
DEFAULT_MAX_CACHE_MB = 64
#: KB817445 #17: responses with more header bytes than this are not cached.
MAX_CACHED_HEADER_BYTES = 1024
#: Keys counted for the frequent-hit rule at once; the oldest are forgotten first.
MAX_HIT_CANDIDATES = 16384
#: Bytes charged per entry beyond its response bytes (key, entry object, index slots).
ENTRY_OVERHEAD = 256
#: `Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n`, counted in maxResponseSize.
DATE_LINE_BYTES = 37

_HOP_BY_HOP = frozenset({"date", "content-length", "transfer-encoding", "connection",
                         "keep-alive", "proxy-connection", "te", "trailer", "upgrade"})
_NOT_MODIFIED_HEADERS = frozenset({"etag", "last-modified", "cache-control", "expires",
                                   "vary", "content-location", "server"})
_SERVER_LOCATIONS = frozenset({"Any", "Server", "ServerAndClient"})
_FOREVER = float("inf")
_W = TypeVar("_W")


class Skip(enum.Enum):
    """Why a request or a response did not use the cache."""

    DISABLED = "the cache is disabled"
    METHOD = "not a GET"
    BODY = "the request has a body"
    VERSION = "not HTTP/1.0, 1.1 or 2"
    AUTHORIZATION = "the request has Authorization"
    RANGE = "the request has Range or If-Range"
    TRANSLATE = "the request has Translate: f"
    EXPECT = "the request has an Expect other than 100-continue"
    CONDITIONAL = "the request has If-Match or If-Unmodified-Since"
    QUERY = "a query string no profile varies by"
    PROFILE = "the profile disables caching or keeps it off the server"
    STATUS = "not a 200"
    EMPTY = "an empty body"
    TOO_LARGE = "larger than maxResponseSize (or the whole cache)"
    HEADERS_TOO_LARGE = "more than 1024 bytes of headers"
    SET_COOKIE = "the response sets a cookie"
    VARY = "the response varies by more than Accept-Encoding and varyByHeaders"
    NO_STORE = "Cache-Control no-store, private or no-cache"
    LAST_MODIFIED = "a Last-Modified that does not parse"
    ENCODING = "a Content-Encoding other than the key's coding"
    DEFAULT_DOCUMENT = "a default document reached through its directory"
    UNCACHEABLE = "no profile, not a file, and no Cache-Control public with a max-age"
    NOT_FREQUENT = "not requested often enough yet (frequentHitThreshold)"


class CacheKey(NamedTuple):
    site: int | str
    path: str
    query: str  # "" unless a profile varies by the query string
    coding: str  # the negotiated content coding: identity, gzip, br
    vary: tuple[tuple[str, str], ...]  # (header, value) for the profile's varyByHeaders


@dataclass(frozen=True, slots=True)
class CacheSettings:
    enabled: bool = True
    max_cache_bytes: int = DEFAULT_MAX_CACHE_MB * 1024 * 1024
    max_response_size: int = 262144
    frequent_hit_threshold: int = 2
    frequent_hit_time_period: float = 10.0
    scavenger_period: float = SCAVENGER_PERIOD
    profiles: tuple[CacheProfile, ...] = ()

    @classmethod
    def from_config(cls, config: ServerConfig) -> CacheSettings:
        caching, runtime = config.web_server.caching, config.server_runtime
        megabytes = caching.max_cache_size or DEFAULT_MAX_CACHE_MB
        return cls(
            enabled=caching.enabled and caching.enable_kernel_cache,
            max_cache_bytes=megabytes * 1024 * 1024,
            max_response_size=caching.max_response_size,
            frequent_hit_threshold=runtime.frequent_hit_threshold,
            frequent_hit_time_period=runtime.frequent_hit_time_period,
            profiles=caching.profiles,
        )


@dataclass(frozen=True, slots=True)
class CacheRequest:
    site: int | str
    method: str
    path: str  # canonical (urls.py)
    query: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    coding: str = "identity"  # webgarden/compression.py's choice for this request
    http_version: str = "1.1"
    has_body: bool = False


@dataclass(frozen=True, slots=True)
class CacheResponse:
    status: int
    reason: str
    headers: Sequence[tuple[str, str]]  # in order; Date, Content-Length, hop-by-hop dropped
    body: bytes
    file: FileTarget | None = None  # a static file: kept until it changes


class Entry:
    """One cached response, serialized."""

    __slots__ = ("expires", "file", "head", "key", "last_hit", "not_modified", "size",
                 "tail", "validators")

    def __init__(self, key: CacheKey, head: bytes, tail: bytes, not_modified: bytes,
                 validators: Validators, expires: float, now: float,
                 file: tuple[str, tuple[int, int, int, int]] | None) -> None:
        self.key, self.head, self.tail, self.not_modified = key, head, tail, not_modified
        self.validators, self.expires, self.last_hit, self.file = validators, expires, now, file
        self.size = len(head) + len(tail) + len(not_modified) + ENTRY_OVERHEAD


@dataclass(frozen=True, slots=True)
class Hit:
    entry: Entry
    not_modified: bool

    def render(self, date_line: bytes) -> bytes:
        """The response to send: the 200 (or 304) with `date_line` in its place."""
        if self.not_modified:
            return b"".join((self.entry.not_modified, date_line, b"\r\n"))
        return b"".join((self.entry.head, date_line, self.entry.tail))


@dataclass(frozen=True, slots=True)
class Miss:
    key: CacheKey | None  # None: the request may not use the cache (see skip)
    skip: Skip | None = None


@dataclass(frozen=True, slots=True)
class CacheStats:
    entries: int
    bytes: int
    hits: int
    misses: int
    stores: int
    evictions: int  # by the LRU, to make room
    scavenged: int  # idle or expired
    invalidations: int  # invalidate, invalidate_file, revalidate, flush


class ResponseCache:
    """The store. One per listener process; not thread-safe (the listener's loop owns it)."""

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self._profiles = {p.extension.lower(): p for p in settings.profiles}
        self._entries: OrderedDict[CacheKey, Entry] = OrderedDict()
        self._by_path: dict[tuple[int | str, str], set[CacheKey]] = {}
        self._by_file: dict[str, set[CacheKey]] = {}
        self._candidates: OrderedDict[CacheKey, list[float]] = OrderedDict()  # [first, count]
        self._bytes = 0
        self.hits = self.misses = self.stores = 0
        self.evictions = self.scavenged = self.invalidations = 0

    # --- the request side ---------------------------------------------------------------

    def lookup(self, request: CacheRequest, now: float) -> Hit | Miss:
        key = self.key_for(request)
        if isinstance(key, Skip):
            self.misses += 1
            return Miss(None, key)
        entry = self._entries.get(key)
        if entry is not None and entry.expires <= now:
            self._remove(entry)
            self.scavenged += 1
            entry = None
        if entry is None:
            self.misses += 1
            self._count(key, now)
            return Miss(key)
        entry.last_hit = now
        self._entries.move_to_end(key)
        self.hits += 1
        headers = request.headers
        if "if-none-match" in headers or "if-modified-since" in headers:
            decision = evaluate("GET", headers, entry.validators, None, now=None)
            return Hit(entry, decision.status == 304)
        return Hit(entry, False)

    def key_for(self, request: CacheRequest) -> CacheKey | Skip:
        """The request's key, or why it may not use the cache."""
        skip = self._request_skip(request)
        if skip is not None:
            return skip
        profile = self._profile(request.path)
        if profile is not None and _policy(profile) == "DisableCache":
            return Skip.PROFILE
        query = ""
        if request.query:
            query_key = _query_key(profile, request.query)
            if query_key is None:
                return Skip.QUERY
            query = query_key
        vary: tuple[tuple[str, str], ...] = ()
        if profile is not None and profile.vary_by_headers:
            vary = tuple((name, request.headers.get(name, ""))
                         for name in _names(profile.vary_by_headers))
        return CacheKey(request.site, request.path, query, request.coding, vary)

    def _request_skip(self, request: CacheRequest) -> Skip | None:
        headers = request.headers
        if not self.settings.enabled:
            return Skip.DISABLED
        if request.method != "GET":
            return Skip.METHOD
        if request.has_body:
            return Skip.BODY
        if request.http_version not in ("1.0", "1.1", "2"):
            return Skip.VERSION
        if "authorization" in headers:
            return Skip.AUTHORIZATION
        if "range" in headers or "if-range" in headers:
            return Skip.RANGE
        if headers.get("translate", "").strip().lower() == "f":
            return Skip.TRANSLATE
        if headers.get("expect", "100-continue").strip().lower() != "100-continue":
            return Skip.EXPECT
        if "if-match" in headers or "if-unmodified-since" in headers:
            return Skip.CONDITIONAL
        return None

    def _profile(self, path: str) -> CacheProfile | None:
        if not self._profiles:
            return None
        return self._profiles.get(extension(path.rsplit("/", 1)[-1]))

    def _count(self, key: CacheKey, now: float) -> None:
        seen = self._candidates.get(key)
        if seen is None or now - seen[0] > self.settings.frequent_hit_time_period:
            self._candidates[key] = [now, 1.0]
            self._candidates.move_to_end(key)
            while len(self._candidates) > MAX_HIT_CANDIDATES:
                self._candidates.popitem(last=False)
        else:
            seen[1] += 1

    # --- the response side --------------------------------------------------------------

    def touch(self, entry: Entry, now: float) -> bool:
        """A hit on `entry` found outside `lookup` (the listener's fast path): True and
        counted if it is still this cache's live entry for its key."""
        if self._entries.get(entry.key) is not entry or entry.expires <= now:
            return False
        entry.last_hit = now
        self._entries.move_to_end(entry.key)
        self.hits += 1
        return True

    def store(self, key: CacheKey, response: CacheResponse, now: float) -> Skip | None:
        """Keep `response` under `key` (from a Miss) if the rules allow; why not, or None."""
        profile = self._profile(key.path)
        expires = self._lifetime(key, response, profile, now)
        if isinstance(expires, Skip):
            return expires
        seen = self._candidates.get(key)
        if seen is None or seen[1] < self.settings.frequent_hit_threshold \
                or now - seen[0] > self.settings.frequent_hit_time_period:
            return Skip.NOT_FREQUENT
        serialized = _serialize(response)
        if isinstance(serialized, Skip):
            return serialized
        head, tail, not_modified, validators = serialized
        if len(head) + len(tail) + DATE_LINE_BYTES > self.settings.max_response_size:
            return Skip.TOO_LARGE
        file = None
        if response.file is not None:
            target = response.file
            file = (target.real_path,
                    (target.device, target.inode, target.size, target.mtime_ns))
        entry = Entry(key, head, tail, not_modified, validators, expires, now, file)
        if entry.size > self.settings.max_cache_bytes:
            return Skip.TOO_LARGE
        self._insert(entry)
        del self._candidates[key]
        self.stores += 1
        return None

    def _lifetime(self, key: CacheKey, response: CacheResponse, profile: CacheProfile | None,
                  now: float) -> float | Skip:
        """When the response expires (inf: until it changes), or why it is not cached."""
        if response.status != 200:
            return Skip.STATUS
        if not response.body:
            return Skip.EMPTY
        if len(response.body) > self.settings.max_response_size:
            return Skip.TOO_LARGE
        headers = _lower(response.headers)
        if "set-cookie" in headers:
            return Skip.SET_COOKIE
        allowed = {"accept-encoding"}
        if profile is not None:
            allowed.update(_names(profile.vary_by_headers))
        if "vary" in headers and not set(_names(headers["vary"], ",")) <= allowed:
            return Skip.VARY
        directives = _cache_control(headers.get("cache-control", ""))
        if directives.keys() & {"no-store", "private", "no-cache"}:
            return Skip.NO_STORE
        if "last-modified" in headers and parse_http_date(headers["last-modified"]) is None:
            return Skip.LAST_MODIFIED
        encoding = headers.get("content-encoding", "identity").strip().lower() or "identity"
        if encoding not in ("identity", key.coding):
            return Skip.ENCODING
        if response.file is not None and response.file.default_document:
            return Skip.DEFAULT_DOCUMENT
        if profile is not None and (_policy(profile) == "DisableCache"
                                    or profile.location not in _SERVER_LOCATIONS):
            return Skip.PROFILE
        policy = _policy(profile) if profile is not None else "DontCache"
        if policy == "CacheForTimePeriod" and profile is not None:
            return now + profile.duration
        if policy == "CacheUntilChange" or response.file is not None:
            return _FOREVER
        age = _max_age(directives)
        if "public" in directives and age is not None and age > 0:
            return now + age
        return Skip.UNCACHEABLE

    # --- the store ----------------------------------------------------------------------

    def _insert(self, entry: Entry) -> None:
        old = self._entries.get(entry.key)
        if old is not None:
            self._remove(old)
        while self._entries and self._bytes + entry.size > self.settings.max_cache_bytes:
            _, oldest = next(iter(self._entries.items()))
            self._remove(oldest)
            self.evictions += 1
        key = entry.key
        self._entries[key] = entry
        self._bytes += entry.size
        self._by_path.setdefault((key.site, key.path), set()).add(key)
        if entry.file is not None:
            self._by_file.setdefault(entry.file[0], set()).add(key)

    def _remove(self, entry: Entry) -> None:
        key = entry.key
        del self._entries[key]
        self._bytes -= entry.size
        _discard(self._by_path, (key.site, key.path), key)
        if entry.file is not None:
            _discard(self._by_file, entry.file[0], key)

    def _drop(self, keys: Sequence[CacheKey] | set[CacheKey]) -> int:
        removed = 0
        for key in list(keys):
            entry = self._entries.get(key)
            if entry is not None:
                self._remove(entry)
                removed += 1
        self.invalidations += removed
        return removed

    def invalidate(self, path: str, site: int | str | None = None) -> int:
        """Drop every entry for a URL path (all queries, codings, variants); how many."""
        keys = [k for (s, p), ks in self._by_path.items() if p == path
                and (site is None or s == site) for k in ks]
        return self._drop(keys)

    def invalidate_file(self, real_path: str) -> int:
        """Drop every entry made from this file (CacheUntilChange for static files)."""
        return self._drop(self._by_file.get(real_path, set()))

    def revalidate(self, stamp: Callable[[str], tuple[int, int, int, int] | None]) -> int:
        """Drop entries whose file changed since they were stored; `stamp` is
        static.file_stamp (the I/O), called once per file. How many entries."""
        dropped = 0
        for path, keys in list(self._by_file.items()):
            current = stamp(path)
            dropped += self._drop([k for k in keys if (e := self._entries.get(k)) is not None
                                   and e.file is not None and e.file[1] != current])
        return dropped

    def scavenge(self, now: float) -> int:
        """Drop entries idle for the scavenger period or expired; forget old hit counts."""
        period = self.settings.scavenger_period
        old = [e for e in self._entries.values()
               if now - e.last_hit >= period or e.expires <= now]
        for entry in old:
            self._remove(entry)
        self.scavenged += len(old)
        window = self.settings.frequent_hit_time_period
        for key in [k for k, (first, _) in self._candidates.items() if now - first > window]:
            del self._candidates[key]
        return len(old)

    def flush(self, site: int | str | None = None) -> int:
        """Drop everything, or everything of one site; how many entries."""
        keys = [k for k in self._entries if site is None or k.site == site]
        if site is None:
            self._candidates.clear()
        return self._drop(keys)

    @property
    def stats(self) -> CacheStats:
        return CacheStats(len(self._entries), self._bytes, self.hits, self.misses,
                          self.stores, self.evictions, self.scavenged, self.invalidations)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries


def _policy(profile: CacheProfile) -> str:
    """webgarden has one cache: kernelCachePolicy, or policy when that says DontCache."""
    kernel = profile.kernel_cache_policy
    return kernel if kernel != "DontCache" else profile.policy


def _names(value: str, separators: str = ";,") -> list[str]:
    for separator in separators[1:]:
        value = value.replace(separator, separators[0])
    return [n.strip().lower() for n in value.split(separators[0]) if n.strip()]


def _query_key(profile: CacheProfile | None, query: bytes) -> str | None:
    """The part of the query that keys the entry, or None: not cacheable."""
    if profile is None or not profile.vary_by_query_string.strip():
        return None
    text = query.decode("latin-1")
    if profile.vary_by_query_string.strip() == "*":
        return text
    wanted = set(_names(profile.vary_by_query_string))
    pairs = sorted((name.lower(), value) for name, value in
                   parse_qsl(text, keep_blank_values=True, encoding="latin-1")
                   if name.lower() in wanted)
    return "&".join(f"{name}={value}" for name, value in pairs)


def _lower(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        found[lowered] = f"{found[lowered]}, {value}" if lowered in found else value
    return found


def _cache_control(value: str) -> dict[str, str]:
    directives: dict[str, str] = {}
    for part in value.split(","):
        name, _, argument = part.strip().partition("=")
        if name:
            directives[name.strip().lower()] = argument.strip().strip('"')
    return directives


def _max_age(directives: Mapping[str, str]) -> int | None:
    for name in ("s-maxage", "max-age"):
        if name in directives:
            value = directives[name]
            return int(value) if value.isdigit() else None
    return None


def _serialize(response: CacheResponse) -> tuple[bytes, bytes, bytes, Validators] | Skip:
    """(status line and headers without Date, blank line and body, the 304's head,
    the validators), or HEADERS_TOO_LARGE."""
    lines = [f"{name}: {value}\r\n" for name, value in response.headers
             if name.lower() not in _HOP_BY_HOP]
    lines.append(f"Content-Length: {len(response.body)}\r\n")
    header_block = "".join(lines).encode("latin-1")
    if len(header_block) > MAX_CACHED_HEADER_BYTES:
        return Skip.HEADERS_TOO_LARGE
    status = f"HTTP/1.1 {response.status} {response.reason}\r\n".encode("latin-1")
    kept = "".join(f"{name}: {value}\r\n" for name, value in response.headers
                   if name.lower() in _NOT_MODIFIED_HEADERS)
    not_modified = b"HTTP/1.1 304 Not Modified\r\n" + kept.encode("latin-1")
    headers = _lower(response.headers)
    modified = headers.get("last-modified")
    validators = Validators(headers.get("etag"),
                            parse_http_date(modified) if modified else None)
    return status + header_block, b"\r\n" + response.body, not_modified, validators


def _discard(index: dict[_W, set[CacheKey]], where: _W, key: CacheKey) -> None:
    keys = index.get(where)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[where]
