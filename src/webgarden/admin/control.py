"""The control socket (IIS: appcmd talking to WAS): list and steer pools and workers.

Wire format: one JSON object per line each way. A request names a verb and an object,
`{"verb": "recycle", "object": "apppool", "name": "ShopPool"}`; the answer is
`{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`.

The socket is a Unix socket the server creates owner-only (mode 0600, in a directory of
mode 0700 when it makes one): whoever can connect controls the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from collections.abc import Awaitable, Callable
from typing import Any

#: Largest request line accepted on the control socket.
MAX_REQUEST = 64 * 1024

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ControlError(Exception):
    """A control request cannot be carried out; the message goes back to the caller."""


def default_path() -> str:
    """Where the server listens and the CLI connects unless told otherwise."""
    explicit = os.environ.get("WEBGARDEN_CONTROL")
    if explicit:
        return explicit
    if os.geteuid() == 0:
        return "/run/webgarden/control.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/webgarden-{os.geteuid()}"
    return os.path.join(runtime, "webgarden-control.sock")


class ControlServer:
    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        directory = os.path.dirname(self.path) or "."
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        if os.path.exists(self.path) and stat.S_ISSOCK(os.stat(self.path).st_mode):
            os.unlink(self.path)  # left by a server that died; bind would fail
        old_umask = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(
                self._serve, self.path, limit=MAX_REQUEST
            )
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ControlError("a request is a JSON object")
                    answer = {"ok": True, "result": await self.handler(request)}
                except (ControlError, ValueError) as exc:
                    answer = {"ok": False, "error": str(exc)}
                writer.write(json.dumps(answer, default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def call(path: str, request: dict[str, Any], timeout: float = 30) -> Any:
    """Send one request to a server's control socket (blocking: this is for the CLI)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(f"no webgarden server is listening on {path}") from None
        except PermissionError:
            raise ControlError(f"not allowed to use {path} (the server's owner only)") from None
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ControlError("the server closed the control connection")
            data += chunk
    answer = json.loads(data)
    if not answer.get("ok"):
        raise ControlError(answer.get("error", "the request failed"))
    return answer["result"]
