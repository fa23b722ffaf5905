"""A compromised application against the operator's terminal.

A root server started from a shell (`sudo webgarden serve ...`, `make run` as root) has that
shell's terminal as its controlling terminal and standard streams. Its workers inherit the
streams; in the server's session, the terminal is their controlling terminal too, and
TIOCSTI on it pushes bytes into the terminal's input as if the operator typed them: a
command line for the root shell to run once the server exits. Workers start in a session of
their own, where that terminal is no controlling terminal of theirs, so TIOCSTI is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import httpx

from harness import APPS


def _take_terminal() -> None:
    """In the server's child, after setsid: the pty on stdin becomes its controlling tty."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _drain(master: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(master, 4096):
            pass


def _started(log: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log.read_text().splitlines():
            event = json.loads(line)
            if event["event"] == "server.started":
                return event  # type: ignore[no-any-return]
        time.sleep(0.05)  # no inotify helper for a file this test owns; bounded by timeout
    raise AssertionError(f"the server did not start (exit {proc.poll()})")


def test_an_application_cannot_type_into_the_terminal_the_server_was_started_from(
    tmp_path: Path,
) -> None:
    master, slave = os.openpty()
    log = tmp_path / "events.jsonl"
    log.touch()
    proc = subprocess.Popen(
        [sys.executable, "-m", "webgarden", "run", "hostile:application", "--threads", "1",
         "--bind", "127.0.0.1:0", "--control", str(tmp_path / "control.sock"),
         "--event-log", str(log)],
        cwd=str(APPS), env={**os.environ, "PYTHONPATH": str(APPS)},
        stdin=slave, stdout=slave, stderr=slave,
        start_new_session=True, preexec_fn=_take_terminal,
    )
    os.close(slave)
    threading.Thread(target=_drain, args=(master,), daemon=True).start()
    try:
        started = _started(log, proc)
        address = started["addresses"][0]  # type: ignore[index]
        answer = httpx.get(f"http://{address}/tiocsti", timeout=30).text
        assert "injected" not in answer, answer  # refused on every descriptor it holds
        assert answer.count(":") == 3, answer
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(master)
