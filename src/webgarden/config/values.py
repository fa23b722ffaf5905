"""Attribute value types of applicationHost.config: text in, typed value or a reason out.

Rules, from IIS 10's shipped schema (IIS_schema.xml, see shared/reference/iis-semantics.md §0):

- bool: `true` or `false`, in any case.
- uint, int, int64: decimal digits. `integerRange "min,max[,exclude]"` bounds them; with
  `exclude` the range is the forbidden one (`maxBandwidth`: 0..1023 is refused, because
  HTTP.sys cannot throttle below 1024 bytes/s).
- timeSpan: `hh:mm:ss`, `d.hh:mm:ss` or `d:hh:mm:ss`, each with an optional `.fffffff`.
  Without days the hours may exceed 23: `periodicRestart/@time`'s own default is `29:00:00`.
  Stored as float seconds. `timeSpanRange "min,max,granularity"` is in seconds, and a value
  must be a whole multiple of the granularity (`idleTimeout` moves in minutes). A bare number
  is refused: .NET would read `20` as twenty *days*, which is never what was meant.
- enum: one name, any case, kept in the schema's spelling; flags: names joined by commas.
- string validators: `applicationPoolName` fails on any of ``|<>&"/[]+=;:,?*@``; `siteName`
  on `/` or `?`; `applicationPath`/`virtualDirectoryPath` start with `/`, do not end with `/`
  (except `/` itself) and have no `.` or `..` segment; `nonEmptyString`.

A kind's `parse` raises ValueError whose text completes `attribute queueLength="5": `.
Some IIS values mean "the server's own default": `zero_means` maps them (maxProcesses 0 is
"one per NUMA node", headerWaitTimeout 0 is "HTTP.sys's 2 minutes").
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

UINT_MAX = 4294967295
INT_MAX = 2147483647


def suggestion(word: str, choices: Iterable[str]) -> str:
    """"; did you mean X?" for the closest choice (case-insensitive), or ""."""
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean {by_lower[close[0]]}?" if close else ""


class Kind(ABC, Generic[T]):
    """How one attribute's text becomes a value."""

    @abstractmethod
    def parse(self, text: str) -> T: ...

    @abstractmethod
    def format(self, value: T) -> str:
        """The value as it would be written in the file."""

    @abstractmethod
    def describe(self) -> str:
        """The type and range, for help and documentation."""


class Bool(Kind[bool]):
    def parse(self, text: str) -> bool:
        lowered = text.lower()
        if lowered not in ("true", "false"):
            raise ValueError("must be true or false")
        return lowered == "true"

    def format(self, value: bool) -> str:
        return "true" if value else "false"

    def describe(self) -> str:
        return "true | false"


class Integer(Kind[int]):
    """uint / int / int64 with IIS's `integerRange` (inclusive; `exclude` inverts it)."""

    def __init__(
        self, lo: int = 0, hi: int = UINT_MAX, *, exclude: tuple[int, int] | None = None,
        zero_means: int | None = None,
    ) -> None:
        self.lo, self.hi, self.exclude, self.zero_means = lo, hi, exclude, zero_means

    def parse(self, text: str) -> int:
        if not re.fullmatch(r"-?[0-9]+", text):
            raise ValueError("must be a whole number")
        value = int(text)
        if not self.lo <= value <= self.hi:
            raise ValueError(f"must be between {self.lo} and {self.hi}")
        if self.exclude and self.exclude[0] <= value <= self.exclude[1]:
            raise ValueError(f"must not be between {self.exclude[0]} and {self.exclude[1]}")
        if value == 0 and self.zero_means is not None:
            return self.zero_means
        return value

    def format(self, value: int) -> str:
        return str(value)

    def describe(self) -> str:
        text = f"integer {self.lo}..{self.hi}"
        if self.exclude:
            text += f", not {self.exclude[0]}..{self.exclude[1]}"
        return text


_TIMESPAN = re.compile(
    r"(?:(?P<days>[0-9]+)[.:])?(?P<h>[0-9]+):(?P<m>[0-9]{1,2}):(?P<s>[0-9]{1,2})"
    r"(?:\.(?P<frac>[0-9]{1,7}))?"
)


def parse_timespan(text: str) -> float:
    """`hh:mm:ss`, `d.hh:mm:ss` or `d:hh:mm:ss` (optional `.fffffff`) -> seconds."""
    match = _TIMESPAN.fullmatch(text)
    if match is None:
        raise ValueError("must be a time span hh:mm:ss or d.hh:mm:ss (e.g. 00:00:30)")
    days, hours = match["days"], int(match["h"])
    minutes, seconds = int(match["m"]), int(match["s"])
    if minutes > 59 or seconds > 59 or (days is not None and hours > 23):
        raise ValueError("is not a time span: minutes and seconds go to 59, hours to 23 "
                         "when days are given")
    fraction = float(f"0.{match['frac']}") if match["frac"] else 0.0
    return (int(days or 0) * 24 + hours) * 3600.0 + minutes * 60 + seconds + fraction


def format_timespan(seconds: float) -> str:
    """Seconds -> `hh:mm:ss`, or `d.hh:mm:ss` from a day up (IIS's own spelling)."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    text = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    if seconds != whole:
        text += f"{seconds - whole:.7f}"[1:].rstrip("0")
    return f"{days}.{text}" if days else text


_BYTE_UNITS = ("KiB", "MiB", "GiB", "TiB")


def format_bytes(count: float) -> str:
    """Bytes -> `512 B`, `1.5 KiB`, `12.3 MiB`, `2.0 GiB`: the one spelling of a size the
    command line prints (binary units, as `free -h` and `ls -lh`, one decimal from KiB up)."""
    if count < 1024:
        return f"{int(count)} B"
    value = float(count)
    for unit in _BYTE_UNITS:
        value /= 1024
        if round(value, 1) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


class TimeSpan(Kind[float]):
    """timeSpan with IIS's `timeSpanRange "min,max,granularity"` (seconds)."""

    def __init__(
        self, lo: int = 0, hi: int | None = None, granularity: int = 1, *,
        zero_means: float | None = None,
    ) -> None:
        self.lo, self.hi, self.granularity, self.zero_means = lo, hi, granularity, zero_means

    def parse(self, text: str) -> float:
        value = parse_timespan(text)
        hi = self.hi
        if value < self.lo or (hi is not None and value > hi):
            top = format_timespan(hi) if hi is not None else "any"
            raise ValueError(f"must be between {format_timespan(self.lo)} and {top}")
        if self.granularity > 1 and value % self.granularity:
            raise ValueError(f"must be a whole number of {self.granularity}-second steps "
                             f"(granularity {format_timespan(self.granularity)})")
        if value == 0 and self.zero_means is not None:
            return self.zero_means
        return value

    def format(self, value: float) -> str:
        return format_timespan(value)

    def describe(self) -> str:
        top = format_timespan(self.hi) if self.hi is not None else "any"
        step = f", steps of {self.granularity} s" if self.granularity > 1 else ""
        return f"time span {format_timespan(self.lo)}..{top}{step}"


class Choice(Kind[str]):
    """IIS enum: one of the names, matched in any case, kept in the schema's spelling."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self._by_lower = {n.lower(): n for n in names}

    def parse(self, text: str) -> str:
        try:
            return self._by_lower[text.lower()]
        except KeyError:
            raise ValueError(f"must be one of {', '.join(self.names)}"
                             f"{suggestion(text, self.names)}") from None

    def format(self, value: str) -> str:
        return value

    def describe(self) -> str:
        return " | ".join(self.names)


class Flags(Kind[frozenset[str]]):
    """IIS flags: names joined by commas (`Time, Requests`); empty means none."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self._one = Choice(*names)

    def parse(self, text: str) -> frozenset[str]:
        parts = [p.strip() for p in text.split(",")]
        if parts == [""]:
            return frozenset()
        return frozenset(self._one.parse(p) for p in parts)

    def format(self, value: frozenset[str]) -> str:
        return ", ".join(n for n in self.names if n in value)

    def describe(self) -> str:
        return "flags: " + ", ".join(self.names)


Validator = Callable[[str], str | None]  # the reason the text is wrong, or None


def non_empty(text: str) -> str | None:
    return "must not be empty" if not text else None


def trimmed(text: str) -> str | None:
    return "must not start or end with white space" if text != text.strip() else None


POOL_NAME_FORBIDDEN = '|<>&"/[]+=;:,?*@'


def pool_name(text: str) -> str | None:
    """IIS's `applicationPoolName` validator."""
    if not text:
        return "must not be empty"
    bad = sorted({c for c in text if c in POOL_NAME_FORBIDDEN})
    return f"must not contain {' '.join(bad)} (pool names exclude {POOL_NAME_FORBIDDEN})" if bad \
        else None


def site_name(text: str) -> str | None:
    """IIS's `siteName` validator."""
    if not text:
        return "must not be empty"
    return "must not contain / or ?" if "/" in text or "?" in text else None


def url_path(text: str) -> str | None:
    """IIS's `applicationPath` / `virtualDirectoryPath` validator."""
    if not text.startswith("/"):
        return 'must start with "/"'
    if text != "/" and text.endswith("/"):
        return 'must not end with "/" (only the root "/" does)'
    if any(segment in (".", "..") for segment in text.split("/")):
        return 'must not contain a "." or ".." segment'
    return None


def module_callable(text: str) -> str | None:
    """webgarden's `app`: `package.module:callable` (attributes may be dotted too)."""
    module, sep, attr = text.partition(":")
    ok = sep and all(p.isidentifier() for p in module.split(".")) and all(
        p.isidentifier() for p in attr.split(".")
    )
    return None if ok else 'must be "module:callable", e.g. "shop.wsgi:application"'


class Text(Kind[str]):
    def __init__(self, *validators: Validator) -> None:
        self.validators = validators

    def parse(self, text: str) -> str:
        for validator in self.validators:
            reason = validator(text)
            if reason:
                raise ValueError(reason)
        return text

    def format(self, value: str) -> str:
        return value

    def describe(self) -> str:
        names = [v.__name__.replace("_", " ") for v in self.validators]
        return "string" + (f" ({', '.join(names)})" if names else "")


class PathList(Kind[tuple[str, ...]]):
    """Directories separated by `;` or `:`; relative ones are resolved by the loader."""

    def parse(self, text: str) -> tuple[str, ...]:
        return tuple(p.strip() for p in re.split(r"[;:]", text) if p.strip())

    def format(self, value: tuple[str, ...]) -> str:
        return ";".join(value)

    def describe(self) -> str:
        return "directories separated by ; or :"


class Protocol(Kind[str]):
    """A binding's protocol. IIS knows http, https, net.tcp, ...; webgarden serves http and
    https."""

    def parse(self, text: str) -> str:
        lowered = text.lower()
        if lowered in ("http", "https"):
            return lowered
        raise ValueError("unknown protocol: http or https"
                         f"{suggestion(text, ['http', 'https'])}")

    def format(self, value: str) -> str:
        return value

    def describe(self) -> str:
        return "http or https"


_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def parse_host(host: str) -> str:
    """A binding's host header: empty (any host), a name, or `*.name` (IIS 10 wildcard)."""
    host = host.lower()
    if not host:
        return ""
    name = host[2:] if host.startswith("*.") else host
    if "*" in name:
        raise ValueError("a wildcard is allowed only as the left-most label (*.example.com)")
    if len(host) > 255 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError(f"host {host!r} is not a valid host name")
    return host


class BindingInformation(Kind[tuple[str, int, str]]):
    """`IP:port:host` -> (address, port, host). IP is `*` (or empty) for every address, an
    IPv4 address, or an IPv6 address in brackets; the host may be empty or `*.example.com`.
    An IPv6 address is stored without its brackets, as sockets spell it."""

    def parse(self, text: str) -> tuple[str, int, str]:
        if text.startswith("["):
            address, close, rest = text[1:].partition("]")
            if not close or not rest.startswith(":"):
                raise ValueError('must be "IP:port:host" with an IPv6 address as [::1]')
            port, sep, host = rest[1:].partition(":")
            ip = self._address(address, version=6)
        else:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError('must be "IP:port:host", e.g. "*:8080:shop.example" '
                                 "(an IPv6 address goes in brackets)")
            address, port, host = parts
            sep = ":"
            ip = self._address(address, version=4)
        if not sep:
            raise ValueError('must be "IP:port:host"')
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"port {port!r} must be between 1 and 65535")
        return ip, int(port), parse_host(host)

    @staticmethod
    def _address(text: str, version: int) -> str:
        if text in ("", "*"):
            return "*"
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address (or * for every address)") from None
        if ip.version != version:
            raise ValueError("an IPv6 address must be written in brackets: [::1]:8080:")
        return ip.compressed

    def format(self, value: tuple[str, int, str]) -> str:
        address, port, host = value
        shown = f"[{address}]" if ":" in address else address
        return f"{shown}:{port}:{host}"

    def describe(self) -> str:
        return "IP:port:host"
