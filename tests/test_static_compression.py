"""Accept-Encoding negotiation and what gets compressed (webgarden/compression.py)."""

from __future__ import annotations

import gzip
import zlib
from types import SimpleNamespace

import pytest

from config_documents import document
from webgarden import compression
from webgarden.compression import (
    CompressionRules,
    compress,
    negotiate,
    parse_accept_encoding,
    type_enabled,
    variant_etag,
    vary_accept_encoding,
)
from webgarden.config import loads
from webgarden.config.webserver import CompressibleType, WebServerConfig

BOTH = ("br", "gzip")


@pytest.mark.parametrize(("header", "expected"), [
    (None, "identity"),  # no header: never compressed
    ("", "identity"),  # empty: the client wants no coding
    ("gzip", "gzip"),
    ("x-gzip", "gzip"),
    ("GZIP", "gzip"),
    ("gzip, br", "br"),  # equal q: the server's order
    ("gzip;q=1.0, br;q=0.5", "gzip"),
    ("br;q=0", "identity"),
    ("gzip;q=0, *", "br"),
    ("*", "br"),
    ("*;q=0.5, br;q=0", "gzip"),
    ("gzip;q=0.5", "gzip"),  # identity not named ranks below a named coding
    ("gzip;q=0.5, identity", "identity"),  # named identity at q=1 wins
    ("gzip;q=0.5, *", "br"),  # * covers br (and identity): a tie, the coding wins
    ("deflate", "identity"),  # not offered
    ("identity;q=0, *;q=0", "identity"),  # nothing acceptable: identity anyway
    ("gzip;q=abc", "identity"),  # a malformed q drops the member
    ("gzip;q=1.5", "identity"),
    ("gzip ; q=0.8 , br ; q=0.9", "br"),
])
def test_negotiation_follows_q_values(header: str | None, expected: str) -> None:
    assert negotiate(header, BOTH) == expected


def test_star_covers_identity_too() -> None:
    assert negotiate("gzip;q=0.5, *", ("gzip",)) == "identity"


def test_br_is_offered_only_when_available() -> None:
    assert negotiate("br, gzip", ("gzip",)) == "gzip"
    assert negotiate("br", ("gzip",)) == "identity"
    expected = ("br", "gzip") if compression.BROTLI else ("gzip",)
    assert expected == compression.AVAILABLE


def test_parse_accept_encoding_keeps_codings_and_their_q() -> None:
    assert parse_accept_encoding("gzip;q=0.5, br, x-gzip;q=0.1, *;q=0") == {
        "gzip": 0.1, "br": 1.0, "*": 0.0}


def test_mime_types_match_most_specific_first() -> None:
    types = (CompressibleType("text/*", True), CompressibleType("text/csv", False),
             CompressibleType("*/*", False), CompressibleType("image/svg+xml", True))
    assert type_enabled(types, "text/html; charset=utf-8")
    assert not type_enabled(types, "text/csv")
    assert type_enabled(types, "IMAGE/SVG+XML")
    assert not type_enabled(types, "image/png")
    assert not type_enabled((), "text/html")


def rules(web: WebServerConfig | None = None) -> CompressionRules:
    return CompressionRules.from_config(web or WebServerConfig(), available=BOTH)


def compressible(r: CompressionRules, content_type: str = "text/html", size: int | None = 5000,
                 static: bool = True, status: int = 200, **headers: str) -> bool:
    return r.compressible(static=static, status=status, content_type=content_type, size=size,
                          response_headers={k.replace("_", "-"): v for k, v in headers.items()})


def test_defaults_compress_text_json_javascript_xml_and_svg_above_2700_bytes() -> None:
    r = rules()
    for mime in ("text/html", "text/css", "application/json", "application/javascript",
                 "application/xml", "image/svg+xml"):
        assert compressible(r, mime), mime
        assert compressible(r, mime, static=False), mime
    assert not compressible(r, "image/png")
    assert not compressible(r, "application/octet-stream")
    assert not compressible(r, size=2699)
    assert compressible(r, size=2700)
    assert compressible(r, size=None)  # length unknown (streamed)


def test_not_compressed_when_already_encoded_no_transform_or_not_200() -> None:
    r = rules()
    assert not compressible(r, content_encoding="gzip")
    assert compressible(r, content_encoding="identity")
    assert not compressible(r, cache_control="public, no-transform")
    assert not compressible(r, status=206)
    assert not compressible(r, status=404)
    assert not compressible(r, content_type="")


def test_request_side_http10_proxies_and_ranges_get_identity() -> None:
    r = rules()
    assert r.choose({"accept-encoding": "gzip"}, "1.1", static=True) == "gzip"
    assert r.choose({"accept-encoding": "gzip"}, "1.0", static=True) == "identity"
    assert r.choose({"accept-encoding": "gzip", "via": "1.1 proxy"}, "1.1", True) == "identity"
    assert r.choose({"accept-encoding": "gzip", "range": "bytes=0-1"}, "1.1", True) == "identity"
    assert r.choose({}, "1.1", static=True) == "identity"


def test_configuration_turns_static_or_dynamic_compression_off_and_sets_the_threshold() -> None:
    web = loads(document(root_extra="""<system.webServer>
      <urlCompression doDynamicCompression="false" />
      <httpCompression minFileSizeForComp="256" noCompressionForHttp10="false">
        <scheme name="gzip" staticCompressionLevel="9" doStaticCompression="false" />
        <staticTypes><add mimeType="application/pdf" enabled="true" /></staticTypes>
      </httpCompression>
    </system.webServer>""")).web_server
    r = rules(web)
    assert r.offered(static=False) == ()
    assert r.offered(static=True) == ("br",)  # the file's gzip replaced the default one
    assert r.level("gzip", static=True) == 9 and r.level("br", static=True) == 7
    assert compressible(r, "application/pdf", size=300)
    assert not compressible(r, size=255)
    assert not compressible(r, static=False)
    assert r.choose({"accept-encoding": "gzip"}, "1.0", static=True) == "identity"


def test_gzip_round_trips_and_is_deterministic() -> None:
    data = b"hello world " * 1000
    packed = compress(data, "gzip", 7)
    assert gzip.decompress(packed) == data and len(packed) < len(data)
    assert compress(data, "gzip", 7) == packed  # mtime 0: same bytes, same ETag
    assert gzip.decompress(compress(data, "gzip", 0)) == data  # IIS's 0 is zlib's 1


def test_brotli_is_used_through_the_optional_module(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake(data: bytes, quality: int) -> bytes:
        calls.append(quality)
        return b"BR" + data

    monkeypatch.setattr(compression, "BROTLI", SimpleNamespace(compress=fake))
    assert compress(b"x", "br", 20) == b"BRx" and calls == [11]
    monkeypatch.setattr(compression, "BROTLI", None)
    with pytest.raises(ValueError, match="br"):
        compress(b"x", "br", 5)
    with pytest.raises(ValueError, match="deflate"):
        compress(b"x", "deflate", 5)


def test_vary_gets_accept_encoding_once() -> None:
    assert vary_accept_encoding(None) == "Accept-Encoding"
    assert vary_accept_encoding("Cookie") == "Cookie, Accept-Encoding"
    assert vary_accept_encoding("accept-encoding") == "accept-encoding"
    assert vary_accept_encoding("*") == "*"


def test_a_compressed_variant_has_its_own_etag() -> None:
    assert variant_etag('"abc"', "gzip") == '"abc-gzip"'
    assert variant_etag('"abc"', "identity") == '"abc"'
    assert variant_etag('W/"abc"', "br") == 'W/"abc-br"'


def test_a_packer_flushes_every_piece_so_a_stream_is_readable_as_it_goes() -> None:
    packer = compression.Packer("gzip", 0)
    reader = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for piece in (b"first piece\n", b"second piece\n" * 50, b"last\n"):
        assert reader.decompress(packer.pack(piece)) == piece  # nothing held back
    assert reader.decompress(packer.finish()) == b"" and reader.eof
