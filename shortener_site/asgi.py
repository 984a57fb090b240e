"""ASGI entry point: `uvicorn shortener_site.asgi:application`."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shortener_site.settings")

application = get_asgi_application()
