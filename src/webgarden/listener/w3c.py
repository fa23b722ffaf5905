"""The W3C Extended log format of IIS's site logs, and HTTP.sys's HTTPERR format. Sans-IO:
values in, bytes out; file names from a clock reading; no files are touched here
(`access.py` writes them).

Rules (iis-semantics.md §6 and §3.3):

* A file starts with a header block: `#Software`, `#Version: 1.0`, `#Date` (UTC, when the
  file was started) and `#Fields`. Lines end in CRLF, as IIS writes them.
* The fields a site writes are its `logExtFileFlags`, always in IIS's fixed order
  (`FIELDS`), whatever order the flags were given in; custom fields follow them.
* Fields are separated by one space. Inside a value, spaces, tabs and other control
  characters are written as `+`; an empty value is `-`. Dates and times are UTC.
* File names: `u_exYYMMDD.log` (Daily), `u_exYYMMDDHH.log` (Hourly), `u_exYYMMWW.log`
  (Weekly, WW the week of the month, weeks starting on Sunday), `u_exYYMM.log` (Monthly),
  `u_extend<N>.log` (MaxSize). The `u_` says UTF-8, IIS's default (`logInUTF8`).
* HTTPERR: `httperr<N>.log`, its own fixed fields, the same escaping; `cs-method` is cut
  at 255 bytes and `cs-uri` at 4096.

The hot path is `W3CFormat.line`: a record is one tuple of every field's value, in
`FIELDS` order, and the line is one `itemgetter` (the site's fields) plus one `%` format,
both in C. Numbers are formatted by that `%`; text values arrive already escaped
(`escape`, one `bytes.translate`).

Where the files go (the Linux reading of IIS's Windows paths, `resolve_directory`):

* IIS's default directory, `%SystemDrive%\\inetpub\\logs\\LogFiles`, is webgarden's log
  directory: `/var/log/webgarden` for a server started as root, otherwise
  `$XDG_STATE_HOME/webgarden/logs` (`~/.local/state/webgarden/logs`), which the user can
  always write. A `SystemDrive` variable in the environment is used as Windows would.
* Any other value is a path: `%NAME%` is expanded from the environment (an undefined
  `%SystemDrive%` is the root, `/`), backslashes are slashes, and a relative path is
  relative to the configuration file's directory.
* Each site writes in its folder `W3SVC<site id>` below that directory; the HTTPERR log is
  the folder `HTTPERR` next to them (below the first site's directory), as HTTP.sys keeps
  its own `ErrorLoggingDir`.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal

EOL = b"\r\n"
DASH = b"-"
#: `value.translate(PLUS)`: spaces, tabs and the other control characters become "+".
PLUS = bytes.maketrans(bytes(range(33)) + b"\x7f", b"+" * 34)

Period = Literal["MaxSize", "Daily", "Weekly", "Monthly", "Hourly"]

# (logExtFileFlags name, #Fields name, how the value is formatted), in IIS's order of
# occurrence [W32 w3c-logging: "The data in the table is in the order of occurrence"].
FIELDS: tuple[tuple[str, str, bytes], ...] = (
    ("Date", "date", b"%s"),
    ("Time", "time", b"%s"),
    ("SiteName", "s-sitename", b"%s"),
    ("ComputerName", "s-computername", b"%s"),
    ("ServerIP", "s-ip", b"%s"),
    ("Method", "cs-method", b"%s"),
    ("UriStem", "cs-uri-stem", b"%s"),
    ("UriQuery", "cs-uri-query", b"%s"),
    ("ServerPort", "s-port", b"%s"),
    ("UserName", "cs-username", b"%s"),
    ("ClientIP", "c-ip", b"%s"),
    ("ProtocolVersion", "cs-version", b"%s"),
    ("UserAgent", "cs(User-Agent)", b"%s"),
    ("Cookie", "cs(Cookie)", b"%s"),
    ("Referer", "cs(Referer)", b"%s"),
    ("Host", "cs-host", b"%s"),
    ("HttpStatus", "sc-status", b"%s"),
    ("HttpSubStatus", "sc-substatus", b"%d"),
    ("Win32Status", "sc-win32-status", b"%d"),
    ("BytesSent", "sc-bytes", b"%d"),
    ("BytesRecv", "cs-bytes", b"%d"),
    ("TimeTaken", "time-taken", b"%d"),
)
#: Positions in a record, for the code that builds one.
(DATE, TIME, SITE_NAME, COMPUTER_NAME, SERVER_IP, METHOD, URI_STEM, URI_QUERY, SERVER_PORT,
 USER_NAME, CLIENT_IP, VERSION, USER_AGENT, COOKIE, REFERER, HOST, STATUS, SUBSTATUS,
 WIN32_STATUS, BYTES_SENT, BYTES_RECEIVED, TIME_TAKEN) = range(len(FIELDS))
FLAG_NAMES = frozenset(flag for flag, _, _ in FIELDS)
#: The request headers behind the cs(...) fields, by position.
HEADER_FIELDS = {USER_AGENT: b"user-agent", COOKIE: b"cookie", REFERER: b"referer",
                 HOST: b"host"}

HTTPERR_FIELDS = ("date time c-ip c-port s-ip s-port cs-version cs-method cs-uri sc-status "
                  "s-siteid s-reason s-queuename")
HTTPERR_MAX_METHOD = 255
HTTPERR_MAX_URI = 4096
#: HTTP.sys's ErrorLogFileTruncateSize default: the HTTPERR file rolls at 1 MB.
HTTPERR_TRUNCATE_SIZE = 1024 * 1024

IIS_DEFAULT_DIRECTORY = r"%SystemDrive%\inetpub\logs\LogFiles"
ROOT_LOG_DIRECTORY = "/var/log/webgarden"


def escape(value: bytes) -> bytes:
    """A value as a field: control characters and spaces as `+`, empty as `-`."""
    return value.translate(PLUS) if value else DASH


class W3CFormat:
    """One site's field list: its `#Fields` line and its lines.

    A line can also be made in two parts, `head` and `finish`: the fields that a repeated
    response-cache hit on one connection changes, `cs-bytes` and `time-taken`, come last
    in IIS's order, so the listener keeps the head of a connection's last hit and
    formats only the tail of the next (`splittable`: no custom field follows them)."""

    __slots__ = ("_head_pick", "_head_template", "_pick", "_tail", "_tail_template",
                 "_template", "custom", "header_positions", "max_line", "names", "splittable")

    def __init__(self, flags: Iterable[str], custom: Sequence[str] = (),
                 max_line: int = 65536) -> None:
        wanted = set(flags)
        unknown = wanted - FLAG_NAMES
        if unknown:
            raise ValueError(f"unknown logExtFileFlags: {', '.join(sorted(unknown))}")
        positions = [i for i, (flag, _, _) in enumerate(FIELDS) if flag in wanted]
        positions += range(len(FIELDS), len(FIELDS) + len(custom))
        self.names = tuple([FIELDS[i][1] for i in positions if i < len(FIELDS)] + list(custom))
        self.custom = tuple(custom)
        #: The cs(...) fields this format writes: the only headers worth looking up.
        self.header_positions = tuple(i for i in positions if i in HEADER_FIELDS)
        self.max_line = max_line
        self._template, self._pick = _compile(positions, EOL)
        self.splittable = not custom
        tail = [i for i in positions if i in (BYTES_RECEIVED, TIME_TAKEN)] if not custom else []
        head = [i for i in positions if i not in tail]
        self._head_template, self._head_pick = _compile(
            head, EOL if not tail else b" " if head else b"")
        self._tail = (BYTES_RECEIVED in tail) + 2 * (TIME_TAKEN in tail)
        self._tail_template = b"%s" + _compile(tail, EOL)[0] if tail else b"%s"  # head first

    def header(self, software: str, started: float) -> bytes:
        """The directive block that opens a file started at `started` (epoch seconds)."""
        return _directives(software, started, " ".join(self.names))

    def line(self, record: Sequence[Any]) -> bytes:
        """One entry; `record` holds every field of `FIELDS` (then the custom ones)."""
        out: bytes = self._template % self._pick(record)
        return out if len(out) <= self.max_line else self._cut(out)

    def head(self, record: Sequence[Any]) -> bytes:
        """The line without its cs-bytes and time-taken (`splittable` formats only)."""
        out: bytes = self._head_template % self._head_pick(record)
        return out

    def finish(self, head: bytes, received: int, taken: int) -> bytes:
        """`head` completed with cs-bytes and time-taken: the same bytes as `line`."""
        kind = self._tail
        if kind == 3:
            out: bytes = self._tail_template % (head, received, taken)
        elif kind == 2:
            out = self._tail_template % (head, taken)
        elif kind == 1:
            out = self._tail_template % (head, received)
        else:
            out = head
        return out if len(out) <= self.max_line else self._cut(out)

    def _cut(self, line: bytes) -> bytes:
        """maxLogLineLength: a longer line is cut, its line end kept."""
        return line[: self.max_line - len(EOL)] + EOL


def _compile(positions: Sequence[int], end: bytes
             ) -> tuple[bytes, Callable[[Sequence[Any]], tuple[Any, ...]]]:
    """A template for the fields at `positions` and what picks their values from a record."""
    specs = [FIELDS[i][2] if i < len(FIELDS) else b"%s" for i in positions]
    if not positions:
        return end, lambda record: ()
    if len(positions) == 1:
        only = positions[0]
        return specs[0] + end, lambda record: (record[only],)
    return b" ".join(specs) + end, itemgetter(*positions)


def httperr_header(software: str, started: float) -> bytes:
    return _directives(software, started, HTTPERR_FIELDS)


def httperr_line(date: bytes, clock: bytes, client: tuple[str, int], server: tuple[str, int],
                 version: bytes, method: bytes, uri: bytes, status: int, site_id: int,
                 reason: str, queue: str) -> bytes:
    """One HTTPERR entry. Unknown values: empty bytes or strings, 0 for numbers."""
    return b" ".join((
        date, clock, escape(client[0].encode()), b"%d" % client[1] if client[0] else DASH,
        escape(server[0].encode()), b"%d" % server[1] if server[0] else DASH,
        escape(version), escape(method[:HTTPERR_MAX_METHOD]), escape(uri[:HTTPERR_MAX_URI]),
        b"%d" % status if 0 < status <= 999 else DASH, b"%d" % site_id if site_id else DASH,
        escape(reason.encode()) if reason else b"Internal", escape(queue.encode()),
    )) + EOL


def _directives(software: str, started: float, fields: str) -> bytes:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started))
    return (f"#Software: {software}\r\n#Version: 1.0\r\n#Date: {when}\r\n"
            f"#Fields: {fields}\r\n").encode()


def stamp(second: int) -> tuple[bytes, bytes]:
    """The `date` and `time` fields for a UTC epoch second."""
    t = time.gmtime(second)
    return b"%04d-%02d-%02d" % (t.tm_year, t.tm_mon, t.tm_mday), \
        b"%02d:%02d:%02d" % (t.tm_hour, t.tm_min, t.tm_sec)


# -- files ---------------------------------------------------------------------------------

def week_of_month(t: time.struct_time) -> int:
    """IIS's WW: the 1st is in week 1 and a week starts on Sunday."""
    first_weekday = (t.tm_wday - (t.tm_mday - 1)) % 7  # Monday 0 ... Sunday 6
    before_first = (first_weekday + 1) % 7  # days of week 1 before the 1st, from Sunday
    return (t.tm_mday - 1 + before_first) // 7 + 1


def file_name(period: Period, t: time.struct_time, sequence: int = 1, utf8: bool = True) -> str:
    """The name of the file an entry at `t` goes to (`sequence` counts MaxSize files)."""
    prefix = "u_" if utf8 else ""
    yymm = f"{t.tm_year % 100:02d}{t.tm_mon:02d}"
    if period == "Daily":
        return f"{prefix}ex{yymm}{t.tm_mday:02d}.log"
    if period == "Hourly":
        return f"{prefix}ex{yymm}{t.tm_mday:02d}{t.tm_hour:02d}.log"
    if period == "Weekly":
        return f"{prefix}ex{yymm}{week_of_month(t):02d}.log"
    if period == "Monthly":
        return f"{prefix}ex{yymm}.log"
    return f"{prefix}extend{sequence}.log"


def latest_sequence(names: Iterable[str], prefix: str, suffix: str = ".log") -> int:
    """The highest N of the files `<prefix>N<suffix>` among `names`; 0 if there is none."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix))
    found = [int(m.group(1)) for m in map(pattern.fullmatch, names) if m is not None]
    return max(found, default=0)


def default_log_directory(env: Mapping[str, str], euid: int) -> str:
    """webgarden's own log directory: where IIS's default directory points."""
    if euid == 0:
        return ROOT_LOG_DIRECTORY
    state = env.get("XDG_STATE_HOME") or posixpath.join(env.get("HOME") or "/", ".local", "state")
    return posixpath.join(state, "webgarden", "logs")


def resolve_directory(value: str, *, env: Mapping[str, str], euid: int, base: str) -> str:
    """A `<logFile directory>` as a Linux path (see the module's docstring)."""
    by_name = {k.lower(): v for k, v in env.items()}
    if value.lower() == IIS_DEFAULT_DIRECTORY.lower() and "systemdrive" not in by_name:
        return default_log_directory(env, euid)

    def expand(match: re.Match[str]) -> str:
        name = match.group(1).lower()
        if name in by_name:
            return by_name[name].rstrip("/\\")
        return "" if name == "systemdrive" else match.group(0)

    path = re.sub(r"%([^%\\/]+)%", expand, value).replace("\\", "/")
    return posixpath.normpath(posixpath.join(base, path))
