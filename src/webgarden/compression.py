"""Response compression: Accept-Encoding negotiation and gzip / brotli. Pure functions.

Negotiation (RFC 9110 §12.5.3):

- No Accept-Encoding: identity. (The RFC allows any coding then; IIS, like every server,
  compresses only for clients that ask.)
- Each member is `coding;q=v`, q from 0 to 1 with up to three decimals; a member with a
  malformed q is ignored. `x-gzip` is gzip (§8.4.1.3). `*` stands for every coding not
  named. q=0 excludes.
- The offered coding with the highest q wins; on a tie the server's order decides
  (`<httpCompression><scheme>` order: br before gzip) and a compressed coding beats
  identity. Identity not named (nor covered by `*`) ranks below every named coding
  (`gzip;q=0.5` still gets gzip). Identity is acceptable unless `identity;q=0`, or
  `*;q=0` without an identity member; when nothing at all is acceptable, identity is sent
  anyway (the RFC's SHOULD).
- br is offered only when the `brotli` package is importable (optional, not a
  dependency). deflate is not offered: its zlib-versus-raw ambiguity is why browsers and
  servers moved to gzip.

What is compressed (`<urlCompression>`, `<httpCompression>`, IIS's rules):

- static files when doStaticCompression, application responses when doDynamicCompression;
- a 200 whose Content-Type (parameters aside) is enabled in staticTypes / dynamicTypes:
  the most specific entry decides (`text/html`, then `text/*`, then `*/*`);
- bodies of at least minFileSizeForComp bytes (IIS applies it to files; webgarden to
  responses too, when their length is known: a gzip of a few hundred bytes is no smaller);
- not when the response already has a Content-Encoding or says `Cache-Control:
  no-transform`; not for HTTP/1.0 requests, requests with Via (a proxy) or with Range,
  when noCompressionForHttp10 / noCompressionForProxies / noCompressionForRange say so.

A compressed response carries `Vary: Accept-Encoding`, and so does an uncompressed one
that could have been compressed (`vary_accept_encoding`), so caches keep the variants
apart; a compressed variant's strong ETag gets the coding appended (`variant_etag`, as
Apache does), since RFC 9110 §8.8.3 wants different representations to have different
strong validators.
"""

from __future__ import annotations

import gzip
import importlib
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webgarden.config.webserver import CompressibleType, WebServerConfig

try:
    BROTLI: Any = importlib.import_module("brotli")
except ImportError:  # optional: br is simply not offered
    BROTLI = None

#: Codings this process can produce, in the server's preference order.
AVAILABLE: tuple[str, ...] = ("br", "gzip") if BROTLI is not None else ("gzip",)

_Q = re.compile(r"q=([01](?:\.\d{0,3})?)", re.IGNORECASE)


def parse_accept_encoding(value: str) -> dict[str, float]:
    """Coding (lower case) -> q. Members with a malformed q are left out."""
    found: dict[str, float] = {}
    for member in value.split(","):
        coding, *params = (p.strip() for p in member.split(";"))
        coding = coding.lower()
        if not coding:
            continue
        q = 1.0
        for param in params:
            if param[:2].lower() == "q=":
                match = _Q.fullmatch(param)
                q = float(match[1]) if match is not None else -1.0
        if not 0.0 <= q <= 1.0:
            continue
        found["gzip" if coding == "x-gzip" else coding] = q
    return found


def negotiate(accept_encoding: str | None, offered: Sequence[str] = AVAILABLE) -> str:
    """The coding to send: one of `offered`, or "identity"."""
    if accept_encoding is None:
        return "identity"
    prefs = parse_accept_encoding(accept_encoding)
    star = prefs.get("*")
    # Identity not named is acceptable but ranks below any coding the client named.
    best, best_q = "identity", prefs.get("identity", 0.0 if star is None else star)
    for coding in offered:
        q = prefs.get(coding, star if star is not None else 0.0)
        if q > 0 and (q > best_q or (q == best_q and best == "identity")):
            best, best_q = coding, q
    return best


def type_enabled(types: Sequence[CompressibleType], content_type: str) -> bool:
    """The most specific entry for `content_type` (`a/b`, then `a/*`, then `*/*`) decides;
    no entry: not compressed."""
    mime = content_type.split(";", 1)[0].strip().lower()
    major = mime.split("/", 1)[0]
    by_type = {t.mime_type.lower(): t.enabled for t in types}
    for candidate in (mime, f"{major}/*", "*/*"):
        if candidate in by_type:
            return by_type[candidate]
    return False


@dataclass(frozen=True, slots=True)
class CompressionRules:
    """The compression settings in the shape the listener asks them."""

    static: bool = True
    dynamic: bool = True
    min_size: int = 2700
    static_types: tuple[CompressibleType, ...] = ()
    dynamic_types: tuple[CompressibleType, ...] = ()
    static_codings: tuple[str, ...] = ("gzip",)  # offered for files, in preference order
    dynamic_codings: tuple[str, ...] = ("gzip",)
    levels: tuple[tuple[str, int, int], ...] = (("gzip", 7, 0),)  # coding, static, dynamic
    no_http10: bool = True
    no_proxies: bool = True
    no_range: bool = True

    @classmethod
    def from_config(cls, web: WebServerConfig,
                    available: Sequence[str] = AVAILABLE) -> CompressionRules:
        http, url = web.http_compression, web.url_compression
        schemes = [s for s in http.schemes if s.name.lower() in available]
        return cls(
            static=url.do_static_compression, dynamic=url.do_dynamic_compression,
            min_size=http.min_file_size_for_comp,
            static_types=http.static_types, dynamic_types=http.dynamic_types,
            static_codings=tuple(s.name.lower() for s in schemes if s.do_static_compression),
            dynamic_codings=tuple(s.name.lower() for s in schemes if s.do_dynamic_compression),
            levels=tuple((s.name.lower(), s.static_compression_level,
                          s.dynamic_compression_level) for s in schemes),
            no_http10=http.no_compression_for_http10,
            no_proxies=http.no_compression_for_proxies,
            no_range=http.no_compression_for_range,
        )

    def offered(self, static: bool) -> tuple[str, ...]:
        if static:
            return self.static_codings if self.static else ()
        return self.dynamic_codings if self.dynamic else ()

    def level(self, coding: str, static: bool) -> int:
        for name, static_level, dynamic_level in self.levels:
            if name == coding:
                return static_level if static else dynamic_level
        return 7 if static else 0

    def choose(self, request_headers: Mapping[str, str], http_version: str,
               static: bool) -> str:
        """The coding this request would get for a compressible response (request side)."""
        if (self.no_http10 and http_version == "1.0") \
                or (self.no_proxies and "via" in request_headers) \
                or (self.no_range and "range" in request_headers):
            return "identity"
        return negotiate(request_headers.get("accept-encoding"), self.offered(static))

    def compressible(self, *, static: bool, status: int, content_type: str | None,
                     size: int | None, response_headers: Mapping[str, str]) -> bool:
        """Whether this response may be compressed (response side); lower-case names."""
        if status != 200 or not content_type or not (self.static if static else self.dynamic):
            return False
        if size is not None and size < self.min_size:
            return False
        encoding = response_headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            return False
        if "no-transform" in response_headers.get("cache-control", "").lower():
            return False
        return type_enabled(self.static_types if static else self.dynamic_types, content_type)


def compress(data: bytes, coding: str, level: int) -> bytes:
    """`data` encoded with `coding` ("gzip" or "br") at an IIS level (0-10 or 0-11).

    gzip takes zlib's 1-9 (IIS's 0, "fastest", is 1; the gzip header's mtime is 0 so
    equal input gives equal output, and equal ETags); brotli its quality 0-11."""
    if coding == "gzip":
        return gzip.compress(data, compresslevel=max(1, min(9, level)), mtime=0)
    if coding == "br" and BROTLI is not None:
        result: bytes = BROTLI.compress(data, quality=max(0, min(11, level)))
        return result
    raise ValueError(f"cannot compress with {coding!r}")


class Packer:
    """Incremental compression of a streamed body: each piece comes out flushed (a sync
    flush), so a client sees every piece as soon as the application sends it."""

    __slots__ = ("_brotli", "_zlib")

    def __init__(self, coding: str, level: int) -> None:
        self._zlib: Any = None
        self._brotli: Any = None
        if coding == "gzip":
            self._zlib = zlib.compressobj(max(1, min(9, level)), zlib.DEFLATED,
                                          16 + zlib.MAX_WBITS)
        elif coding == "br" and BROTLI is not None:
            self._brotli = BROTLI.Compressor(quality=max(0, min(11, level)))
        else:
            raise ValueError(f"cannot compress with {coding!r}")

    def pack(self, piece: bytes) -> bytes:
        if self._zlib is not None:
            return bytes(self._zlib.compress(piece) + self._zlib.flush(zlib.Z_SYNC_FLUSH))
        return bytes(self._brotli.process(piece)) + bytes(self._brotli.flush())

    def finish(self) -> bytes:
        if self._zlib is not None:
            return bytes(self._zlib.flush())
        return bytes(self._brotli.finish())


def vary_accept_encoding(vary: str | None) -> str:
    """A Vary value that includes Accept-Encoding, keeping what `vary` had."""
    if not vary or not vary.strip():
        return "Accept-Encoding"
    names = [n.strip().lower() for n in vary.split(",")]
    if "*" in names or "accept-encoding" in names:
        return vary
    return f"{vary}, Accept-Encoding"


def variant_etag(etag: str, coding: str) -> str:
    """The ETag of the `coding` variant: `"abc"` -> `"abc-gzip"`; identity keeps it."""
    if coding == "identity" or not etag.endswith('"'):
        return etag
    return f'{etag[:-1]}-{coding}"'
