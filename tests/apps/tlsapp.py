"""What an app sees of TLS: the scheme and the client certificate (WSGI and ASGI)."""

import json

KEYS = ("wsgi.url_scheme", "HTTPS", "SSL_CLIENT_CERT", "SSL_CLIENT_VERIFY", "HTTP_HOST")


def application(environ, start_response):
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
