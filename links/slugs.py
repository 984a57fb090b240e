"""What a slug may be: the one rule, used by the model's validation (so by the
API, the page form and the admin alike), the services and the fast path."""

import secrets
import string

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator

SLUG_ALPHABET = string.ascii_letters + string.digits

# Paths the site serves itself, or may one day; compared case-insensitively so
# that "Admin" cannot shadow "admin" for a human reading a link.
RESERVED_SLUGS = frozenset(
    {
        "admin",
        "api",
        "docs",
        "health",
        "healthz",
        "links",
        "login",
        "logout",
        "media",
        "metrics",
        "qr",
        "robots.txt",
        "favicon.ico",
        "static",
        "status",
    }
)

_slug_shape = RegexValidator(
    r"\A[A-Za-z0-9_-]{3,64}\Z",
    "A slug is 3 to 64 characters of letters, digits, '_' and '-'.",
    code="invalid_slug",
)


def is_reserved_slug(slug: str) -> bool:
    return slug.lower() in RESERVED_SLUGS


def validate_slug(slug: str) -> None:
    """Taken exactly as given: nothing is trimmed or folded."""
    _slug_shape(slug)
    if is_reserved_slug(slug):
        raise ValidationError(f"'{slug}' is reserved.", code="reserved_slug")


def generate_slug(*, length: int | None = None) -> str:
    length = length or settings.SLUG_LENGTH
    while True:
        slug = "".join(secrets.choice(SLUG_ALPHABET) for _ in range(length))
        if not is_reserved_slug(slug):
            return slug
