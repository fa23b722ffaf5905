"""Validators, conditional requests and ranges (listener/conditional.py): RFC 9110 §13-14."""

from __future__ import annotations

import pytest

from webgarden.listener.conditional import (
    MAX_RANGES,
    ByteRange,
    Validators,
    evaluate,
    http_date,
    make_etag,
    parse_etags,
    parse_http_date,
    parse_range,
)

T = 1_700_000_000  # Last-Modified of the representation
ETAG = make_etag(0x1A2B, 1000, 1_700_000_000_123_456_789)
V = Validators(ETAG, T)
SIZE = 1000


def decide(headers: dict[str, str], method: str = "GET", size: int | None = SIZE,
           validators: Validators = V, now: float | None = None) -> tuple[int, dict[str, str]]:
    decision = evaluate(method, headers, validators, size, now)
    return decision.status, dict(decision.headers)


def test_the_etag_is_strong_quoted_and_made_of_inode_size_and_mtime() -> None:
    mtime = f"{1_700_000_000_123_456_789:x}"
    assert f'"1a2b-3e8-{mtime}"' == ETAG
    assert make_etag(1, 2, 3) != make_etag(1, 2, 4) != make_etag(1, 3, 3)
    assert not ETAG.startswith("W/")


def test_http_dates_are_written_as_imf_fixdate_and_read_in_all_three_formats() -> None:
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    for text in ("Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                 "Sun Nov  6 08:49:37 1994"):
        assert parse_http_date(text) == 784111777, text
    for bad in ("", "yesterday", "06 Nov 1994", "Sun, 06 Nov 1994 08:49:37 +0100"):
        assert parse_http_date(bad) is None, bad


def test_no_conditions_is_a_plain_200() -> None:
    assert decide({}) == (200, {})


def test_if_none_match_with_the_etag_is_304_for_get_and_head() -> None:
    assert decide({"if-none-match": ETAG})[0] == 304
    assert decide({"if-none-match": ETAG}, method="HEAD")[0] == 304


def test_if_none_match_compares_weakly_and_reads_lists_and_star() -> None:
    assert decide({"if-none-match": f"W/{ETAG}"})[0] == 304
    assert decide({"if-none-match": f'"other", {ETAG}'})[0] == 304
    assert decide({"if-none-match": "*"})[0] == 304
    assert decide({"if-none-match": '"other", W/"more"'})[0] == 200


def test_if_none_match_on_an_unsafe_method_that_matches_is_412() -> None:
    assert decide({"if-none-match": "*"}, method="PUT")[0] == 412


def test_if_none_match_takes_precedence_over_if_modified_since() -> None:
    # RFC 9110 §13.2.2: If-Modified-Since is ignored when If-None-Match is present.
    headers = {"if-none-match": '"other"', "if-modified-since": http_date(T + 60)}
    assert decide(headers)[0] == 200


def test_if_modified_since_is_304_when_not_modified_since_and_200_otherwise() -> None:
    assert decide({"if-modified-since": http_date(T)})[0] == 304
    assert decide({"if-modified-since": http_date(T + 60)})[0] == 304
    assert decide({"if-modified-since": http_date(T - 1)})[0] == 200


def test_if_modified_since_is_ignored_when_invalid_in_the_future_or_not_get() -> None:
    assert decide({"if-modified-since": "not a date"})[0] == 200
    assert decide({"if-modified-since": http_date(T + 60)}, now=T + 30)[0] == 200
    assert decide({"if-modified-since": http_date(T)}, method="POST")[0] == 200


def test_if_match_that_does_not_match_is_412_and_uses_strong_comparison() -> None:
    assert decide({"if-match": '"other"'})[0] == 412
    assert decide({"if-match": f"W/{ETAG}"})[0] == 412  # weak never matches strongly
    assert decide({"if-match": ETAG})[0] == 200
    assert decide({"if-match": "*"})[0] == 200
    assert decide({"if-match": "*"}, validators=Validators(None, T))[0] == 200


def test_if_unmodified_since_is_412_once_modified_after_it() -> None:
    assert decide({"if-unmodified-since": http_date(T - 1)})[0] == 412
    assert decide({"if-unmodified-since": http_date(T)})[0] == 200
    assert decide({"if-unmodified-since": "garbage"})[0] == 200  # invalid: ignored
    # If-Match present: If-Unmodified-Since is not evaluated.
    assert decide({"if-match": ETAG, "if-unmodified-since": http_date(T - 1)})[0] == 200


def test_a_single_range_is_206_with_its_content_range() -> None:
    decision = evaluate("GET", {"range": "bytes=0-99"}, V, SIZE)
    assert (decision.status, decision.range) == (206, ByteRange(0, 99))
    assert dict(decision.headers) == {"Content-Range": "bytes 0-99/1000"}
    assert decision.range is not None and decision.range.length == 100


@pytest.mark.parametrize(("header", "first", "last"), [
    ("bytes=100-", 100, 999),
    ("bytes=-100", 900, 999),
    ("bytes=-5000", 0, 999),  # a suffix longer than the file is the whole file
    ("bytes=990-5000", 990, 999),  # an end past the end is cut to the end
    ("bytes = 5 - 9", 5, 9),
    ("BYTES=5-9", 5, 9),
])
def test_range_forms(header: str, first: int, last: int) -> None:
    decision = evaluate("GET", {"range": header}, V, SIZE)
    assert (decision.status, decision.range) == (206, ByteRange(first, last))


def test_an_unsatisfiable_range_is_416_with_the_size() -> None:
    assert decide({"range": "bytes=1000-"}) == (416, {"Content-Range": "bytes */1000"})
    assert decide({"range": "bytes=-0"})[0] == 416
    assert decide({"range": "bytes=0-"}, size=0) == (416, {"Content-Range": "bytes */0"})


@pytest.mark.parametrize("header", [
    "bytes=5-1",  # last before first: invalid, not merely unsatisfiable
    "bytes=abc", "bytes=", "bytes=-", "items=0-5", "0-5", "bytes=1-2-3",
])
def test_malformed_ranges_are_ignored_and_the_whole_file_is_sent(header: str) -> None:
    assert decide({"range": header}) == (200, {})


def test_several_ranges_get_the_whole_file_but_unsatisfiable_ones_are_dropped() -> None:
    assert decide({"range": "bytes=0-9,20-29"}) == (200, {})
    assert decide({"range": "bytes=0-99,50-149"}) == (200, {})  # overlapping
    assert evaluate("GET", {"range": "bytes=0-9, 5000-6000"}, V, SIZE).range == ByteRange(0, 9)
    assert decide({"range": "bytes=5000-,6000-"})[0] == 416


def test_too_many_ranges_are_ignored() -> None:
    many = ",".join(f"{i}-{i}" for i in range(MAX_RANGES + 1))
    assert parse_range(f"bytes={many}", SIZE) is None
    assert decide({"range": f"bytes={many}"}) == (200, {})


def test_range_applies_to_get_only_and_to_range_capable_representations() -> None:
    assert decide({"range": "bytes=0-9"}, method="HEAD")[0] == 200
    assert decide({"range": "bytes=0-9"}, size=None)[0] == 200


def test_if_range_with_the_current_etag_or_date_keeps_the_range() -> None:
    assert decide({"range": "bytes=0-9", "if-range": ETAG})[0] == 206
    assert decide({"range": "bytes=0-9", "if-range": http_date(T)})[0] == 206


def test_if_range_that_does_not_match_sends_the_whole_file() -> None:
    assert decide({"range": "bytes=0-9", "if-range": '"old"'}) == (200, {})
    assert decide({"range": "bytes=0-9", "if-range": f"W/{ETAG}"}) == (200, {})  # weak
    assert decide({"range": "bytes=0-9", "if-range": http_date(T - 1)}) == (200, {})
    assert decide({"range": "bytes=0-9", "if-range": "nonsense"}) == (200, {})


def test_a_304_wins_over_a_range() -> None:
    assert decide({"range": "bytes=0-9", "if-none-match": ETAG})[0] == 304


def test_etag_lists_parse_quoted_weak_star_and_bare_tokens() -> None:
    assert parse_etags("*") is None
    assert parse_etags('"a", W/"b",,"c,d"') == ['"a"', 'W/"b"', '"c,d"']
    assert parse_etags("abc, W/def") == ['"abc"', 'W/"def"']


def test_validators_give_etag_and_last_modified_headers() -> None:
    assert V.headers() == [("ETag", ETAG), ("Last-Modified", http_date(T))]
    assert Validators().headers() == []
