"""What an app sees of TLS: the scheme and the client certificate (WSGI and ASGI)."""

import contextlib
import json
import os
import sys
from pathlib import Path

KEYS = ("wsgi.url_scheme", "HTTPS", "SSL_CLIENT_CERT", "SSL_CLIENT_VERIFY", "HTTP_HOST")


def _descriptors():
    """What each of this worker's descriptors is (a hostile app looking for keys). The
    directories the worker imports from by descriptor (a checkout under a private
    directory: worker/privileges.py) are its own import path, and are left out."""
    imports = {entry.split("/")[4] for entry in sys.path if entry.startswith("/proc/self/fd/")}
    found = []
    for fd in os.listdir("/proc/self/fd"):
        if fd in imports:
            continue
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
    return found


def application(environ, start_response):
    if environ["PATH_INFO"] == "/descriptors":
        imports = sorted({os.readlink("/".join(e.split("/")[:5])) for e in sys.path
                          if e.startswith("/proc/self/fd/")})
        body = json.dumps({"fds": _descriptors(), "import_dirs": imports,
                           "environ": sorted(map(str, environ.values())),
                           "env": sorted(os.environ.values()),
                           "cmdline": Path("/proc/self/cmdline").read_text()}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    body = json.dumps({k: environ.get(k) for k in KEYS}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    tls = scope["extensions"].get("tls", {})
    body = json.dumps({"scheme": scope["scheme"], "SSL_CLIENT_CERT": tls.get("SSL_CLIENT_CERT"),
                       "SSL_CLIENT_VERIFY": tls.get("SSL_CLIENT_VERIFY"),
                       "client_cert_chain": tls.get("client_cert_chain")}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
