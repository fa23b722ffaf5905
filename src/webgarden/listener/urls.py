"""URL canonicalization, HTTP.sys style. Sans-IO: a request target in, a canonical path out.

Rules (iis-semantics.md §3.1, KB820129):

* The target is split at the first `?` into path and query; the query is passed as is.
* The path is percent-decoded once and must decode to UTF-8; `\\` counts as `/`; `.` and
  `..` segments are resolved and a `..` above the root is refused; empty segments (`//`)
  are folded.
* Characters below 0x20 and 0x7F after decoding are refused (`AllowRestrictedChars` = 0).
* At most `UrlSegmentMaxCount` (255) segments of at most `UrlSegmentMaxLength` (260)
  characters each.
* An absolute-form target (`http://host/path`) gives its host, which takes the place of
  the Host header (RFC 9112 §3.2.2).

Refusals raise `InvalidURL` (400 "Invalid URL"). The common case (a plain ASCII path with
nothing to decode or resolve) is recognized by one regular expression and returned as is.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote_to_bytes

URL_SEGMENT_MAX_COUNT = 255
URL_SEGMENT_MAX_LENGTH = 260

_RESTRICTED = re.compile(r"[\x00-\x1f\x7f]")
# A path with nothing to canonicalize: ASCII segments of 1 to 260 characters that hold no
# `%`, `\\` or control character and do not start with a dot; an optional final slash.
_PLAIN_PATH = re.compile(rb"(?:/[^/%\\.\x00-\x1f\x7f-\xff][^/%\\\x00-\x1f\x7f-\xff]{0,259})*/?")


class InvalidURL(Exception):
    """The request target cannot be canonicalized; HTTP.sys answers 400 Invalid URL."""


class Target(NamedTuple):
    path: str  # canonical, decoded; PEP 3333 wants it as latin-1 of the UTF-8 bytes
    query: bytes
    host: bytes | None  # from an absolute-form target


def split_target(target: bytes) -> Target:
    if target[:1] == b"/":
        raw_path, _, query = target.partition(b"?")
        if (
            _PLAIN_PATH.fullmatch(raw_path) is not None
            and raw_path.count(b"/") <= URL_SEGMENT_MAX_COUNT
        ):
            return Target(raw_path.decode("ascii"), query, None)  # the common case
        return Target(canonical_path(raw_path), query, None)
    if target == b"*":
        return Target("*", b"", None)
    lowered = target[:8].lower()
    if not (lowered.startswith(b"http://") or lowered.startswith(b"https://")):
        raise InvalidURL("the request target is not an absolute path")
    rest = target.split(b"://", 1)[1]
    slash = rest.find(b"/")
    host, origin = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
    raw_path, _, query = origin.partition(b"?")
    return Target(canonical_path(raw_path), query, host)


def canonical_path(raw: bytes) -> str:
    decoded = unquote_to_bytes(raw) if b"%" in raw else raw
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidURL("the URL does not decode to UTF-8") from None
    text = decoded.decode("latin-1").replace("\\", "/")
    if _RESTRICTED.search(text) is not None:
        raise InvalidURL("the URL contains a control character")
    segments: list[str] = []
    parts = text.split("/")
    for part in parts[1:-1]:
        _push(segments, part)
    last = parts[-1] if len(parts) > 1 else ""
    trailing = last in ("", ".", "..")
    _push(segments, last)
    if len(segments) > URL_SEGMENT_MAX_COUNT:
        raise InvalidURL(f"the URL has more than {URL_SEGMENT_MAX_COUNT} segments")
    for segment in segments:
        if len(segment) > URL_SEGMENT_MAX_LENGTH:
            raise InvalidURL(f"a URL segment is longer than {URL_SEGMENT_MAX_LENGTH} characters")
    path = "/" + "/".join(segments)
    if trailing and segments:
        path += "/"
    return path


def _push(segments: list[str], part: str) -> None:
    if part in ("", "."):
        return
    if part == "..":
        if not segments:
            raise InvalidURL("the URL climbs above the root")
        segments.pop()
        return
    segments.append(part)
