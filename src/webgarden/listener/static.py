"""Static files: which requests the listener answers from disk, and request filtering.

Which requests are files. IIS's StaticFile handler is the last entry of the handler
list: it gets what no application handler claimed. A Python application claims nothing
by name (it is one callable), so webgarden turns the rule around and decides from the
disk, as ASP.NET routing does with `RouteExistingFiles = false`:

    A GET or HEAD whose path below the application maps, through the application's
    longest matching `<virtualDirectory path= physicalPath=>`, to an existing regular
    file is served by the listener. So is an existing directory, through its default
    document, a listing, or 403.14; except the application's own root directory when it
    has no default document, which goes to the application (ASP.NET exempts "~/" the
    same way), or every Python application at "/" would answer 403 on its home page.
    Everything else (other methods, paths that do not exist) goes to the application.

So a file under the physical path shadows an application route of the same name, as in
IIS. A directory requested without its final slash gets IIS's courtesy 301 to the slash.

Policy (what is refused, and how IIS words it):

- The path (already canonical, urls.py) is checked again: NUL, backslash, control
  characters, `.`/`..` segments, or a segment that decodes once more to a dot segment or
  a separator -> 400. Nothing of the kind should get past urls.py; this is a second lock.
- A hidden segment (any case) -> 404.8; a segment that starts with a dot -> 404.8 too
  (webgarden: dot files and dot directories are never served; the one exception is
  `.well-known`, RFC 8615's home for ACME challenges and security.txt, whose contents
  still may not start with a dot); a denied extension -> 404.7; an extension without a
  MIME type -> 404.3 (IIS serves only the types it knows; as in IIS, a `<mimeMap
  fileExtension=".">` entry serves names without an extension).
- Symbolic links are followed only while the real path stays inside the real physical
  path: the resolver works on `os.path.realpath` and refuses (404) anything outside. The
  real path is checked again (a link named `logo` to `app.py` is still `.py`, a link to
  `.git/config` still hidden), and so is each protected path (the configuration file).
- Only regular files are served: a FIFO, socket or device -> 404, never opened.

I/O: `DiskFileSystem` (realpath, stat, scandir), `open_file` and `file_stamp` are the only
functions here that touch the disk. `resolve` takes the file system as an argument (a
`FileSystem`), so everything else is pure and testable with a fake.

`RequestFilter` is IIS's request filtering (`<requestFiltering>`, iis-semantics.md §5),
which IIS applies to every request, whichever handler serves it; the listener calls it
before routing. Note that with webgarden's default denials a route ending in `.py` or
`.db` is refused too, as IIS refuses `.config` to ASP.NET pages.
"""

from __future__ import annotations

import html
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol
from urllib.parse import quote, unquote

from webgarden.config.model import ApplicationConfig
from webgarden.config.webserver import RequestFilteringConfig, WebServerConfig
from webgarden.listener.conditional import Validators, make_etag


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request the listener answers itself with an error: always the client's fault."""

    status: int
    substatus: int
    reason: str  # IIS's name for the substatus, for the page and the log


BAD_PATH = Refusal(400, 0, "Invalid URL")
NOT_FOUND = Refusal(404, 0, "Not Found")
MIME_UNKNOWN = Refusal(404, 3, "MIME Type Restriction")
URL_SEQUENCE_DENIED = Refusal(404, 5, "URL Sequence Denied")
VERB_DENIED = Refusal(404, 6, "Verb Denied")
EXTENSION_DENIED = Refusal(404, 7, "File Extension Denied")
HIDDEN_NAMESPACE = Refusal(404, 8, "Hidden Namespace")
DOUBLE_ESCAPED = Refusal(404, 11, "URL Double Escaped")
HIGH_BIT_CHARACTERS = Refusal(404, 12, "URL Has High Bit Chars")
# IIS 7.0-10 log 404.13; newer documentation says 413.1 (iis-semantics.md §9).
CONTENT_TOO_LARGE = Refusal(404, 13, "Content Length Too Large")
URL_TOO_LONG = Refusal(404, 14, "URL Too Long")
QUERY_TOO_LONG = Refusal(404, 15, "Query String Too Long")
QUERY_SEQUENCE_DENIED = Refusal(404, 18, "Query String Sequence Denied")
HEADER_TOO_LONG = Refusal(431, 0, "Request Header Too Long")
DIRECTORY_LISTING_DENIED = Refusal(403, 14, "Directory Listing Denied")

#: Dot segments served despite the dot-file rule (RFC 8615).
ALLOWED_DOT_SEGMENTS = frozenset({".well-known"})

_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}|\+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


def _text(path: str) -> str:
    """A canonical path (latin-1 of its UTF-8 bytes, as urls.py gives it) as real text."""
    return path.encode("latin-1", "replace").decode("utf-8", "replace")


def extension(name: str) -> str:
    """`.py` for `app.py`, "" for `README` or `.env` (a dot file has no extension)."""
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


class RequestFilter:
    """`<requestFiltering>` compiled: `check()` is IIS's request filtering module."""

    def __init__(self, config: RequestFilteringConfig) -> None:
        self.config = config
        limits = config.request_limits
        self.max_url, self.max_query = limits.max_url, limits.max_query_string
        self.max_content = limits.max_allowed_content_length
        self.header_limits = {h.header.lower(): h.size_limit for h in limits.header_limits}
        self.verbs = {v.verb: v.allowed for v in config.verbs.rules}
        self.extensions = {r.file_extension.lower(): r.allowed
                           for r in config.file_extensions.rules}
        self.hidden = frozenset(s.lower() for s in config.hidden_segments.segments)
        self.url_sequences = tuple(s.lower() for s in config.deny_url_sequences)
        self.query_sequences = tuple(s.lower() for s in config.deny_query_string_sequences)
        self.allowed_urls = frozenset(config.always_allowed_urls)
        self.allowed_queries = frozenset(config.always_allowed_query_strings)

    def check(self, method: str, path: str, query: bytes = b"",
              content_length: int | None = None,
              headers: Mapping[str, str] | None = None) -> Refusal | None:
        """The refusal for a request, or None. `path` is urls.py's canonical path,
        `headers` lower-case names (only headerLimits reads them)."""
        if method in self.verbs:
            if not self.verbs[method]:
                return VERB_DENIED
        elif not self.config.verbs.allow_unlisted:
            return VERB_DENIED
        if content_length is not None and content_length > self.max_content:
            return CONTENT_TOO_LARGE
        if path != "*" and path not in self.allowed_urls:
            refusal = self._url(path)
            if refusal is not None:
                return refusal
        if query and query.decode("latin-1") not in self.allowed_queries:
            refusal = self._query(query)
            if refusal is not None:
                return refusal
        for name, limit in self.header_limits.items():
            if headers is not None and len(headers.get(name, "")) > limit:
                return HEADER_TOO_LONG
        return None

    def _url(self, path: str) -> Refusal | None:
        if len(path) > self.max_url:
            return URL_TOO_LONG
        if not self.config.allow_double_escaping and _ESCAPE.search(path):
            return DOUBLE_ESCAPED
        if not self.config.allow_high_bit_characters and not path.isascii():
            return HIGH_BIT_CHARACTERS
        text = _text(path)
        lowered = text.lower()
        if any(s in lowered for s in self.url_sequences):
            return URL_SEQUENCE_DENIED
        segments = [s for s in text.split("/") if s]
        return self.segments_refusal(segments) or (
            self.extension_refusal(segments[-1]) if segments else None)

    def _query(self, query: bytes) -> Refusal | None:
        if len(query) > self.max_query:
            return QUERY_TOO_LONG
        raw = query.decode("latin-1").lower()
        texts = [raw, unquote(raw).lower()] if self.config.unescape_query_string else [raw]
        if any(s in t for s in self.query_sequences for t in texts):
            return QUERY_SEQUENCE_DENIED
        return None

    def segments_refusal(self, segments: Iterable[str]) -> Refusal | None:
        """404.8 for a hidden segment, compared in any case."""
        return HIDDEN_NAMESPACE if any(s.lower() in self.hidden for s in segments) else None

    def extension_refusal(self, name: str) -> Refusal | None:
        """404.7 for a denied extension (or an unlisted one when allowUnlisted is false)."""
        allowed = self.extensions.get(extension(name))
        if allowed is None:
            allowed = self.config.file_extensions.allow_unlisted
        return None if allowed else EXTENSION_DENIED


class StaticRules:
    """WebServerConfig compiled for the resolver. `protected`: real paths never served
    (the configuration file; `protect()` makes them real)."""

    def __init__(self, web: WebServerConfig, protected: Iterable[str] = ()) -> None:
        self.filter = RequestFilter(web.request_filtering)
        self.mime_types = web.static_content.mime_types()
        documents = web.default_document
        self.default_documents = documents.files if documents.enabled else ()
        self.browse = web.directory_browse.enabled
        self.show_flags = web.directory_browse.show_flags
        self.set_etag = web.static_content.client_cache.set_etag
        self.cache_headers = _client_cache_headers(web)
        self.protected = frozenset(protected)

    def name_refusal(self, segments: tuple[str, ...]) -> Refusal | None:
        """Hidden segments, dot segments, the last segment's extension."""
        for segment in segments:
            if segment.startswith(".") and segment.lower() not in ALLOWED_DOT_SEGMENTS:
                return HIDDEN_NAMESPACE
        refusal = self.filter.segments_refusal(segments)
        if refusal is None and segments:
            refusal = self.filter.extension_refusal(segments[-1])
        return refusal

    def content_type(self, name: str) -> str | None:
        """The MIME map's type; a name without extension looks up ".", as in IIS."""
        return self.mime_types.get(extension(name) or ".")

    def servable(self, name: str) -> bool:
        return self.name_refusal((name,)) is None and self.content_type(name) is not None


def _client_cache_headers(web: WebServerConfig) -> tuple[tuple[str, str], ...]:
    cc = web.static_content.client_cache
    control = {"DisableCache": "no-cache",
               "UseMaxAge": f"max-age={int(cc.cache_control_max_age)}"}.get(
        cc.cache_control_mode, "")
    if cc.cache_control_custom:
        control = f"{control}, {cc.cache_control_custom}" if control else cc.cache_control_custom
    found = [("Cache-Control", control)] if control else []
    if cc.cache_control_mode == "UseExpires" and cc.http_expires:
        found.append(("Expires", cc.http_expires))
    return tuple(found)


# --- outcomes -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FileTarget:
    """A file to send: what to open and how to describe it."""

    real_path: str
    size: int
    mtime_ns: int
    inode: int
    device: int
    content_type: str
    etag: str | None  # None when clientCache/@setEtag is false
    default_document: bool = False  # reached as a directory's default document

    @property
    def last_modified(self) -> int:
        return self.mtime_ns // 1_000_000_000

    @property
    def validators(self) -> Validators:
        return Validators(self.etag, self.last_modified)


@dataclass(frozen=True, slots=True)
class Redirect:
    """IIS's courtesy redirect of a directory to its URL with a final slash."""

    location: str  # percent-encoded path; the caller appends "?" + query if there was one
    status: int = 301


@dataclass(frozen=True, slots=True)
class ListingEntry:
    name: str
    is_dir: bool
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Listing:
    """A directory to list (directoryBrowse enabled): render it with `render_listing`."""

    url_path: str  # decoded, with its final slash
    entries: tuple[ListingEntry, ...]
    show_flags: frozenset[str]


Outcome = FileTarget | Redirect | Listing | Refusal | None  # None: the application's


@dataclass(frozen=True, slots=True)
class DiskEntry:
    """What the file system says about a path: its real path, kind and identity."""

    real_path: str
    relative: tuple[str, ...]  # the real path's segments below the real root
    kind: Literal["file", "dir", "other"]
    size: int
    mtime_ns: int
    inode: int
    device: int


ESCAPED: Literal["escaped"] = "escaped"  # the real path is outside the root


class FileSystem(Protocol):
    def lookup(self, root: str, parts: tuple[str, ...]) -> DiskEntry | Literal["escaped"] | None:
        """`parts` joined under `root`, symlinks resolved: None if missing."""

    def listdir(self, directory: str) -> list[str]:
        """The names in a directory (unsorted)."""


# --- the resolver (pure, given a FileSystem) ----------------------------------------------

def physical_root(app: ApplicationConfig, path_in_app: str) -> tuple[str, str] | None:
    """(physicalPath, the rest of the path) of the longest virtual directory matching
    `path_in_app` (the path below the application: "" or "/..."), whole segments only."""
    path = path_in_app or "/"
    best: tuple[str, str] | None = None
    best_length = -1
    for vdir in app.virtual_directories:
        prefix = vdir.path
        if prefix == "/":
            rest = path
        elif path == prefix or path.startswith(prefix + "/"):
            rest = path[len(prefix):]
        else:
            continue
        if len(prefix) > best_length:
            best, best_length = (vdir.physical_path, rest), len(prefix)
    if best is None or not best[0]:
        return None
    return best


def _segments(rest: str) -> tuple[str, ...] | Refusal:
    text = _text(rest)
    if _CONTROL.search(text):
        return BAD_PATH
    segments = tuple(s for s in text.split("/") if s)
    for segment in segments:
        decoded = unquote(segment)
        if segment in (".", "..") or decoded in (".", "..") or "/" in decoded \
                or "\\" in decoded or "\x00" in decoded:
            return BAD_PATH
    return segments


def resolve(rules: StaticRules, app: ApplicationConfig, script_name: str, path_in_app: str,
            method: str, fs: FileSystem | None = None) -> Outcome:
    """What the listener does with a request: a file, a redirect, a listing, a refusal,
    or None (the application's). `script_name` and `path_in_app` are the router's ("" and
    "/x" for an application at "/"); paths are canonical (urls.py)."""
    if method not in ("GET", "HEAD"):
        return None
    mapped = physical_root(app, path_in_app)
    if mapped is None:
        return None
    root, rest = mapped
    segments = _segments(rest)
    if isinstance(segments, Refusal):
        return segments
    refusal = rules.name_refusal(segments)
    if refusal is not None:
        return refusal
    fs = fs or DISK
    entry = _checked(rules, fs.lookup(root, segments))
    if entry is None or isinstance(entry, Refusal):
        return entry
    if entry.kind == "file":
        if rest.endswith("/"):
            return None  # "/logo.png/" names no file
        content_type = rules.content_type(segments[-1] if segments else "")
        return MIME_UNKNOWN if content_type is None else _target(rules, entry, content_type)
    if entry.kind != "dir":
        return NOT_FOUND
    return _directory(rules, fs, root, segments, entry, script_name, path_in_app)


def _checked(rules: StaticRules, entry: DiskEntry | Literal["escaped"] | None
             ) -> DiskEntry | Refusal | None:
    """The entry, unless its real path is outside the root, hidden, denied or protected."""
    if entry is None:
        return None
    if not isinstance(entry, DiskEntry):  # ESCAPED
        return NOT_FOUND
    if entry.real_path in rules.protected:
        return NOT_FOUND
    return rules.name_refusal(entry.relative) or entry


def _target(rules: StaticRules, entry: DiskEntry, content_type: str,
            default_document: bool = False) -> FileTarget:
    etag = make_etag(entry.inode, entry.size, entry.mtime_ns) if rules.set_etag else None
    return FileTarget(entry.real_path, entry.size, entry.mtime_ns, entry.inode, entry.device,
                      content_type, etag, default_document)


def _directory(rules: StaticRules, fs: FileSystem, root: str, segments: tuple[str, ...],
               entry: DiskEntry, script_name: str, path_in_app: str) -> Outcome:
    document: FileTarget | None = None
    for name in rules.default_documents:
        if not rules.servable(name):
            continue  # Default.asp: a name that could not be served is not looked for
        found = _checked(rules, fs.lookup(root, (*segments, name)))
        if isinstance(found, DiskEntry) and found.kind == "file":
            document = _target(rules, found, rules.content_type(name) or "", True)
            break
    if document is None and path_in_app in ("", "/"):
        return None  # the application's root: the application's home page
    url_path = script_name + path_in_app
    if not url_path.endswith("/"):
        return Redirect(quote(url_path.encode("latin-1"), safe="/!$&'()*+,;=:@-._~") + "/")
    if document is not None:
        return document
    if not rules.browse:
        return DIRECTORY_LISTING_DENIED
    return _listing(rules, fs, root, segments, entry, _text(url_path))


def _listing(rules: StaticRules, fs: FileSystem, root: str, segments: tuple[str, ...],
             entry: DiskEntry, url_path: str) -> Listing:
    """What may be listed: what could be served (files) or entered (directories)."""
    entries = []
    for name in sorted(fs.listdir(entry.real_path)):
        if name.startswith(".") and name.lower() not in ALLOWED_DOT_SEGMENTS:
            continue
        if rules.filter.segments_refusal((name,)) is not None:
            continue
        child = _checked(rules, fs.lookup(root, (*segments, name)))
        if not isinstance(child, DiskEntry):
            continue
        if child.kind == "dir" or (child.kind == "file" and rules.servable(name)):
            entries.append(ListingEntry(name, child.kind == "dir", child.size, child.mtime_ns))
    return Listing(url_path, tuple(entries), rules.show_flags)


def file_headers(rules: StaticRules, target: FileTarget) -> list[tuple[str, str]]:
    """The headers a 200 for `target` carries besides Date, Server and Content-Length."""
    found = [("Content-Type", target.content_type), *target.validators.headers(),
             ("Accept-Ranges", "bytes")]
    found.extend(rules.cache_headers)
    return found


def render_listing(listing: Listing) -> bytes:
    """IIS's directory listing page, in its plain format."""
    title = html.escape(listing.url_path)
    rows = []
    if listing.url_path != "/":
        parent = listing.url_path.rstrip("/").rsplit("/", 1)[0] + "/"
        rows.append(f'<A HREF="{_href(parent)}">[To Parent Directory]</A><br><br>')
    flags = listing.show_flags
    for item in listing.entries:
        when = datetime.fromtimestamp(item.mtime_ns / 1e9, UTC)
        columns = []
        if "Date" in flags or "LongDate" in flags:
            fmt = "%A, %B %d, %Y" if "LongDate" in flags else "%m/%d/%Y"
            columns.append(when.strftime(fmt))
        if "Time" in flags:
            columns.append(when.strftime("%H:%M"))
        if "Size" in flags:
            columns.append("&lt;dir&gt;" if item.is_dir else str(item.size))
        shown = item.name
        if "Extension" not in flags and not item.is_dir and extension(shown):
            shown = shown[: -len(extension(shown))]
        href = _href(listing.url_path + item.name + ("/" if item.is_dir else ""))
        rows.append(f'{" ".join(columns):>40} <A HREF="{href}">{html.escape(shown)}</A><br>')
    page = (f"<html><head><title>{title}</title></head><body><H1>{title}</H1><hr>\r\n"
            f"<pre>{''.join(rows)}</pre><hr></body></html>\r\n")
    return page.encode("utf-8")


def _href(path: str) -> str:
    return html.escape(quote(path.encode("utf-8"), safe="/"), quote=True)


# --- the only I/O -------------------------------------------------------------------------

class DiskFileSystem:
    """The real file system: realpath (symlinks resolved) and stat, nothing else."""

    def lookup(self, root: str, parts: tuple[str, ...]) -> DiskEntry | Literal["escaped"] | None:
        real_root = os.path.realpath(root)
        real = os.path.realpath(os.path.join(real_root, *parts))
        if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
            return ESCAPED
        try:
            st = os.stat(real)
        except (OSError, ValueError):  # missing, a loop, no permission, a NUL
            return None
        kind: Literal["file", "dir", "other"] = (
            "file" if stat.S_ISREG(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode)
            else "other")
        relative = tuple(os.path.relpath(real, real_root).split(os.sep)) \
            if real != real_root else ()
        return DiskEntry(real, relative, kind, st.st_size, st.st_mtime_ns, st.st_ino,
                         st.st_dev)

    def listdir(self, directory: str) -> list[str]:
        try:
            return os.listdir(directory)
        except OSError:
            return []


DISK = DiskFileSystem()


class FileChanged(OSError):
    """The file is no longer the one resolved (replaced, resized, or now a symlink)."""


def open_file(target: FileTarget) -> int:
    """A read-only descriptor for `target`, checked to be the very file resolved: opened
    without following a symlink in its last component, then compared by fstat."""
    fd = os.open(target.real_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino, st.st_size,
                                             st.st_mtime_ns) != (
                target.device, target.inode, target.size, target.mtime_ns):
            raise FileChanged(f"{target.real_path} changed since it was resolved")
    except BaseException:
        os.close(fd)
        raise
    return fd


def file_stamp(real_path: str) -> tuple[int, int, int, int] | None:
    """(device, inode, size, mtime_ns) of a file now, or None: for cache revalidation."""
    try:
        st = os.stat(real_path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def protect(paths: Iterable[str | None]) -> frozenset[str]:
    """Real paths of files never to serve (pass ServerConfig.source)."""
    return frozenset(os.path.realpath(p) for p in paths if p)


__all__ = [
    "BAD_PATH", "CONTENT_TOO_LARGE", "DIRECTORY_LISTING_DENIED", "DISK", "DOUBLE_ESCAPED",
    "EXTENSION_DENIED", "HEADER_TOO_LONG", "HIDDEN_NAMESPACE", "HIGH_BIT_CHARACTERS",
    "MIME_UNKNOWN", "NOT_FOUND", "QUERY_SEQUENCE_DENIED", "QUERY_TOO_LONG",
    "URL_SEQUENCE_DENIED", "URL_TOO_LONG", "VERB_DENIED", "DiskEntry", "DiskFileSystem",
    "FileChanged", "FileSystem", "FileTarget", "Listing", "ListingEntry", "Outcome",
    "Redirect", "Refusal", "RequestFilter", "StaticRules", "file_headers", "file_stamp",
    "open_file", "physical_root", "protect", "render_listing", "resolve",
]
