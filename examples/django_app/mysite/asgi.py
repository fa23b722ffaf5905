"""The ASGI entry point: `webgarden run mysite.asgi:application`.

Django's ASGI handler runs the same views: async views on the worker's event loop, sync ones
in Django's thread (sync_to_async). It does not do lifespan, which webgarden's default
(`--lifespan auto`) notices once and serves it without.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_asgi_application()
