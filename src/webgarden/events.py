"""The event log (IIS: the System event log, source WAS): one JSON object per line.

Every lifecycle event of the server, its pools and workers goes here, with IIS's event id
where IIS has one (`iis_event`). Tests synchronize on these lines, never on sleeps.
When the log is standard error, the events of a start are held back (`hold`) and then
written (`release`) or dropped (`discard`): a start that fails shows the user one clear
line, not a page of events. A log file gets every event as it happens.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from typing import IO, Any


class EventLog:
    def __init__(self, path: str | None = None) -> None:
        self._file: IO[str] = open(path, "a", buffering=1) if path else sys.stderr  # noqa: SIM115
        self._owned = path is not None
        self._held: list[str] | None = None

    def emit(self, event: str, **fields: Any) -> None:
        record = {"time": round(time.time(), 6), "event": event, **fields}
        line = json.dumps(record, default=str)
        if self._held is not None:
            self._held.append(line)
        else:
            self._write(line)

    def _write(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed stderr must not stop us
            self._file.write(line + "\n")

    def hold(self) -> None:
        if not self._owned:
            self._held = []

    def release(self) -> None:
        held, self._held = self._held or [], None
        for line in held:
            self._write(line)

    def discard(self) -> None:
        """Drop what was held, and keep dropping until `release`."""
        if self._held is not None:
            self._held = []

    def close(self) -> None:
        if self._owned:
            self._file.close()


def exit_fields(code: int) -> dict[str, object]:
    """How a process ended, for an event: `signal` (its name) or `code`."""
    if code < 0:
        return {"signal": signal.Signals(-code).name}
    return {"code": code}
