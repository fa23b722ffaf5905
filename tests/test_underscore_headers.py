"""Request headers spelt with underscores, end to end: a real server, a real WSGI app.

`X_User` and `X-User` both become `HTTP_X_USER` in WSGI, so a front proxy that strips or
sets `X-User` would be bypassed by a client sending `X_User`. The listener drops such
headers unless `<webLimits allowUnderscoresInHeaders="true">` says otherwise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import Client, free_port

CONFIG = """<configuration>
  <system.applicationHost>
    <applicationPools><add name="P" startMode="AlwaysRunning" /></applicationPools>
    <sites>
      <site name="s" id="1">
        <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:" /></bindings>
        <application path="/" applicationPool="P" app="testapp:application" />
      </site>
    </sites>
    {web_limits}
  </system.applicationHost>
</configuration>
"""


def _environ_headers(port: int, *header_lines: str) -> dict[str, str]:
    """The HTTP_* keys the app saw for one GET with these header lines."""
    client = Client(port)
    extra = "".join(f"{line}\r\n" for line in header_lines)
    client.send(f"GET /headers HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
    status, _, body = client.read_response()
    client.close()
    assert status == 200
    seen: dict[str, str] = json.loads(body)
    return seen


def _serve(start_server: Any, tmp_path: Path, web_limits: str = "") -> int:
    port = free_port()
    config = tmp_path / "applicationHost.config"
    config.write_text(CONFIG.format(port=port, web_limits=web_limits))
    start_server("serve", "-c", str(config))
    return port


def test_a_header_with_an_underscore_never_reaches_the_app(start_server, tmp_path: Path) -> None:
    port = _serve(start_server, tmp_path)
    seen = _environ_headers(port, "X_User: admin")
    assert "HTTP_X_USER" not in seen
    assert seen["HTTP_HOST"] == "127.0.0.1"


def test_the_same_header_spelt_with_a_dash_reaches_the_app(start_server, tmp_path: Path) -> None:
    port = _serve(start_server, tmp_path)
    assert _environ_headers(port, "X-User: alice")["HTTP_X_USER"] == "alice"
    # Both sent: only the dashed one counts, whatever the order.
    assert _environ_headers(port, "X_User: admin", "X-User: alice")["HTTP_X_USER"] == "alice"
    assert _environ_headers(port, "X-User: alice", "X_User: admin")["HTTP_X_USER"] == "alice"


def test_allow_underscores_in_headers_lets_them_through(start_server, tmp_path: Path) -> None:
    port = _serve(start_server, tmp_path, '<webLimits allowUnderscoresInHeaders="true" />')
    assert _environ_headers(port, "X_User: admin")["HTTP_X_USER"] == "admin"
