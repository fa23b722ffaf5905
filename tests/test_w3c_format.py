"""The W3C Extended and HTTPERR formats, sans-IO: fields, lines, headers, names, paths."""

from __future__ import annotations

import calendar
import time
from typing import Any

import pytest

from webgarden.config.sites import DEFAULT_LOG_FIELDS, LOG_FIELDS
from webgarden.listener import w3c

IIS10_DEFAULT = ("date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
                 "cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken")


def record(**values: Any) -> tuple[Any, ...]:
    """A whole record: every field "-" (or 0 for numbers) unless given by its flag name."""
    out: list[Any] = []
    for flag, _, spec in w3c.FIELDS:
        out.append(values.get(flag, 0 if spec == b"%d" else b"-"))
    return tuple(out)


def test_the_default_flags_give_iis_10s_fields_line() -> None:
    assert " ".join(w3c.W3CFormat(DEFAULT_LOG_FIELDS).names) == IIS10_DEFAULT


def test_fields_come_in_iis_order_whatever_the_order_of_the_flags() -> None:
    fmt = w3c.W3CFormat(["TimeTaken", "Host", "Date", "BytesRecv", "SiteName", "Cookie"])
    assert fmt.names == ("date", "s-sitename", "cs(Cookie)", "cs-host", "cs-bytes", "time-taken")
    everything = w3c.W3CFormat(LOG_FIELDS)
    assert everything.names == (
        "date", "time", "s-sitename", "s-computername", "s-ip", "cs-method", "cs-uri-stem",
        "cs-uri-query", "s-port", "cs-username", "c-ip", "cs-version", "cs(User-Agent)",
        "cs(Cookie)", "cs(Referer)", "cs-host", "sc-status", "sc-substatus",
        "sc-win32-status", "sc-bytes", "cs-bytes", "time-taken")


def test_an_unknown_flag_is_refused() -> None:
    with pytest.raises(ValueError, match="Bogus"):
        w3c.W3CFormat(["Date", "Bogus"])


def test_a_line_holds_the_chosen_fields_space_separated_and_ends_in_crlf() -> None:
    fmt = w3c.W3CFormat(DEFAULT_LOG_FIELDS)
    line = fmt.line(record(
        Date=b"2015-08-13", Time=b"18:46:11", ServerIP=b"::1", Method=b"GET", UriStem=b"/",
        ServerPort=b"443", ClientIP=b"::1", UserAgent=w3c.escape(b"Mozilla/5.0 (Windows NT)"),
        HttpStatus=b"200", TimeTaken=391, BytesSent=999, ComputerName=b"not-logged"))
    assert line == (b"2015-08-13 18:46:11 ::1 GET / - 443 - ::1 Mozilla/5.0+(Windows+NT) - "
                    b"200 0 0 391\r\n")


def test_escape_turns_spaces_and_control_characters_into_plus_and_empty_into_dash() -> None:
    assert w3c.escape(b"a b\tc\x00d\x7fe\r\nf") == b"a+b+c+d+e++f"
    assert w3c.escape(b"") == b"-"
    assert w3c.escape("caf\u00e9".encode()) == "caf\u00e9".encode()  # UTF-8 is kept


def test_head_and_finish_make_the_same_line_as_line() -> None:
    for flags in (DEFAULT_LOG_FIELDS, LOG_FIELDS, {"TimeTaken"}, {"BytesRecv"},
                  {"Date", "BytesRecv"}, {"Date", "Time"}, set()):
        fmt = w3c.W3CFormat(flags)
        assert fmt.splittable
        full = record(Date=b"2024-02-29", Time=b"23:59:59", HttpStatus=b"404",
                      BytesRecv=321, TimeTaken=17, BytesSent=5)
        assert fmt.finish(fmt.head(full), 321, 17) == fmt.line(full), flags
    assert not w3c.W3CFormat(DEFAULT_LOG_FIELDS, ["X-Forwarded-For"]).splittable


def test_custom_fields_follow_the_standard_ones() -> None:
    fmt = w3c.W3CFormat({"Date", "TimeTaken"}, ["X-Forwarded-For", "Trace"])
    assert fmt.names == ("date", "time-taken", "X-Forwarded-For", "Trace")
    assert fmt.line((*record(Date=b"2024-01-01", TimeTaken=3), b"10.0.0.1", b"-")) == \
        b"2024-01-01 3 10.0.0.1 -\r\n"


def test_a_line_longer_than_max_log_line_length_is_cut_and_keeps_its_end() -> None:
    fmt = w3c.W3CFormat({"UserAgent"}, max_line=20)
    line = fmt.line(record(UserAgent=b"x" * 100))
    assert line == b"x" * 18 + b"\r\n"
    assert fmt.finish(fmt.head(record(UserAgent=b"x" * 100)), 0, 0) == line


def test_the_header_block_names_software_version_date_and_fields() -> None:
    started = calendar.timegm((2015, 8, 13, 18, 46, 11))
    header = w3c.W3CFormat(DEFAULT_LOG_FIELDS).header("webgarden/0.1.0", started)
    assert header.decode().split("\r\n") == [
        "#Software: webgarden/0.1.0", "#Version: 1.0", "#Date: 2015-08-13 18:46:11",
        "#Fields: " + IIS10_DEFAULT, ""]


def test_date_and_time_fields_are_utc() -> None:
    assert w3c.stamp(calendar.timegm((2024, 2, 29, 23, 59, 58))) == (b"2024-02-29", b"23:59:58")


@pytest.mark.parametrize(("period", "when", "name"), [
    ("Daily", (2013, 3, 19, 23, 1, 2), "u_ex130319.log"),
    ("Hourly", (2013, 3, 19, 7, 1, 2), "u_ex13031907.log"),
    ("Monthly", (2013, 3, 19, 7, 1, 2), "u_ex1303.log"),
    ("Weekly", (2024, 6, 1, 12, 0, 0), "u_ex240601.log"),  # a Saturday: week 1
    ("Weekly", (2024, 6, 2, 12, 0, 0), "u_ex240602.log"),  # Sunday: week 2 starts
    ("Weekly", (2024, 6, 30, 12, 0, 0), "u_ex240606.log"),
    ("Weekly", (2024, 9, 1, 12, 0, 0), "u_ex240901.log"),  # a month that starts on Sunday
    ("Weekly", (2024, 9, 7, 12, 0, 0), "u_ex240901.log"),
    ("Weekly", (2024, 9, 8, 12, 0, 0), "u_ex240902.log"),
    ("MaxSize", (2013, 3, 19, 7, 1, 2), "u_extend1.log"),
])
def test_file_names_follow_the_period(period: w3c.Period, when: tuple[int, ...],
                                      name: str) -> None:
    assert w3c.file_name(period, time.gmtime(calendar.timegm(when))) == name


def test_max_size_files_count_on_from_the_highest_one_there() -> None:
    names = ["u_extend1.log", "u_extend12.log", "u_extend3.log", "u_ex240101.log", "x.log"]
    assert w3c.latest_sequence(names, "u_extend") == 12
    assert w3c.latest_sequence(["httperr2.log", "httperr10.log"], "httperr") == 10
    assert w3c.latest_sequence([], "httperr") == 0


def test_an_httperr_line_has_http_sys_fields_and_limits() -> None:
    line = w3c.httperr_line(b"2002-07-05", b"18:45:09", ("172.31.77.6", 2094),
                            ("172.31.77.6", 80), b"HTTP/1.1", b"GET", b"/qos/1kbfile.txt",
                            503, 0, "ConnLimit", "")
    assert line == (b"2002-07-05 18:45:09 172.31.77.6 2094 172.31.77.6 80 HTTP/1.1 GET "
                    b"/qos/1kbfile.txt 503 - ConnLimit -\r\n")
    timer = w3c.httperr_line(b"2002-07-05", b"20:06:01", ("172.31.77.6", 64388),
                             ("127.0.0.1", 80), b"", b"", b"", 0, 0, "Timer_ConnectionIdle", "")
    assert timer == (b"2002-07-05 20:06:01 172.31.77.6 64388 127.0.0.1 80 - - - - - "
                     b"Timer_ConnectionIdle -\r\n")
    long = w3c.httperr_line(b"d", b"t", ("::1", 1), ("::1", 2), b"HTTP/1.1", b"M" * 300,
                            b"/a b" + b"x" * 5000, 400, 7, "BadRequest", "My Pool")
    fields = long.rstrip(b"\r\n").split(b" ")
    assert len(fields) == 13
    assert fields[7] == b"M" * 255 and len(fields[8]) == 4096 and fields[8][:4] == b"/a+b"
    assert fields[10:] == [b"7", b"BadRequest", b"My+Pool"]
    assert w3c.httperr_header("x", 0).endswith(
        b"#Fields: date time c-ip c-port s-ip s-port cs-version cs-method cs-uri sc-status "
        b"s-siteid s-reason s-queuename\r\n")


ROOT, USER = 0, 1000


@pytest.mark.parametrize(("value", "env", "euid", "expected"), [
    (w3c.IIS_DEFAULT_DIRECTORY, {}, ROOT, "/var/log/webgarden"),
    (w3c.IIS_DEFAULT_DIRECTORY, {"HOME": "/home/u"}, USER, "/home/u/.local/state/webgarden/logs"),
    (w3c.IIS_DEFAULT_DIRECTORY, {"HOME": "/home/u", "XDG_STATE_HOME": "/s"}, USER,
     "/s/webgarden/logs"),
    (r"%SYSTEMDRIVE%\inetpub\logs\logfiles", {}, ROOT, "/var/log/webgarden"),  # any case
    (w3c.IIS_DEFAULT_DIRECTORY, {"SystemDrive": "/srv"}, ROOT, "/srv/inetpub/logs/LogFiles"),
    (r"%SystemDrive%\weblogs", {}, USER, "/weblogs"),
    (r"%LOGROOT%\sites", {"LOGROOT": "/data/logs/"}, USER, "/data/logs/sites"),
    ("%UNDEFINED%/x", {}, USER, "/etc/webgarden/%UNDEFINED%/x"),
    ("logs", {}, USER, "/etc/webgarden/logs"),
    ("/var/log/shop", {}, USER, "/var/log/shop"),
])
def test_directories_are_read_the_linux_way(value: str, env: dict[str, str], euid: int,
                                            expected: str) -> None:
    assert w3c.resolve_directory(value, env=env, euid=euid, base="/etc/webgarden") == expected
