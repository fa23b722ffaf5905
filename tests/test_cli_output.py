"""What the command line prints for a person: sizes in one spelling, tables, sentences."""

from __future__ import annotations

from config_documents import document
from webgarden.cli.output import answer, table
from webgarden.config import loads
from webgarden.config.summary import summary
from webgarden.config.values import format_bytes


def test_sizes_are_binary_units_with_one_decimal_from_a_kibibyte_up() -> None:
    assert [format_bytes(n) for n in (0, 1023, 1024, 1536, 1024**2 - 1, 5 * 1024**3)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "1.0 MiB", "5.0 GiB"]


def test_a_table_shows_byte_columns_in_units_and_nothing_as_a_dash() -> None:
    rows = [{"pid": 7, "rss": 52_428_800, "private": None, "retiring": False}]
    assert table(rows).splitlines() == ["pid  rss       private  retiring",
                                         "7    50.0 MiB  -        no"]
    assert table([]) == "(none)"


def test_one_object_answers_are_sentences_or_aligned_fields() -> None:
    assert answer("recycle", {"pool": "P", "recycling": [1, 2]}) == (
        "recycling application pool 'P'; replacing worker(s) 1, 2")
    assert answer("stop", {"pool": "P", "state": "Stopping"}) == "application pool 'P' is Stopping"
    assert answer("flush", {"flushed": 1}) == "flushed 1 cache entry"
    assert answer("stats", {"entries": 2, "bytes": 3072}).splitlines() == [
        "entries  2", "bytes    3.0 KiB"]


def test_config_check_shows_memory_limits_in_the_same_units() -> None:
    pools = '<add name="P"><recycling><periodicRestart privateMemory="512000" /></recycling></add>'
    assert "over 500.0 MiB private memory" in summary(loads(document(pools=pools)))
