"""ASGI entry point: `uvicorn shortener_site.asgi:application`."""

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shortener_site.settings")

django_application = get_asgi_application()

# Imported once Django is set up: the app's modules use the ORM.
from links.asgi import ShortenerApplication  # noqa: E402
from links.fastpath import RedirectFastPath  # noqa: E402

application = ShortenerApplication(
    django_application,
    fast_path=RedirectFastPath.from_settings() if settings.REDIRECT_FAST_PATH else None,
)
