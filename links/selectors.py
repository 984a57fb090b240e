"""Reads: finding links and the addresses they are served at."""

from django.conf import settings
from django.http import HttpRequest

from links.errors import URL_NOT_FOUND, LinkUnavailable
from links.models import Link, LinkStatus


def build_short_url(*, slug: str, request: HttpRequest) -> str:
    """The public address of a slug: PUBLIC_BASE_URL when configured, else the
    scheme and host the client used (as vouched for by the trusted proxy)."""
    base = settings.PUBLIC_BASE_URL or f"{request.scheme}://{request.get_host()}"
    return f"{base}/{slug}"


def get_followable_link(*, slug: str) -> Link:
    """The link behind `slug` if it may be followed now; else LinkUnavailable
    with what a visitor is told (Link.status decides)."""
    link = Link.objects.filter(slug=slug).first()
    if link is None:
        raise LinkUnavailable(status=404, message=URL_NOT_FOUND)
    status = link.status
    if status != LinkStatus.ACTIVE:
        raise LinkUnavailable.for_status(status)
    return link
