"""What the listener answers itself, without a worker: response-cache hits and static files.

The adapter around the sans-IO rules in `cache`, `static`, `conditional` and
`compression`. For each routed GET or HEAD, before the pool queue:

1. A GET whose path is known to be cacheable (a file, or a dynamic response that said
   `Cache-Control: public` with `max-age`) is looked up in the response cache. A hit is
   written at once: the stored bytes with the current `Date` (a file's entry is checked
   against the file first: a changed file is never served stale).
2. A request that maps to a file under the application's physical path (`static.resolve`)
   is answered from the file: conditional requests (304, 412), ranges (206, 416), a small
   file from memory (compressed when the client accepts it and the type is compressible),
   a large one zero-copy with sendfile. A full 200 of a small file becomes a cache
   candidate, stored at its `frequentHitThreshold`th hit.
3. Anything else goes to the application; `observe` then offers its response to the cache.

Paths the cache has never seen as cacheable are not looked up at all, so an application's
ordinary requests pay one set lookup here.

Every answer written here is framed by `Exchange.frame` (the HTTP core's one writer,
`http1.frame_response`): Content-Length, keep-alive and the `Connection` line are never
decided in this module. A cached head is the bytes stored with the entry, Content-Length
included; the writer adds only the connection line a request needs.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from webgarden import SERVER_NAME as _SERVER
from webgarden import compression
from webgarden.config.model import ServerConfig
from webgarden.listener import access, cache, conditional, errors, static
from webgarden.listener.filewatch import FileWatch
from webgarden.listener.http1 import UNKNOWN, Body
from webgarden.listener.sendfile import FileSender

if TYPE_CHECKING:
    from webgarden.listener.exchange import Exchange
    from webgarden.listener.routing import Route

#: A file up to this size is read and sent from memory (and may be cached or compressed).
SMALL_FILE = 256 * 1024
#: Requests remembered for the fast path before it starts over.
FAST_ENTRIES = 4096

_PAGES = {400: errors.INVALID_URL, 403: errors.FORBIDDEN, 404: errors.NOT_FOUND,
          431: errors.REQUEST_TOO_LONG}


class LocalResponder:
    def __init__(self, config: ServerConfig) -> None:
        web = config.web_server
        self.cache = cache.ResponseCache(cache.CacheSettings.from_config(config))
        self.rules = static.StaticRules(web, protected=static.protect([config.source]))
        self.compression = compression.CompressionRules.from_config(web)
        self.cacheable: set[tuple[str, str]] = set()  # (site, path) seen cacheable
        # The fast path: the exact (port, address, Host, target, Accept-Encoding) of a plain
        # GET that was a hit once -> its entry. Checked against the cache on every use.
        self.fast: dict[tuple[int, str, bytes, bytes, bytes], cache.Entry] = {}
        # A file on the fast path is watched for change (filewatch), polled before the
        # first fast hit of each turn of the event loop, instead of stat'ed on every hit.
        self.watch = FileWatch()
        self._poll_due = True

    def fast_hit(self, key: tuple[int, str, bytes, bytes, bytes], now: float
                 ) -> cache.Entry | None:
        """The live cache entry for a plain GET seen before, or None (take the slow path)."""
        entry = self.fast.get(key)
        if entry is None:
            return None
        file = entry.file
        changed = False
        if file is not None:
            if self._poll_due:
                self.poll_changes()
                self._poll_due = False
                asyncio.get_running_loop().call_soon(self._next_turn)
            if file[0] not in self.watch.files:  # not watched (or just changed): look
                changed = static.file_stamp(file[0]) != file[1]
        if changed or not self.cache.touch(entry, now):  # changed, evicted or expired
            del self.fast[key]
            if changed and file is not None:
                self.cache.invalidate_file(file[0])  # never serve it stale
            return None
        return entry

    def _next_turn(self) -> None:
        self._poll_due = True

    def poll_changes(self) -> None:
        """Drop the cached answers of watched files that changed (also on the 1 s tick)."""
        for path in self.watch.poll():
            self.cache.invalidate_file(path)

    def revalidate(self) -> None:
        """Stat every cached file (the 1 s tick): inotify is silent about changes made on
        another machine to a network filesystem, and about a directory swapped for
        another by rename, so there a change is seen within a second."""
        self.cache.revalidate(static.file_stamp)

    def close(self) -> None:
        self.watch.close()

    # -- the request side ---------------------------------------------------------------

    def answer(self, ex: Exchange, route: Route, path: str, path_in_app: str,
               now: float) -> bool:
        """Answer `ex` here if it is a cache hit or a file. False: it is the app's."""
        method = ex.method
        if method != "GET" and method != "HEAD":
            return False
        if (method == "GET" and (route.site, path) in self.cacheable
                and self._from_cache(ex, route, path, now)):
            return True
        if not route.app.virtual_directories:
            return False
        found = static.resolve(self.rules, route.app, route.script_name, path_in_app, method)
        if found is None:
            return False
        if isinstance(found, static.Refusal):
            ex.substatus = found.substatus
            if found is static.NOT_FOUND:
                ex.win32 = access.FILE_NOT_FOUND  # as IIS logs a missing file: 404 0 2
            ex.fail(_PAGES.get(found.status, errors.NOT_FOUND), httperr=False)
        elif isinstance(found, static.Redirect):
            location = found.location + ("?" + ex.query.decode("latin-1") if ex.query else "")
            self._send(ex, found.status, "Moved Permanently", [("Location", location)], b"")
        elif isinstance(found, static.Listing):
            self._send(ex, 200, "OK", [("Content-Type", "text/html; charset=utf-8")],
                       static.render_listing(found))
        else:
            self._file(ex, route, path, found, now)
        return True

    def _request(self, ex: Exchange, route: Route, path: str, coding: str) -> cache.CacheRequest:
        return cache.CacheRequest(
            site=route.site, method=ex.method, path=path, query=ex.query,
            headers=_lower(ex), coding=coding, http_version=ex.version[5:],
            has_body=not ex.body_done or bool(ex.body),
        )

    def _coding(self, ex: Exchange) -> str:
        """The content coding that keys this request's cache entry (one rule everywhere)."""
        return self.compression.choose(_lower(ex), ex.version[5:], static=True)

    def _from_cache(self, ex: Exchange, route: Route, path: str, now: float) -> bool:
        found = self.cache.lookup(self._request(ex, route, path, self._coding(ex)), now)
        if isinstance(found, cache.Miss):
            ex.cache_key = found.key
            return False
        file = found.entry.file
        if file is not None:
            if ex.fast_key is not None:
                self.watch.watch(file[0])  # before the check: a later change is notified
            if static.file_stamp(file[0]) != file[1]:
                self.cache.invalidate_file(file[0])  # changed on disk: never serve it stale
                return False
        if ex.fast_key is not None and not found.not_modified and not found.entry.key.vary:
            if len(self.fast) >= FAST_ENTRIES:
                self.fast.clear()
            self.fast[ex.fast_key] = found.entry
        # The stored heads were prepared with their Content-Length: the HTTP core adds
        # only what keep-alive needs (nothing, on the fast path's requests).
        conn, entry = ex.conn, found.entry
        if found.not_modified:
            lines = ex.frame(304, UNKNOWN)
            conn.write(b"".join((entry.not_modified, lines, conn.date_line, b"\r\n")))
        else:
            lines = ex.frame(200, len(entry.tail) - 2, length_in_head=True)
            conn.write(b"".join((entry.head, lines, conn.date_line, entry.tail)))
        ex.finish()
        return True

    # -- files --------------------------------------------------------------------------

    def _file(self, ex: Exchange, route: Route, path: str, target: static.FileTarget,
              now: float) -> None:
        headers = _lower(ex)
        decision = conditional.evaluate(ex.method, headers, target.validators, size=target.size)
        extra = static.file_headers(self.rules, target) + list(decision.headers)
        if decision.status in (304, 412, 416):
            reason = {304: "Not Modified", 412: "Precondition Failed",
                      416: "Range Not Satisfiable"}[decision.status]
            keep = [(n, v) for n, v in extra if decision.status != 304 or n in _NOT_MODIFIED]
            self._send(ex, decision.status, reason, keep, b"", length=decision.status != 304)
            return
        try:
            fd = static.open_file(target)
        except OSError:
            ex.win32 = access.FILE_NOT_FOUND
            ex.fail(errors.NOT_FOUND, httperr=False)
            return
        first, count = 0, target.size
        status, reason = 200, "OK"
        if decision.range is not None:
            status, reason = 206, "Partial Content"
            first, count = decision.range.first, decision.range.length
        if count > SMALL_FILE:
            self._head(ex, status, reason, extra, count)
            if ex.method == "HEAD":
                os.close(fd)
                ex.finish()
                return
            ex.conn.start_file(FileSender(ex.conn, fd, first, count, ex.file_sent))
            return
        try:
            body = os.pread(fd, count, first)
        finally:
            os.close(fd)
        if status == 200:
            body, extra = self._maybe_compress(ex, headers, target, body, extra)
            self._offer(ex, route, path, extra, body, target, headers, now)
        self._send(ex, status, reason, extra, body)

    def _maybe_compress(self, ex: Exchange, headers: dict[str, str], target: static.FileTarget,
                        body: bytes, extra: list[tuple[str, str]]
                        ) -> tuple[bytes, list[tuple[str, str]]]:
        rules = self.compression
        if not rules.compressible(static=True, status=200, content_type=target.content_type,
                                  size=len(body), response_headers={}):
            return body, extra
        vary = [("Vary", "Accept-Encoding")]  # the answer depends on it, compressed or not
        coding = rules.choose(headers, ex.version[5:], static=True)
        if coding == "identity":
            return body, extra + vary
        packed = compression.compress(body, coding, rules.level(coding, static=True))
        changed = extra
        if target.etag is not None:
            etag = compression.variant_etag(target.etag, coding)
            changed = [(n, etag if n == "ETag" else v) for n, v in extra]
        return packed, [*changed, ("Content-Encoding", coding), *vary]

    def _offer(self, ex: Exchange, route: Route, path: str, extra: list[tuple[str, str]],
               body: bytes, target: static.FileTarget, headers: dict[str, str],
               now: float) -> None:
        if ex.method != "GET" or target.default_document:
            return
        key = (route.site, path)
        if key not in self.cacheable:
            self.cacheable.add(key)
            coding = dict(extra).get("Content-Encoding", "identity")
            found = self.cache.lookup(self._request(ex, route, path, coding), now)
            ex.cache_key = found.key if isinstance(found, cache.Miss) else None
        if ex.cache_key is not None:
            self.cache.store(ex.cache_key, cache.CacheResponse(
                200, "OK", [*extra, ("Server", _SERVER)], body, file=target), now)

    # -- responses from the application -------------------------------------------------

    def observe(self, ex: Exchange, block: bytes, body: bytes, now: float) -> None:
        """A whole 200 from the app to a routed GET: remember the path if it may be cached,
        and store the response once it is frequent (the cache decides)."""
        # find(), not `in`: `bytes in bytes` raises and clears a TypeError on its way.
        if (block.find(b"ublic") < 0 and block.find(b"max-age") < 0
                and not self.cache.settings.profiles):
            return
        lines = block.decode("latin-1").split("\r\n")
        fields = [tuple(s.strip() for s in ln.split(":", 1)) for ln in lines[1:] if ":" in ln]
        response = cache.CacheResponse(200, "OK", fields, body)  # type: ignore[arg-type]
        route, path = ex.route, ex.url_path
        if route is None:
            return
        key = (route.site, path)
        if key not in self.cacheable:
            self.cacheable.add(key)
            found = self.cache.lookup(self._request(ex, route, path, self._coding(ex)), now)
            ex.cache_key = found.key if isinstance(found, cache.Miss) else None
        if ex.cache_key is not None:
            self.cache.store(ex.cache_key, response, now)

    # -- writing ------------------------------------------------------------------------

    def _head(self, ex: Exchange, status: int, reason: str, headers: list[tuple[str, str]],
              length: int | None) -> None:
        """Write a response head; its framing and keep-alive are the HTTP core's choice."""
        lines = [f"HTTP/1.1 {status} {reason}\r\n", f"Server: {_SERVER}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers]
        framing = ex.frame(status, UNKNOWN if length is None else length)
        conn = ex.conn
        conn.write(b"".join(("".join(lines).encode("latin-1"), framing, conn.date_line,
                             b"\r\n")))

    def _send(self, ex: Exchange, status: int, reason: str, headers: list[tuple[str, str]],
              body: bytes, length: bool = True) -> None:
        self._head(ex, status, reason, headers, len(body) if length else None)
        if body and ex.body_mode is not Body.NONE:
            ex.conn.write(body)
        ex.finish()


_NOT_MODIFIED = frozenset({"ETag", "Last-Modified", "Cache-Control", "Expires", "Vary"})


def _lower(ex: Exchange) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in ex.headers:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        found[key] = found[key] + ", " + text if key in found else text
    return found

