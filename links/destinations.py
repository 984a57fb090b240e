"""Is this URL acceptable as a link's destination? The one rule, used by the
API, the admin and the model's own validation (`Link.full_clean`)."""

import ipaddress
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.http.request import split_domain_port
from django.utils.encoding import iri_to_uri, punycode

# The contract's error for any refused URL; the reason travels beside it.
INVALID_URL = "Invalid URL format"

_http_url_validator = URLValidator(schemes=["http", "https"])


def to_ascii_url(url: str) -> str:
    """The same URL with an IDNA host and a percent-encoded path and query,
    so that it can travel in a Location header."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if not netloc.isascii():
        host, colon, port = netloc.rpartition(":")
        if not colon or not port.isdigit():
            host, colon, port = netloc, "", ""
        netloc = f"{punycode(host)}{colon}{port}"
    rest = iri_to_uri(urlunsplit(("", "", parts.path, parts.query, parts.fragment)))
    return f"{parts.scheme}://{netloc}{rest}"


def _host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").rstrip(".")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a host names, however it is spelled ([::ffff:a.b.c.d] is a.b.c.d)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_loopback_or_unspecified(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _address(host)
    return address is not None and (address.is_loopback or address.is_unspecified)


def _matches_site_host(host: str, pattern: str) -> bool:
    # ALLOWED_HOSTS' own syntax: ".sho.rt" is sho.rt and every subdomain.
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    address = _address(host)
    if address is not None:
        return address == _address(pattern)
    return host == pattern


def site_hosts() -> list[str]:
    """Every name this deployment answers to (ALLOWED_HOSTS' wildcard aside)."""
    hosts = [host for host in settings.ALLOWED_HOSTS if host != "*"]
    if settings.PUBLIC_BASE_URL:
        hosts.append(_host_of(settings.PUBLIC_BASE_URL))
    return hosts


def _refuse(reason: str, code: str) -> None:
    raise ValidationError(reason, code=code)


def normalize_destination(url: str, *, request_host: str = "") -> str:
    """`url` in the ASCII form it is stored and redirected in, or ValidationError
    whose message says why it is refused. `request_host` adds the name the
    client used to reach this site to the ones a link may not point back to."""
    if not isinstance(url, str) or not url:
        _refuse("A URL is required.", "required")
    if len(url) > settings.MAX_URL_LENGTH:
        _refuse(f"A URL is at most {settings.MAX_URL_LENGTH} characters.", "too_long")
    try:
        _http_url_validator(url)
        urlsplit(url).port  # noqa: B018 - raises on a port beyond 65535
    except (ValidationError, ValueError):
        _refuse("Only absolute http:// and https:// URLs with a valid host are accepted.", "invalid")
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        _refuse("URLs carrying a user name or password are not accepted.", "credentials")
    ascii_url = to_ascii_url(url)
    if len(ascii_url) > settings.MAX_URL_LENGTH:
        _refuse(f"A URL is at most {settings.MAX_URL_LENGTH} characters once encoded.", "too_long")
    host = _host_of(ascii_url)
    own = [*site_hosts(), *([split_domain_port(request_host)[0]] if request_host else [])]
    if _is_loopback_or_unspecified(host) or any(_matches_site_host(host, pattern) for pattern in own):
        _refuse("The URL points back to this site: a short link to it would loop.", "loop")
    return ascii_url


def validate_destination(url: str) -> None:
    """Model field validator: the same rule, without a request."""
    normalize_destination(url)
