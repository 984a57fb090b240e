from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import RegexValidator, URLValidator
from django.utils import timezone
from django.utils.encoding import iri_to_uri, punycode
from rest_framework import serializers

from links.models import DailyClicks, Link
from links.selectors import build_short_url
from links.services import is_reserved_slug

INVALID_URL = "Invalid URL format"
DEFAULT_PORTS = {"http": 80, "https": 443}

http_url_validator = URLValidator(schemes=["http", "https"])
custom_slug_validator = RegexValidator(
    r"\A[A-Za-z0-9_-]{3,64}\Z",
    "A slug is 3 to 64 characters of letters, digits, '_' and '-'.",
)


def to_ascii_url(url: str) -> str:
    """The same URL with an IDNA host and a percent-encoded path and query,
    so that it can travel in a Location header."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if not netloc.isascii():
        userinfo, at, hostport = netloc.rpartition("@")
        host, colon, port = hostport.rpartition(":")
        if not colon or not port.isdigit():
            host, colon, port = hostport, "", ""
        netloc = f"{userinfo}{at}{punycode(host)}{colon}{port}"
    rest = iri_to_uri(urlunsplit(("", "", parts.path, parts.query, parts.fragment)))
    return f"{parts.scheme}://{netloc}{rest}"


def _host_and_port(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url)
    return (parts.hostname or "").rstrip("."), parts.port or DEFAULT_PORTS.get(parts.scheme)


def points_at_this_site(url: str, *, request) -> bool:
    """Whether `url` would redirect back to this shortener (a loop)."""
    own = [request.build_absolute_uri("/")]
    if settings.PUBLIC_BASE_URL:
        own.append(settings.PUBLIC_BASE_URL)
    host, port = _host_and_port(url)
    for own_url in own:
        own_host, own_port = _host_and_port(own_url)
        # Ports are compared only when both are explicit: http://sho.rt and
        # https://sho.rt are the same site behind one proxy.
        defaults = DEFAULT_PORTS.values()
        if host == own_host and (port == own_port or port in defaults or own_port in defaults):
            return True
    return False


class StrictCharField(serializers.CharField):
    """A string, and only a string: numbers are not quietly turned into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class DestinationURLField(StrictCharField):
    """An absolute http(s) URL, returned in its ASCII form."""

    default_error_messages = {"invalid": INVALID_URL}

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", settings.MAX_URL_LENGTH)
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("error_messages", {"max_length": INVALID_URL, "blank": INVALID_URL})
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            http_url_validator(value)
            urlsplit(value).port  # noqa: B018 - raises on a port beyond 65535
        except (DjangoValidationError, ValueError):
            self.fail("invalid")
        ascii_url = to_ascii_url(value)
        if len(ascii_url) > settings.MAX_URL_LENGTH:
            self.fail("invalid")
        return ascii_url


class CreateLinkSerializer(serializers.Serializer):
    url = DestinationURLField(error_messages={"required": INVALID_URL, "null": INVALID_URL})
    slug = StrictCharField(required=False, validators=[custom_slug_validator])
    expires_at = serializers.DateTimeField(required=False)
    max_clicks = serializers.IntegerField(required=False, min_value=1)

    def validate_url(self, value: str) -> str:
        if points_at_this_site(value, request=self.context["request"]):
            raise serializers.ValidationError(INVALID_URL)
        return value

    def validate_expires_at(self, value):
        if value <= timezone.now():
            raise serializers.ValidationError("must be in the future")
        return value

    def validate_slug(self, value: str) -> str:
        if is_reserved_slug(value):
            raise serializers.ValidationError(f"'{value}' is reserved.")
        return value


class ShortURLField(serializers.CharField):
    """The public short URL of the link's slug."""

    def __init__(self, **kwargs):
        super().__init__(source="slug", read_only=True, **kwargs)

    def to_representation(self, slug: str) -> str:
        return build_short_url(slug=slug, request=self.context["request"])


class LinkSerializer(serializers.ModelSerializer):
    """The contract's response body for a created or found link."""

    short_slug = serializers.CharField(source="slug")
    short_url = ShortURLField()

    class Meta:
        model = Link
        fields = ["original_url", "short_slug", "short_url"]


class ErrorSerializer(serializers.Serializer):
    """Every error body: {"error": "<message>"}."""

    error = serializers.CharField()


class DailyClicksSerializer(serializers.ModelSerializer):
    class Meta:
        model = DailyClicks
        fields = ["day", "count"]


class LinkSummarySerializer(serializers.ModelSerializer):
    short_url = ShortURLField()
    status = serializers.SerializerMethodField()

    class Meta:
        model = Link
        fields = [
            "slug",
            "original_url",
            "short_url",
            "created_at",
            "is_active",
            "status",
            "expires_at",
            "max_clicks",
            "clicks",
            "last_clicked_at",
        ]
        read_only_fields = ["slug", "original_url", "created_at", "clicks", "last_clicked_at"]

    def get_status(self, link: Link) -> str:
        """active, disabled, expired, or exhausted (click limit reached)."""
        if not link.is_active:
            return "disabled"
        if link.is_expired:
            return "expired"
        if link.is_exhausted:
            return "exhausted"
        return "active"


class LinkDetailSerializer(LinkSummarySerializer):
    daily_clicks = DailyClicksSerializer(many=True, read_only=True)
    max_clicks = serializers.IntegerField(required=False, allow_null=True, min_value=1)

    class Meta(LinkSummarySerializer.Meta):
        fields = [*LinkSummarySerializer.Meta.fields, "daily_clicks"]
