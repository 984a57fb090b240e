from django.db import models
from django.db.models import Q
from django.utils import timezone


class Link(models.Model):
    """A short slug that redirects to an original URL."""

    slug = models.CharField(max_length=64, unique=True, editable=False)
    original_url = models.TextField()
    # The one plain, auto-generated link of a URL: what "same URL -> same
    # slug" returns. Custom aliases and links with limits are not canonical.
    is_canonical = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    is_active = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    max_clicks = models.PositiveIntegerField(null=True, blank=True)
    clicks = models.PositiveBigIntegerField(default=0)
    last_clicked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Enforced by the database so concurrent creators of the same URL
            # cannot both insert: the loser reads the winner's row.
            models.UniqueConstraint(
                fields=["original_url"],
                condition=Q(is_canonical=True),
                name="one_canonical_link_per_url",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.slug} -> {self.original_url}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_exhausted(self) -> bool:
        return self.max_clicks is not None and self.clicks >= self.max_clicks


class DailyClicks(models.Model):
    """Clicks of one link on one UTC day."""

    link = models.ForeignKey(Link, on_delete=models.CASCADE, related_name="daily_clicks")
    day = models.DateField()
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-day"]
        constraints = [models.UniqueConstraint(fields=["link", "day"], name="one_row_per_link_day")]

    def __str__(self) -> str:
        return f"{self.link.slug} {self.day}: {self.count}"


class APIKey(models.Model):
    """A management API key. Only a SHA-256 hash of the key is stored."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(
        max_length=12, editable=False, help_text="First characters, to recognise a key."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    # DRF's IsAuthenticated asks the authenticated "user" this.
    is_authenticated = True
