from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from rest_framework import serializers

from links.destinations import INVALID_URL, normalize_destination
from links.models import MAX_CLICK_LIMIT, Link, LinkStatus
from links.selectors import build_short_url
from links.slugs import validate_slug


class StrictCharField(serializers.CharField):
    """A string, and only a string, taken as sent: numbers are not quietly
    turned into text and whitespace is not quietly trimmed."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class DestinationURLField(StrictCharField):
    """A URL that `links.destinations` accepts, in its ASCII form."""

    default_error_messages = {"invalid": INVALID_URL}

    def __init__(self, **kwargs):
        kwargs.setdefault(
            "error_messages", {"blank": INVALID_URL, "required": INVALID_URL, "null": INVALID_URL}
        )
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        request = self.context.get("request")
        try:
            return normalize_destination(value, request_host=request.get_host() if request else "")
        except DjangoValidationError as refusal:
            raise serializers.ValidationError(refusal.messages, code=refusal.code) from None


class FutureDateTimeField(serializers.DateTimeField):
    default_error_messages = {"past": "must be in the future"}

    def to_internal_value(self, value):
        moment = super().to_internal_value(value)
        if moment <= timezone.now():
            self.fail("past")
        return moment


class ClickLimitField(serializers.IntegerField):
    def __init__(self, **kwargs):
        super().__init__(min_value=1, max_value=MAX_CLICK_LIMIT, **kwargs)


class CreateLinkSerializer(serializers.Serializer):
    url = DestinationURLField()
    slug = StrictCharField(required=False, validators=[validate_slug])
    expires_at = FutureDateTimeField(required=False)
    max_clicks = ClickLimitField(required=False)


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
    """Every error body: {"error": "<one sentence>"}, with "detail" (why a URL
    was refused) or "fields" (each invalid input) where they help."""

    error = serializers.CharField()
    detail = serializers.CharField(required=False)
    fields = serializers.DictField(required=False)


class DailyClicksSerializer(serializers.Serializer):
    """One day of Link.clicks_per_day."""

    day = serializers.DateField()
    # The range of the column it sums (a PositiveBigIntegerField), as the schema had it.
    count = serializers.IntegerField(min_value=0, max_value=2**63 - 1)


class LinkSummarySerializer(serializers.ModelSerializer):
    short_url = ShortURLField()
    # Link.status: active, disabled, expired, or exhausted (click limit reached).
    status = serializers.ChoiceField(choices=LinkStatus.choices, read_only=True)
    # Link's properties over its counters (models.LinkClicks), typed as the fields were.
    clicks = serializers.IntegerField(read_only=True)
    last_clicked_at = serializers.DateTimeField(read_only=True, allow_null=True)

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


class LinkDetailSerializer(LinkSummarySerializer):
    daily_clicks = DailyClicksSerializer(many=True, read_only=True, source="clicks_per_day")
    expires_at = FutureDateTimeField(required=False, allow_null=True)
    max_clicks = ClickLimitField(required=False, allow_null=True)

    class Meta(LinkSummarySerializer.Meta):
        fields = [*LinkSummarySerializer.Meta.fields, "daily_clicks"]
