"""A raw HTTP/2 client for tests: the `h2` library as a client over a real socket.

It sends exactly what a test asks for (an attack's frames included) and reads the server's
frames into h2 events; `wait` returns once a predicate over what arrived holds.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import h2.events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes


class H2Client:
    def __init__(self, port: int, settings: dict[int, int] | None = None,
                 connection_window: int = 0, timeout: float = 10) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        if connection_window:
            self.conn.increment_flow_control_window(connection_window)
        self.events: list[Any] = []
        self.bodies: dict[int, bytearray] = {}
        self.heads: dict[int, dict[bytes, bytes]] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, int] = {}
        self.goaway: ev.ConnectionTerminated | None = None
        self.closed = False
        self.remote_settings: dict[int, int] = {}
        self.auto_ack = True  # reopen our windows as data arrives
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, path: str, method: str = "GET", body: bytes = b"",
                headers: list[tuple[str, str]] | None = None, end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":path", path), (":scheme", "http"),
                  (":authority", "127.0.0.1"), *(headers or [])]
        self.conn.send_headers(sid, fields, end_stream=end and not body)
        if body:
            self.send_body(sid, body, end=end)
        self.flush()
        return sid

    def send_body(self, sid: int, body: bytes, end: bool = True) -> None:
        """Send `body` as the windows allow, reading the server's frames meanwhile."""
        view = memoryview(body)
        while view:
            window = min(self.conn.local_flow_control_window(sid),
                         self.conn.max_outbound_frame_size)
            if window <= 0:
                self.flush()
                self.read_once()
                continue
            piece, view = view[:window], view[window:]
            self.conn.send_data(sid, bytes(piece), end_stream=end and not view)
            self.flush()
        if end and not body:
            self.conn.end_stream(sid)
            self.flush()

    def reset(self, sid: int) -> None:
        self.conn.reset_stream(sid)
        self.flush()

    def read_once(self, timeout: float = 10) -> bool:
        """Read what the server sent once; False when the connection is closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self._note(event)
        self.flush()
        return True

    def _note(self, event: Any) -> None:
        self.events.append(event)
        if isinstance(event, ev.ResponseReceived):
            self.heads[event.stream_id] = dict(event.headers)
        elif isinstance(event, ev.DataReceived):
            self.bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
            if self.auto_ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                    event.stream_id)
        elif isinstance(event, ev.StreamEnded):
            self.ended.add(event.stream_id)
        elif isinstance(event, ev.StreamReset):
            self.resets[event.stream_id] = event.error_code
        elif isinstance(event, ev.ConnectionTerminated):
            self.goaway = event
        elif isinstance(event, ev.RemoteSettingsChanged):
            for code, change in event.changed_settings.items():
                self.remote_settings[code] = change.new_value

    def wait(self, done: Callable[[], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("the server did not answer in time")
            if not self.read_once(left):
                if done():
                    return
                raise AssertionError("the server closed the connection")

    def response(self, sid: int, timeout: float = 20) -> tuple[int, bytes]:
        self.wait(lambda: sid in self.ended or sid in self.resets, timeout)
        if sid not in self.ended:  # reset before its end (a reset after it is NO_ERROR's)
            return 0, b""
        return int(self.heads[sid][b":status"]), bytes(self.bodies.get(sid, b""))

    def wait_closed(self, timeout: float = 20) -> None:
        """Until the server closes the connection (reading whatever it sends first)."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("the server did not close the connection")
            try:
                self.read_once(left)
            except Exception:  # h2 refuses frames after the GOAWAY: what we wanted
                self.closed = True

    def close(self) -> None:
        self.sock.close()


__all__ = ["H2Client", "SettingCodes"]
