"""The command line: clear one-line errors and exit 2, never a traceback wall."""

from __future__ import annotations

import socket
import subprocess
import sys

from harness import APPS


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webgarden", *args],
        cwd=APPS, capture_output=True, text=True, timeout=timeout,
    )


def test_an_app_that_cannot_be_imported_is_one_clear_line_and_exit_2() -> None:
    result = _run("run", "no_such_module:app", "--bind", "127.0.0.1:0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no_such_module" in lines[0] and "Traceback" not in result.stderr


def test_an_app_that_is_not_callable_is_one_clear_line_and_exit_2() -> None:
    result = _run("run", "testapp:CHUNK", "--bind", "127.0.0.1:0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "webgarden: pool 'DefaultAppPool' cannot load its application: "
        "'testapp:CHUNK' is a bytes, not a callable WSGI application"
    ]


def test_a_missing_attribute_and_a_malformed_spec_are_named() -> None:
    assert "has no attribute 'nothing'" in _run("run", "testapp:nothing", "--bind", "127.0.0.1:0").stderr
    assert "not of the form 'module:callable'" in _run("run", "testapp", "--bind", "127.0.0.1:0").stderr


def test_a_port_in_use_is_a_clear_error_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run("run", "testapp:application", "--bind", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert result.stderr.strip() == f"webgarden: cannot listen on 127.0.0.1:{port}: address already in use"


def test_run_help_explains_every_option() -> None:
    result = _run("run", "--help")
    assert result.returncode == 0
    for option in ("--bind", "--workers", "--threads", "--queue-length", "--connection-timeout",
                   "--header-wait-timeout", "--shutdown-time-limit", "--event-log"):
        assert option in result.stdout
    assert "queueLength" in result.stdout and "503" in result.stdout


def test_bad_option_values_are_refused_by_the_parser() -> None:
    result = _run("run", "testapp:application", "--workers", "0")
    assert result.returncode == 2 and "must be at least 1" in result.stderr
