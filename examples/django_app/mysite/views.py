"""The example site's views."""

from __future__ import annotations

import json
import os
import threading

from django.conf import settings
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
)
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

DOWNLOAD = settings.BASE_DIR / "static" / "garden.txt"


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        "<!doctype html><title>webgarden + Django</title>"
        "<h1>Hello from Django on webgarden</h1>"
        f"<p>Answered by worker process {os.getpid()}.</p>"
        '<ul><li><a href="/whoami">/whoami</a></li><li><a href="/download">/download</a></li>'
        "</ul>"
    )


@require_safe
def whoami(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "pid": os.getpid(),
            "pool": request.META.get("webgarden.pool"),
            "thread": threading.current_thread().name,
            "server": request.META.get("SERVER_SOFTWARE"),
        }
    )


@csrf_exempt
@require_POST
def echo(request: HttpRequest) -> HttpResponse:
    """Echo a JSON or form body as JSON, any other body as it came."""
    if request.content_type == "application/json":
        try:
            return JsonResponse({"json": json.loads(request.body)})
        except ValueError:
            return HttpResponseBadRequest("not JSON\n", content_type="text/plain")
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return JsonResponse({"form": {k: request.POST.getlist(k) for k in request.POST}})
    return HttpResponse(
        request.body, content_type=request.content_type or "application/octet-stream"
    )


@require_safe
def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("this view fails on purpose")


@require_safe
def download(request: HttpRequest) -> FileResponse:
    # FileResponse hands the open file to the server's wsgi.file_wrapper: sendfile.
    return FileResponse(open(DOWNLOAD, "rb"), content_type="text/plain; charset=utf-8")
