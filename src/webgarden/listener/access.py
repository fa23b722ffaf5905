"""The site logs (W3C Extended) and the HTTPERR log, written: the file side of `w3c.py`.

Every response the listener completes comes here once, from `connection.py`: `exchange`
when an exchange ends (a worker's response, a cache hit on the full path, a static file,
a 304, an error page, a request its client abandoned), `hit` for the response cache's
fast path, which has no exchange. What HTTP.sys logs in HTTPERR comes to `httperr`
(through `Listener.httperr` for a request that could not be parsed and for timers).

What goes where:

* A request that reached a site is written to that site's log, whoever answered it (the
  worker, the cache, a file, or the listener's own 404/503 page) and however it ended:
  `sc-win32-status` is 64 when the client went away before the response was complete
  (ERROR_NETNAME_DELETED, as IIS logs it), 1236 when the server cut the connection
  (ERROR_CONNECTION_ABORTED), 2 for a file that does not exist, 0 otherwise.
  IIS leaves HTTP.sys's own 503s out of the site log; webgarden writes them to both, so
  that a site's log counts every answer the site gave.
* HTTPERR gets what HTTP.sys logs there: the error pages the listener makes itself
  (with the page's reason: BadRequest, Hostname, QueueFull, AppOffline, ...), requests
  that never reached a site, connection timers (`Timer_*`), and requests whose client
  left before the answer (`Client_Reset` while queued, `Connection_Dropped` once
  dispatched). Each HTTPERR line is also an `httperr` event in the event log.

Files are `logfiles.RollingFile`s: buffered, written when `flushByEntryCountW3CLog` lines
are waiting (0: when 64 KB are), at every listener tick (once a second), and at shutdown.
A file that cannot be written costs its buffered lines, one `log.unwritable` event (and
`log.writable` once it works again), and nothing else: the server keeps serving.

Fields filled the listener's way: `time-taken` runs from the request's first byte to the
moment the last byte is handed to the socket's transport (for a file, the last sendfile);
`cs-bytes` is the request head and body as parsed (chunk framing not counted); `sc-bytes`
is every byte written for the response; `cs-username` is `-` (the listener does not
authenticate); `s-computername` is the host name.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from time import monotonic
from typing import TYPE_CHECKING, Any

from webgarden import SERVER_NAME
from webgarden.config.model import LogFileConfig, ServerConfig, SiteConfig
from webgarden.listener import w3c
from webgarden.listener.logfiles import RollingFile
from webgarden.listener.w3c import DASH, PLUS, escape

if TYPE_CHECKING:
    from webgarden.events import EventLog
    from webgarden.listener.cache import Entry
    from webgarden.listener.exchange import Exchange
    from webgarden.listener.http1 import RequestHead
    from webgarden.listener.roles import Client

#: sc-win32-status for a response cut short by the client, and by the server.
CLIENT_GONE = 64
SERVER_ABORTED = 1236
FILE_NOT_FOUND = 2


class SiteLog:
    """One site's W3C log: its format, its constant fields and its file."""

    __slots__ = ("computer_name", "custom_count", "custom_limit", "custom_positions", "file",
                 "format", "headers", "reuse_head", "site_id", "site_name")

    def __init__(self, site: SiteConfig, directory: str, computer_name: bytes,
                 on_error: Callable[[str, OSError | None], None]) -> None:
        log = site.log_file
        custom = log.custom_fields
        self.site_id = site.id
        self.format = w3c.W3CFormat(log.log_ext_file_flags,
                                    [f.log_field_name for f in custom.fields],
                                    log.max_log_line_length)
        self.site_name = _site_name(site)
        self.computer_name = computer_name
        # The request headers looked up when an entry is written (lower-case name ->
        # record position; a custom field's counts on from the end of FIELDS); User-Agent
        # and Referer come from the parser. Custom fields of other kinds are "-".
        self.headers = {w3c.HEADER_FIELDS[i]: i for i in (w3c.COOKIE, w3c.HOST)
                        if i in self.format.header_positions}
        for i, f in enumerate(custom.fields):
            if f.source_type == "RequestHeader":
                self.headers.setdefault(f.source_name.lower().encode(), len(w3c.FIELDS) + i)
        self.custom_count = len(custom.fields)
        self.custom_positions = range(len(w3c.FIELDS), len(w3c.FIELDS) + self.custom_count)
        # A line may reuse the head of the connection's previous line (`_entry`).
        self.reuse_head = self.format.splittable and not self.headers
        self.custom_limit = custom.max_custom_field_length
        period, local = log.period, log.local_time_rollover
        clock = time.localtime if local else time.gmtime

        def name(second: int) -> str:
            return w3c.file_name(period, clock(second))

        by_size = period == "MaxSize"
        self.file = RollingFile(
            directory, lambda started: self.format.header(SERVER_NAME, started),
            name=None if by_size else name, sequence_prefix="u_extend",
            truncate_size=log.truncate_size if by_size else 0,
            flush_entries=log.flush_by_entry_count_w3c_log, on_error=on_error)


def _site_name(site: SiteConfig) -> bytes:
    """s-sitename: the service and site id (logSiteId, the default), or the site's name."""
    return b"W3SVC%d" % site.id if site.log_file.log_site_id else escape(site.name.encode())


class AccessLogs:
    """The listener's logs: one `SiteLog` per site that writes one, and HTTPERR."""

    def __init__(self, config: ServerConfig, events: EventLog) -> None:
        self.events = events
        self.computer_name = escape(socket.gethostname().encode())
        self.sites: dict[int | str, SiteLog] = {}  # by site name
        self._announced: set[tuple[int, LogFileConfig]] = set()  # unsupported, said once
        self.httperr_file: RollingFile | None = None
        self._by_config: dict[tuple[int, LogFileConfig, str], SiteLog] = {}
        self._offset = time.time() - monotonic()  # wall clock = monotonic + offset
        self._second = -1
        self._stamp = (b"", b"")
        self.reconfigure(config)

    # -- configuration ------------------------------------------------------------------

    def reconfigure(self, config: ServerConfig) -> None:
        """Open logs for a (new) configuration. A site whose log settings did not change
        keeps its file; the others are flushed and start over, with a new header."""
        base = os.path.dirname(os.path.abspath(config.source)) if config.source else os.getcwd()
        env, euid = os.environ, os.geteuid()
        sites: dict[int | str, SiteLog] = {}
        by_config: dict[tuple[int, LogFileConfig, str], SiteLog] = {}
        first_directory = ""
        for site in config.sites:
            log = site.log_file
            directory = w3c.resolve_directory(log.directory, env=env, euid=euid, base=base)
            first_directory = first_directory or directory
            if not self._writes(site, log):
                continue
            key = (site.id, log, directory)
            found = self._by_config.get(key)
            if found is None:
                found = SiteLog(site, os.path.join(directory, f"W3SVC{site.id}"),
                                self.computer_name, self._file_error)
            found.site_name = _site_name(site)  # a site renamed keeps its file
            sites[site.name] = by_config[key] = found
        for key, old in self._by_config.items():
            if key not in by_config:
                old.file.close()
        self.sites, self._by_config = sites, by_config
        httperr_directory = os.path.join(first_directory, "HTTPERR")
        if self.httperr_file is None or self.httperr_file.directory != httperr_directory:
            if self.httperr_file is not None:
                self.httperr_file.close()
            self.httperr_file = RollingFile(
                httperr_directory, lambda started: w3c.httperr_header(SERVER_NAME, started),
                sequence_prefix="httperr", truncate_size=w3c.HTTPERR_TRUNCATE_SIZE,
                on_error=self._file_error)

    def _writes(self, site: SiteConfig, log: LogFileConfig) -> bool:
        """Whether webgarden writes this site's log; says once why not when it cannot."""
        if not log.enabled:
            return False
        first = (site.id, log) not in self._announced
        self._announced.add((site.id, log))
        if log.log_format != "W3C":
            if first:
                self.events.emit(
                    "log.format_unsupported", site=site.name, format=log.log_format,
                    detail="webgarden writes only the W3C format; this site's requests "
                           "are not logged")
            return False
        if "File" not in log.log_target_w3c:
            if first:
                self.events.emit("log.target_unsupported", site=site.name,
                                 target=sorted(log.log_target_w3c),
                                 detail="webgarden writes W3C logs to files only (no ETW); "
                                        "this site's requests are not logged")
            return False
        for field in log.custom_fields.fields:
            if field.source_type != "RequestHeader" and first:
                self.events.emit(
                    "log.custom_field_unsupported", site=site.name,
                    field=field.log_field_name, source_type=field.source_type,
                    detail="only RequestHeader custom fields are filled; this one is -")
        return True

    def _file_error(self, path: str, exc: OSError | None) -> None:
        if exc is None:
            self.events.emit("log.writable", file=path)
        else:
            self.events.emit("log.unwritable", file=path,
                             error=exc.strerror or str(exc),
                             detail="its lines are dropped until it can be written; "
                                    "requests are served")

    # -- the clock, the tick, shutdown ----------------------------------------------------

    def tick(self) -> None:
        """Once a second: follow the wall clock, and write what is buffered."""
        self._offset = time.time() - monotonic()
        self.flush()

    def flush(self) -> None:
        for log in self.sites.values():
            log.file.flush()
        if self.httperr_file is not None:
            self.httperr_file.flush()

    def close(self) -> None:
        for log in self.sites.values():
            log.file.close()
        if self.httperr_file is not None:
            self.httperr_file.close()

    # -- entries ------------------------------------------------------------------------

    def exchange(self, conn: Client, ex: Exchange, win32: int = 0) -> None:
        """An exchange ended: answered (`win32` 0) or cut short (64, 1236)."""
        sent = conn.sent - conn.logged  # responses go out in order: what went since the last
        conn.logged = conn.sent
        error = ex.error
        if error is not None:
            self.httperr(conn, error.status, error.reason, ex)
        elif win32 == CLIENT_GONE:
            # Dispatched, or answering: HTTP.sys's words for a request its client dropped.
            responded = ex.status != 0
            reason = "Connection_Dropped" if responded or ex.link is not None else "Client_Reset"
            self.httperr(conn, ex.status, reason, ex)
        route = ex.route
        if route is None:
            return  # it never reached a site: HTTPERR has it
        log = self.sites.get(route.site)
        if log is None:
            return
        now = monotonic()
        second = int(now + self._offset)
        if second != self._second:
            self._next_second(second)
        taken = int((now - ex.began) * 1000)
        method, target, version, agent, referer = (ex.method, ex.target, ex.version,
                                                   ex.user_agent, ex.referer)
        status, substatus, win32 = ex.status, ex.substatus, win32 or ex.win32
        key = (log, second, method, target, version, agent, referer, status, substatus,
               win32, sent)
        last = conn.log_last
        if last is not None and last[0] == key:
            log.file.add(log.format.finish(last[1], ex.received, taken), second)
        else:
            self._write(log, conn, key, method, target, ex.url_path, version, agent, referer,
                        status, substatus, win32, sent, ex.received, taken, ex.headers)

    def hit(self, conn: Client, head: RequestHead, entry: Entry, sent: int,
            version: str = "HTTP/1.1") -> None:
        """A response-cache hit answered on the fast path (a plain GET, 200; HTTP/1.1, or
        an HTTP/2 stream: `version`)."""
        log = self.sites.get(entry.key.site)
        if log is None:
            return
        now = monotonic()
        second = int(now + self._offset)
        if second != self._second:
            self._next_second(second)
        url = head.url
        received = len(url) + head.size + 17  # "GET " url " HTTP/1.1" CRLF ... CRLF
        taken = int((now - head.began) * 1000)
        agent, referer = head.user_agent, head.referer
        key = (log, second, url, agent, referer, entry)  # the entry fixes all the rest
        last = conn.log_last
        if last is not None and last[0] == key:
            log.file.add(log.format.finish(last[1], received, taken), second)
        else:
            self._write(log, conn, key, "GET", url, entry.key.path, version, agent, referer,
                        200, 0, 0, sent, received, taken, head.headers)

    def _write(self, log: SiteLog, conn: Client, key: tuple[Any, ...], method: str,
               target: bytes, path: str, version: str, agent: bytes, referer: bytes,
               status: int, substatus: int, win32: int, sent: int, received: int, taken: int,
               headers: Sequence[tuple[bytes, bytes]]) -> None:
        """A line made from its parts (`path`: the canonical path, "" for the raw one).

        Its head is kept on the connection under `key`, which holds everything the head is
        made of but the connection's own addresses: the next line with the same key (a
        client repeating a request on a keep-alive connection within the second) reuses
        it, and only its cs-bytes and time-taken are formatted (`W3CFormat.finish`)."""
        second = key[1]
        addresses = conn.log_addresses or _addresses(conn)
        found = _headers(headers, log) if log.headers else _NONE
        stem = path.encode("latin-1") if path else target.partition(b"?")[0]
        query = target.partition(b"?")[2]
        date, clock = self._stamp
        record: tuple[Any, ...] = (
            date, clock, log.site_name, log.computer_name, addresses[0], method.encode(),
            stem.translate(PLUS) if stem else DASH, query.translate(PLUS) if query else DASH,
            addresses[1], DASH, addresses[2], version.encode(),
            agent.translate(PLUS) if agent else DASH, found.get(w3c.COOKIE, DASH),
            referer.translate(PLUS) if referer else DASH, found.get(w3c.HOST, DASH),
            STATUS[status], substatus, win32, sent, received, taken,
        )
        if log.reuse_head:
            head = log.format.head(record)
            conn.log_last = (key, head)
            log.file.add(log.format.finish(head, received, taken), second)
            return
        if log.custom_count:
            record += tuple([found.get(i, DASH) for i in log.custom_positions])
        log.file.add(log.format.line(record), second)

    def _next_second(self, second: int) -> None:
        self._second = second
        self._stamp = w3c.stamp(second)

    def httperr(self, conn: Client, status: int, reason: str,
                ex: Exchange | None = None) -> None:
        """One HTTPERR entry (and its `httperr` event)."""
        self.events.emit("httperr", client=f"{conn.client[0]}:{conn.client[1]}",
                         status=status or None, reason=reason)
        if self.httperr_file is None:
            return
        second = int(monotonic() + self._offset)
        if second != self._second:
            self._next_second(second)
        date, clock = self._stamp
        if ex is not None:
            version, method, uri = ex.version.encode(), ex.method.encode(), ex.target
            site_id = self._site_id(ex)
            queue = ex.pool.name if ex.pool is not None else ""
        else:
            version, method, uri = conn.failed_request
            site_id, queue = 0, ""
        self.httperr_file.add(w3c.httperr_line(
            date, clock, conn.client, conn.server, version, method, uri, status, site_id,
            reason, queue), second)

    def _site_id(self, ex: Exchange) -> int:
        if ex.route is None:
            return 0
        log = self.sites.get(ex.route.site)
        return log.site_id if log is not None else 0


_NONE: dict[int, bytes] = {}
#: sc-status by status code; 0 (no response went out) is "-".
STATUS = (DASH, *(b"%d" % code for code in range(1, 1000)))


def _addresses(conn: Client) -> tuple[bytes, bytes, bytes]:
    """s-ip, s-port and c-ip of a connection, kept on it."""
    server, client = conn.server, conn.client
    found = conn.log_addresses = (
        escape(server[0].encode()), b"%d" % server[1] if server[0] else DASH,
        escape(client[0].encode()))
    return found


def _headers(headers: Sequence[tuple[bytes, bytes]], log: SiteLog) -> dict[int, bytes]:
    """The values of the request headers a site logs, escaped, by record position.
    A repeated header is joined as HTTP joins it (cookies with "; ")."""
    found: dict[int, bytes] = {}
    wanted = log.headers
    for name, value in headers:
        where = wanted.get(name.lower())
        if where is None or not value:
            continue
        if where >= len(w3c.FIELDS):
            value = value[: log.custom_limit]
        value = value.translate(w3c.PLUS)
        if where in found:
            value = found[where] + (b";+" if where == w3c.COOKIE else b",+") + value
        found[where] = value
    return found
