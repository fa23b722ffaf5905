"""Settings for the example Django site: no database, no admin, auth or sessions."""

from __future__ import annotations

import os
from pathlib import Path

# Not .resolve(): under a root server in a private directory the worker reaches this
# directory through a descriptor (/proc/self/fd/N), and resolving that gives back the
# private path its user cannot enter.
BASE_DIR = Path(__file__).parent

# Set DJANGO_SECRET_KEY in production; this default is for the example only.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "webgarden-example-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS: list[str] = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
TEMPLATES: list[dict[str, object]] = []

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

# The request body the echo view accepts in memory (Django's default is 2.5 MB).
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# With DEBUG off, Django's default logging only mails errors to ADMINS; print them
# (with their tracebacks) to standard error instead, where webgarden's log goes.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
