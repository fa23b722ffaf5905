"""Four small applications for the multi-site tests; each says who and where it is."""

from __future__ import annotations

import json
import os


def _make(name: str):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/read":
            # Reads a file as this worker's user: 200 and its text, or 403.
            path = environ["QUERY_STRING"]
            try:
                with open(path, encoding="utf-8") as f:
                    body, status = f.read().encode(), "200 OK"
            except PermissionError:
                body, status = b"permission denied", "403 Forbidden"
            start_response(status, [("Content-Type", "text/plain")])
            return [body]
        info = {
            "app": name,
            "pool": environ.get("webgarden.pool"),
            "pid": os.getpid(),
            "uid": os.getuid(),
            "script_name": environ["SCRIPT_NAME"],
            "path_info": environ["PATH_INFO"],
            "version": os.environ.get("SITEAPPS_VERSION", "1"),
        }
        body = json.dumps(info).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app


shop = _make("shop")
blog = _make("blog")
api = _make("api")
admin = _make("admin")
shop_v2 = _make("shop-v2")
