"""Validators, conditional requests and ranges (RFC 9110 §8.8, §13, §14). Pure functions.

Validators of a file: a strong ETag made of its inode, size and modification time in
nanoseconds, in hex and quoted (`"1a2b-3c4-17f0e1d2c3b4a5"`, Apache's recipe), and its
Last-Modified, an IMF-fixdate to the second.

`evaluate()` follows RFC 9110 §13.2.2's order, and stops at the first decision:

1. If-Match (strong comparison, `*` matches any current representation): none match -> 412.
2. Otherwise If-Unmodified-Since (a valid date): modified after it -> 412.
3. If-None-Match (weak comparison, `*`, lists): a match -> 304 for GET/HEAD, else 412.
4. Otherwise, for GET/HEAD, If-Modified-Since (a valid date, not in the future): not
   modified since -> 304. If-None-Match present makes If-Modified-Since ignored.
5. Range, GET only (§14.2: other methods ignore it), and only when If-Range, if present,
   holds: an entity-tag by strong comparison, a date by exact equality with Last-Modified.
   If-Range that does not hold -> the full 200.

Ranges (§14.1.2): `bytes=a-b`, `a-` and `-n`; `b` past the end is cut to the end. Choices:

- One satisfiable range -> 206 with `Content-Range: bytes a-b/size`.
- More than one satisfiable range -> 200, the whole representation. §14.2 lets a server
  ignore Range; webgarden sends no multipart/byteranges (browsers and download managers
  ask for one range; multi-range requests are rare, and a classic amplification vector).
- Unsatisfiable ranges are dropped; when none is left -> 416 with `bytes */size`.
- A malformed header, another unit, or more than MAX_RANGES ranges -> ignored (200).

Headers are looked up by lower-case name in a mapping the caller builds; a header sent
several times must be joined with ", " (the list syntax all of these use).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime

#: More ranges than this in one header and the header is ignored (RFC 9110 §14.2 allows a
#: server to ignore "many small ranges"; 16 covers every real client).
MAX_RANGES = 16


def make_etag(inode: int, size: int, mtime_ns: int) -> str:
    """A strong entity-tag, quoted, from a file's identity and version."""
    return f'"{inode:x}-{size:x}-{mtime_ns:x}"'


def http_date(seconds: float) -> str:
    """An IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`."""
    return formatdate(int(seconds), usegmt=True)


_HTTP_DATE = re.compile(
    r"[A-Za-z]{3}, \d\d [A-Za-z]{3} \d{4} \d\d:\d\d:\d\d GMT"  # IMF-fixdate
    r"|[A-Za-z]{6,9}, \d\d-[A-Za-z]{3}-\d\d \d\d:\d\d:\d\d GMT"  # obsolete RFC 850
    r"|[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d\d:\d\d:\d\d \d{4}"  # obsolete asctime
)


def parse_http_date(text: str) -> int | None:
    """Seconds since the epoch, or None: the three formats of RFC 9110 §5.6.7 only."""
    text = text.strip()
    if _HTTP_DATE.fullmatch(text) is None:
        return None
    try:
        return int(parsedate_to_datetime(text).timestamp())
    except (TypeError, ValueError, OverflowError):
        return None


@dataclass(frozen=True, slots=True)
class Validators:
    """What a representation can be compared by: its quoted ETag and its Last-Modified."""

    etag: str | None = None  # '"..."' or 'W/"..."'
    last_modified: int | None = None  # seconds since the epoch

    def headers(self) -> list[tuple[str, str]]:
        found = [("ETag", self.etag)] if self.etag else []
        if self.last_modified is not None:
            found.append(("Last-Modified", http_date(self.last_modified)))
        return found


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes first..last of the representation, both inclusive (as Content-Range says)."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class Decision:
    """What to answer: 200, 206, 304, 412 or 416; headers to add; the bytes to send."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    range: ByteRange | None = None  # for 206


OK = Decision(200)
NOT_MODIFIED = Decision(304)
PRECONDITION_FAILED = Decision(412)

_TAG = re.compile(r'\s*(W/)?("[^"]*")\s*(?:,|$)')


def parse_etags(value: str) -> list[str] | None:
    """The entity-tags of an If-Match / If-None-Match list, each with its W/ if weak;
    None for `*`. Unquoted tokens, which some clients send, are taken as quoted."""
    value = value.strip()
    if value == "*":
        return None
    tags: list[str] = []
    at = 0
    while at < len(value):
        match = _TAG.match(value, at)
        if match is not None:
            tags.append((match[1] or "") + match[2])
            at = match.end()
            continue
        comma = value.find(",", at)
        token = (value[at:] if comma < 0 else value[at:comma]).strip()
        if token:
            weak = token.startswith("W/")
            bare = token[2:] if weak else token
            tags.append(("W/" if weak else "") + '"' + bare.strip('"') + '"')
        at = len(value) if comma < 0 else comma + 1
    return tags


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def strong_match(a: str, b: str) -> bool:
    """RFC 9110 §8.8.3.2: both strong and identical."""
    return not a.startswith("W/") and not b.startswith("W/") and a == b


def weak_match(a: str, b: str) -> bool:
    """RFC 9110 §8.8.3.2: identical once W/ is set aside."""
    return _opaque(a) == _opaque(b)


def _any_matches(value: str, etag: str | None, strong: bool) -> bool:
    tags = parse_etags(value)
    if tags is None:  # "*": any current representation
        return True
    if etag is None:
        return False
    compare = strong_match if strong else weak_match
    return any(compare(tag, etag) for tag in tags)


def evaluate(method: str, headers: Mapping[str, str], validators: Validators,
             size: int | None = None, now: float | None = None) -> Decision:
    """The answer to a request for a representation with these validators and `size`.

    `size` None means the representation is not range-capable (Range is ignored); `now`,
    when given, makes an If-Modified-Since date in the future invalid (ignored)."""
    safe = method in ("GET", "HEAD")
    if_match = headers.get("if-match")
    if if_match is not None:
        if not _any_matches(if_match, validators.etag, strong=True):
            return PRECONDITION_FAILED
    else:
        since = _date(headers.get("if-unmodified-since"))
        if since is not None and (validators.last_modified is None
                                  or validators.last_modified > since):
            return PRECONDITION_FAILED
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        if _any_matches(if_none_match, validators.etag, strong=False):
            return NOT_MODIFIED if safe else PRECONDITION_FAILED
    elif safe and validators.last_modified is not None:
        since = _date(headers.get("if-modified-since"))
        if since is not None and (now is None or since <= now) \
                and validators.last_modified <= since:
            return NOT_MODIFIED
    if method != "GET" or size is None or "range" not in headers:
        return OK
    if_range = headers.get("if-range")
    if if_range is not None and not if_range_holds(if_range, validators):
        return OK
    return range_decision(headers["range"], size)


def _date(value: str | None) -> int | None:
    return None if value is None else parse_http_date(value)


def if_range_holds(value: str, validators: Validators) -> bool:
    """RFC 9110 §13.1.5: an entity-tag matches strongly, or a date equals Last-Modified."""
    value = value.strip()
    if value.startswith(('"', 'W/"')):
        return validators.etag is not None and strong_match(value, validators.etag)
    date = parse_http_date(value)
    return date is not None and date == validators.last_modified


_SPEC = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*")


def parse_range(value: str, size: int) -> list[ByteRange] | None:
    """The satisfiable ranges of a `bytes=` header for `size` bytes, in the order asked;
    None when the header is to be ignored (malformed, another unit, too many ranges)."""
    unit, eq, specs = value.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return None
    parts = specs.split(",")
    if len(parts) > MAX_RANGES:
        return None
    found: list[ByteRange] = []
    written = 0
    for part in parts:
        if not part.strip():
            continue  # empty list elements are allowed (RFC 9110 §5.6.1)
        written += 1
        match = _SPEC.fullmatch(part)
        if match is None or not (match[1] or match[2]):
            return None
        first, last = match[1], match[2]
        if first:
            start = int(first)
            end = int(last) if last else size - 1
            if last and end < start:
                return None  # invalid, not merely unsatisfiable
            if start < size:
                found.append(ByteRange(start, min(end, size - 1)))
        else:
            suffix = int(last)
            if suffix > 0 and size > 0:
                found.append(ByteRange(max(size - suffix, 0), size - 1))
    return found if written else None


def range_decision(value: str, size: int) -> Decision:
    """206 for one satisfiable range, 416 for none, 200 for several or a header ignored."""
    ranges = parse_range(value, size)
    if ranges is None or len(ranges) > 1:
        return OK
    if not ranges:
        return Decision(416, (("Content-Range", f"bytes */{size}"),))
    byte_range = ranges[0]
    return Decision(206, (("Content-Range",
                           f"bytes {byte_range.first}-{byte_range.last}/{size}"),), byte_range)
