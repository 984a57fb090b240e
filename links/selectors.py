"""Reads: finding links and the addresses they are served at."""

from django.conf import settings
from django.http import HttpRequest

from links.models import Link


def build_short_url(*, slug: str, request: HttpRequest) -> str:
    """The public address of a slug: PUBLIC_BASE_URL when configured, else the
    scheme and host the client used (as vouched for by the trusted proxy)."""
    base = settings.PUBLIC_BASE_URL or f"{request.scheme}://{request.get_host()}"
    return f"{base}/{slug}"


def get_link(*, slug: str) -> Link | None:
    return Link.objects.filter(slug=slug).first()
