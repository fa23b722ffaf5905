"""Log files that roll over, written from the event loop (the site logs and HTTPERR).

Rules:

* A file is opened at its first flush, in append mode (IIS creates a log file when the
  first request arrives, not when logging is configured), its directory created as
  needed (mode 0750; files 0640: logs hold addresses, queries and cookies).
* Each time this process starts writing to a file (the first write, or after a roll) it
  writes the file's header block first: a server that restarts, or a reload that changes
  the fields, starts a new block in the same file, as IIS does.
* Rolling: by name (a clock reading in, a file name out: a new hour, day, week or month
  makes a new name), or by size (`<prefix><N>.log`, N moving on once the file holds
  `truncate_size` bytes; a new process continues from the highest N there). Lines
  buffered before a roll go to the file of their time.
* Lines are buffered and written with one write(2) per flush: at 64 KB, or every
  `flush_entries` lines, or when the owner calls `flush` (the listener's tick). After
  `close`, a line is written at once (requests cut short during shutdown still log).
* Errors: a write that fails drops what was buffered (memory stays bounded), reports once
  through `on_error(path, exc)`, and is tried again at the next flush; `on_error(path,
  None)` says it works again.

The write is synchronous on the loop: one write(2) of up to 64 KB to the page cache, at
most every 64 KB of lines or once a second per file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from webgarden.listener import w3c

#: flushByEntryCountW3CLog 0: the buffer is written when it holds this much (IIS: 64 KB).
FLUSH_BYTES = 64 * 1024
DIRECTORY_MODE = 0o750
FILE_MODE = 0o640


class RollingFile:
    """Lines into the current file of one directory. The file's name comes from `name`
    (a clock reading in, a name out: it changes when the period rolls over), or, with
    `sequence_prefix`, is `<prefix><N>.log`, N moving on once the file holds
    `truncate_size` bytes."""

    def __init__(self, directory: str, header: Callable[[float], bytes], *,
                 name: Callable[[int], str] | None = None, sequence_prefix: str = "",
                 truncate_size: int = 0, flush_entries: int = 0,
                 on_error: Callable[[str, OSError | None], None]) -> None:
        self.directory = directory
        self._header = header
        self._name = name
        self._prefix = sequence_prefix
        self._truncate = truncate_size
        self._flush_entries = flush_entries or 1 << 62
        self._on_error = on_error
        self._lines: list[bytes] = []
        self._buffered = 0
        self._flush_bytes = FLUSH_BYTES  # 0 once closed: every line is written at once
        self._second = -1
        self._sequence = 0  # MaxSize: 0 until the directory was looked at
        self.current = ""  # the file's name
        self._fd = -1
        self.failing = False
        self.closed = False

    def add(self, line: bytes, second: int) -> None:
        if second != self._second:
            self._new_second(second)
        lines = self._lines
        lines.append(line)
        self._buffered += len(line)
        if self._buffered >= self._flush_bytes or len(lines) >= self._flush_entries:
            self.flush()

    def _new_second(self, second: int) -> None:
        if self._name is not None:
            name = self._name(second)
            if name != self.current:
                self.flush()  # what is buffered belongs to the old file (and its #Date)
                self._close_fd()
                self.current = name
        self._second = second

    def flush(self) -> None:
        if not self._lines:
            return
        data = b"".join(self._lines)
        self._lines.clear()
        self._buffered = 0
        try:
            if self._fd < 0:
                self._open()
            _write_all(self._fd, data)
            if self._truncate and os.fstat(self._fd).st_size >= self._truncate:
                self._close_fd()
                self._sequence += 1
                self.current = ""
        except OSError as exc:
            self._close_fd()
            if not self.failing:
                self.failing = True
                self._on_error(os.path.join(self.directory, self.current or ""), exc)
            return
        if self.failing:
            self.failing = False
            self._on_error(os.path.join(self.directory, self.current), None)
        if self.closed:
            self._close_fd()

    def _open(self) -> None:
        os.makedirs(self.directory, DIRECTORY_MODE, exist_ok=True)
        if self._name is None:
            if not self._sequence:
                names = os.listdir(self.directory)
                self._sequence = max(w3c.latest_sequence(names, self._prefix), 1)
            self.current = f"{self._prefix}{self._sequence}.log"
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        while True:
            fd = os.open(os.path.join(self.directory, self.current), flags, FILE_MODE)
            if self._name is not None or os.fstat(fd).st_size < self._truncate:
                break
            os.close(fd)  # full already: the next one
            self._sequence += 1
            self.current = f"{self._prefix}{self._sequence}.log"
        self._fd = fd
        _write_all(fd, self._header(self._second))

    def _close_fd(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        """Write what is buffered and close; a line added later is written at once."""
        self.closed = True
        self._flush_bytes = 0
        self.flush()
        self._close_fd()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
