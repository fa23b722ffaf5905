"""The control socket (IIS: appcmd talking to WAS): list and steer pools and workers.

Wire format: one JSON object per line each way. A request names a verb and an object,
`{"verb": "recycle", "object": "apppool", "name": "ShopPool"}`; the answer is
`{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`.

The socket is a Unix socket the server creates owner-only (mode 0600, in a directory of
mode 0700 when it makes one): whoever can connect controls the server. A directory it did
not make must belong to the server's user and be writable by no one else, or anyone who
can write there could put their own socket in its place.

Naming an instance. Several servers may run on one machine, so each gets its own socket
in one runtime directory (`runtime_dir()`): `webgarden run` one per port
(`port-8080.sock`; with port 0, which the kernel picks, one per process), `webgarden
serve` one per configuration file (`config-<stem>-<hash of its real path>.sock`). The
verbs find a server the way the user names it: `--port N`, `--config FILE`, `--control
PATH`, `$WEBGARDEN_CONTROL`; named by none of these, the one server that answers in the
runtime directory, or a list of them to choose from.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

#: Largest request line accepted on the control socket.
MAX_REQUEST = 64 * 1024

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class ControlError(Exception):
    """A control request cannot be carried out; the message goes back to the caller."""


#: Chosen by `$WEBGARDEN_CONTROL` for every server and verb: the single-instance override.
ENV_PATH = "WEBGARDEN_CONTROL"
#: Where the per-instance sockets go, when set (else /run/webgarden as root, else
#: $XDG_RUNTIME_DIR/webgarden, else /tmp/webgarden-UID).
ENV_DIR = "WEBGARDEN_RUNTIME_DIR"
#: How long a verb waits for a socket's owner to accept while looking for servers.
PROBE_TIMEOUT = 1.0


def runtime_dir() -> str:
    """The directory that holds the control sockets of this user's servers."""
    explicit = os.environ.get(ENV_DIR)
    if explicit:
        return explicit
    if os.geteuid() == 0:
        return "/run/webgarden"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(xdg, "webgarden") if xdg else f"/tmp/webgarden-{os.geteuid()}"


def port_path(port: int) -> str:
    """The default socket of `webgarden run` on `port` (0: of this process)."""
    name = f"port-{port}.sock" if port else f"pid-{os.getpid()}.sock"
    return os.path.join(runtime_dir(), name)


def config_path(config_file: str) -> str:
    """The default socket of `webgarden serve -c config_file`: one per file, however named."""
    real = os.path.realpath(config_file)
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(real).stem)[:40]
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:12]
    return os.path.join(runtime_dir(), f"config-{stem}-{digest}.sock")


def server_path(default: str, explicit: str | None) -> str:
    """The socket a server listens on: --control, else $WEBGARDEN_CONTROL, else `default`."""
    return explicit or os.environ.get(ENV_PATH) or default


def client_path(control: str | None = None, port: int | None = None,
                config_file: str | None = None) -> str:
    """The socket a verb talks to, as the user named the server (see the module's top)."""
    if control:
        return control
    if os.environ.get(ENV_PATH) and port is None and config_file is None:
        return os.environ[ENV_PATH]
    directory = runtime_dir()
    try:  # a socket someone else could have put there would answer in the server's name
        _check_directory(directory)
    except FileNotFoundError:
        raise ControlError(f"no webgarden server is listening in {directory}") from None
    except OSError as exc:
        raise ControlError(f"not using {directory}: {exc.strerror}") from None
    if port is not None:
        return port_path(port)
    if config_file is not None:
        return config_path(config_file)
    found = live_sockets(directory)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ControlError(f"no webgarden server is listening in {directory}")
    names = ", ".join(os.path.basename(path) for path in found)
    raise ControlError(
        f"{len(found)} webgarden servers are listening in {directory} ({names}): "
        "name one with --port N, --config FILE or --control PATH"
    )


def live_sockets(directory: str) -> list[str]:
    """The sockets in `directory` that a server accepts on, sorted (stale ones are left)."""
    import socket

    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".sock"))
    except OSError:
        return []
    found = []
    for name in names:
        path = os.path.join(directory, name)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(PROBE_TIMEOUT)
            try:
                sock.connect(path)
            except OSError:
                continue
        found.append(path)
    return found


def _check_directory(directory: str) -> None:
    """Refuse a directory another user could put a socket in (see the module's top)."""
    info = os.stat(directory)
    # A sticky directory (/tmp) lets no one else remove or rename what this user made there;
    # but its owner may, so the owner must be this user or root in every case.
    shared = info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX
    if info.st_uid not in (os.geteuid(), 0) or shared:
        raise PermissionError(
            errno.EPERM,
            f"{directory} must belong to this user (or root) and be writable by no one else",
        )


class ControlServer:
    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        directory = os.path.dirname(self.path) or "."
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        _check_directory(directory)
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
        # In a shared (sticky) directory another user may have made a socket by that name:
        # only a server of this user's, or root's, is told anything or believed.
        _, uid, _ = struct.unpack("3i", sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        if uid not in (os.geteuid(), 0):
            raise ControlError(f"{path} is answered by user {uid}, not by a server of this "
                               "user or root")
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
