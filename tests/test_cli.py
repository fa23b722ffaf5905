"""The command line: clear one-line errors and exit 2, never a traceback wall."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from config_documents import document, site
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
        "'testapp:CHUNK' is a bytes, not a callable application"
    ]


def test_a_load_failure_cannot_send_escape_sequences_to_the_operators_terminal() -> None:
    result = _run("run", "escape_import:app", "--bind", "127.0.0.1:0")
    assert result.returncode == 2
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "?[2J?[Hall is well?" in result.stderr


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


def _many_sites(path: Path, count: int) -> None:
    sites = "\n".join(site(name=f"s{i}", id=i + 1, binding=f"*:8080:h{i}.test")
                      for i in range(count))
    path.write_text(document(sites=sites))


def test_config_check_into_a_reader_that_stops_early_ends_quietly(tmp_path: Path) -> None:
    config = tmp_path / "big.config"
    _many_sites(config, 3000)  # a summary larger than a pipe holds: the write must fail
    check = subprocess.Popen([sys.executable, "-m", "webgarden", "config", "check", str(config)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert check.stdout is not None
    head = subprocess.run(["head", "-n", "1"], stdin=check.stdout, capture_output=True,
                          timeout=60)
    check.stdout.close()
    _, stderr = check.communicate(timeout=60)
    assert head.stdout.startswith(b"3000 sites")
    assert stderr == b"" and check.returncode == 1


def test_every_printing_command_survives_a_closed_pipe(tmp_path: Path) -> None:
    # `--help` of a verb is argparse printing: main's guard covers it too.
    for args in (["run", "--help"], ["list", "--help"]):
        with subprocess.Popen([sys.executable, "-m", "webgarden", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            proc.stdout.close()  # the reader is gone before a byte is written
            stderr = proc.stderr.read() if proc.stderr else b""
            proc.wait(timeout=60)
        assert b"Traceback" not in stderr and proc.returncode in (0, 1), stderr
