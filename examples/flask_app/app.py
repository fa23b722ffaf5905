"""A small Flask application to run on webgarden.

    cd examples/flask_app && webgarden run app:app --workers 2

Routes:

    GET  /              an HTML index page
    GET  /whoami        JSON: the worker process that answered and its application pool
    POST /echo          echoes a JSON or form body as JSON, any other body as it came
    GET  /stream        a response streamed from a generator, one line at a time
    GET  /boom          raises an exception: a 500 page, the traceback in the server log
    GET  /download      a file from static/ through send_file (webgarden: zero-copy sendfile)
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from flask import (
    Flask,
    Response,
    jsonify,
    request,
    send_file,
    stream_with_context,
)

# Not .resolve(): see BASE_DIR in examples/django_app/mysite/settings.py.
HERE = Path(__file__).parent
DOWNLOAD = HERE / "static" / "garden.txt"
STREAM_LINES = 200

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return (
        "<!doctype html><title>webgarden + Flask</title>"
        "<h1>Hello from Flask on webgarden</h1>"
        f"<p>Answered by worker process {os.getpid()}.</p>"
        '<ul><li><a href="/whoami">/whoami</a></li><li><a href="/stream">/stream</a></li>'
        '<li><a href="/download">/download</a></li><li><a href="/boom">/boom</a></li></ul>'
    )


@app.get("/whoami")
def whoami() -> Response:
    return jsonify(
        pid=os.getpid(),
        pool=request.environ.get("webgarden.pool"),
        thread=threading.current_thread().name,
        server=request.environ.get("SERVER_SOFTWARE"),
    )


@app.post("/echo")
def echo() -> Response:
    if request.is_json:
        return jsonify(json=request.get_json())
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return jsonify(form=request.form.to_dict(flat=False))
    body = request.get_data()
    return Response(body, mimetype=request.mimetype or "application/octet-stream")


@app.get("/stream")
def stream() -> Response:
    count = request.args.get("lines", STREAM_LINES, type=int)

    @stream_with_context
    def generate():
        # stream_with_context keeps `request` usable while the body is being sent.
        for i in range(count):
            yield f"line {i} of {count} from {request.path}\n"

    return Response(generate(), mimetype="text/plain")


@app.get("/boom")
def boom() -> str:
    raise RuntimeError("this route fails on purpose")


@app.get("/download")
def download() -> Response:
    return send_file(DOWNLOAD, mimetype="text/plain", as_attachment=False)
