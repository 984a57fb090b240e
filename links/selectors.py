"""Reads: finding links and the addresses they are served at."""

from django.conf import settings
from django.http import HttpRequest

from links.errors import URL_NOT_FOUND, LinkUnavailable
from links.models import Link, LinkStatus


def public_base_url(*, request: HttpRequest) -> str:
    """The site's public address: PUBLIC_BASE_URL when configured, else the
    scheme and host the client used (as vouched for by the trusted proxy)."""
    return settings.PUBLIC_BASE_URL or f"{request.scheme}://{request.get_host()}"


def build_short_url(*, slug: str, request: HttpRequest) -> str:
    return f"{public_base_url(request=request)}/{slug}"


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
