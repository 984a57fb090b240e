from datetime import date, datetime
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from links.destinations import validate_destination
from links.slugs import validate_slug

# Plenty for any campaign, and far inside every database's integer range.
MAX_CLICK_LIMIT = 2**31 - 1


class LinkStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DISABLED = "disabled", "Disabled"
    EXPIRED = "expired", "Expired"
    EXHAUSTED = "exhausted", "Click limit reached"


# The one definition of a link's state: each status that stops a link from
# being followed, in order of precedence, as an SQL condition and as the same
# condition on a loaded link (or on the fast path's row: anything with the
# fields is_active, expires_at, max_clicks and clicks). A link matching none is
# active. The conditions are built only when a query needs them: checking a
# loaded link builds no Q objects (measured: a model instance and the Qs were
# most of a redirect-cache miss, docs/performance.md, 2026-11-29).
STATUS_RULES = (
    (LinkStatus.DISABLED, lambda now: Q(is_active=False), lambda link, now: not link.is_active),
    (
        LinkStatus.EXPIRED,
        lambda now: Q(expires_at__lte=now),
        lambda link, now: link.expires_at is not None and link.expires_at <= now,
    ),
    (
        LinkStatus.EXHAUSTED,
        lambda now: Q(max_clicks__isnull=False, counter__clicks__gte=F("max_clicks")),
        lambda link, now: link.max_clicks is not None and link.clicks >= link.max_clicks,
    ),
)


class LinkState(NamedTuple):
    """The fields a link's status depends on, as read without the ORM (the
    redirect fast path's own query)."""

    is_active: bool
    expires_at: datetime | None
    max_clicks: int | None
    clicks: int


def status_of(*, link: "Link | LinkState") -> LinkStatus:
    """The status of a loaded link or of a LinkState."""
    now = timezone.now()
    for status, _, applies in STATUS_RULES:
        if applies(link, now):
            return status
    return LinkStatus.ACTIVE


class LinkQuerySet(models.QuerySet):
    def with_status(self, status: LinkStatus) -> "LinkQuerySet":
        earlier = Q()
        now = timezone.now()
        for rule_status, sql_condition, _ in STATUS_RULES:
            condition = sql_condition(now)
            if rule_status == status:
                return self.filter(condition).exclude(earlier) if earlier else self.filter(condition)
            earlier |= condition
        return self.exclude(earlier)

    def followable(self) -> "LinkQuerySet":
        return self.with_status(LinkStatus.ACTIVE)

    def order_by(self, *field_names) -> "LinkQuerySet":
        """`clicks` and `last_clicked_at` order by the counters (LinkClicks), a
        link without a row counting as never clicked, on every database."""
        return super().order_by(*(COUNTER_ORDERINGS.get(name, name) for name in field_names))


class LinkManager(models.Manager.from_queryset(LinkQuerySet)):
    def get_queryset(self) -> LinkQuerySet:
        # The counters come in the same query (a LEFT JOIN), not one query per link.
        return super().get_queryset().select_related("counter")


class Link(models.Model):
    """A short slug that redirects to an original URL."""

    slug = models.CharField(max_length=64, unique=True, editable=False, validators=[validate_slug])
    original_url = models.TextField(validators=[validate_destination])
    # The one plain, auto-generated link of a URL: what "same URL -> same
    # slug" returns to every client, so it never carries limits (see clean()).
    is_canonical = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    is_active = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    max_clicks = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_CLICK_LIMIT)]
    )

    objects = LinkManager()

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
    def clicks(self) -> int:
        counter = self._counter()
        return 0 if counter is None else counter.clicks

    @property
    def last_clicked_at(self) -> datetime | None:
        counter = self._counter()
        return None if counter is None else counter.last_clicked_at

    def _counter(self) -> "LinkClicks | None":
        """This link's counters; None until its first click is written."""
        if self.pk is None:
            return None
        try:
            return self.counter
        except LinkClicks.DoesNotExist:
            return None

    def clicks_per_day(self, *, since: date | None = None) -> list["DayClicks"]:
        """Clicks per UTC day, newest first (from `since` on): the DailyClicks
        rows and the day the counters row keeps, read in one statement and so
        in one snapshot. Two reads could straddle the trigger that moves the
        kept day into DailyClicks (links/triggers.py), and count that day twice
        or not at all."""
        if self.pk is None:
            return []
        daily = DailyClicks.objects.filter(link=self).order_by().values_list("day", "count")
        kept = (
            LinkClicks.objects.filter(link=self, latest_day__isnull=False, latest_day_clicks__gt=0)
            .order_by()
            .values_list("latest_day", "latest_day_clicks")
        )
        if since is not None:
            daily, kept = daily.filter(day__gte=since), kept.filter(latest_day__gte=since)
        counts: dict[date, int] = {}
        for day, count in daily.union(kept, all=True):
            counts[day] = counts.get(day, 0) + count
        return [DayClicks(day=day, count=count) for day, count in sorted(counts.items(), reverse=True)]

    @property
    def status(self) -> LinkStatus:
        return status_of(link=self)

    def clean(self) -> None:
        # One client's limit must never cut off the others who were given the
        # same canonical link.
        if self.is_canonical and (self.expires_at is not None or self.max_clicks is not None):
            message = (
                "This is the shared link of its URL, so it cannot have an expiry or a click limit; "
                "create a separate link with them instead."
            )
            raise ValidationError(
                {name: message for name in ("expires_at", "max_clicks") if getattr(self, name) is not None}
            )


class LinkClicks(models.Model):
    """A link's click counters, apart from its wide row (which carries a URL of
    up to 2 KB): adding clicks then rewrites a narrow row in a small table, a
    fraction of the pages (measured: about half the flush's time at 1,000,000
    links, docs/performance.md, 2026-11-29). Written by links.clicks (the
    flush on PostgreSQL, the journal's roll-up on SQLite: links.clicks) and
    services.take_limited_click, which create the row at a link's first click;
    read through Link.clicks / Link.last_clicked_at."""

    link = models.OneToOneField(Link, on_delete=models.CASCADE, primary_key=True, related_name="counter")
    clicks = models.PositiveBigIntegerField(default=0)
    last_clicked_at = models.DateTimeField(null=True, blank=True)
    # The UTC day of the latest clicks added and the link's clicks that day,
    # kept in the row every addition updates anyway instead of a DailyClicks row of
    # their own: one row written per clicked link, not two (docs/performance.md,
    # 2026-11-29, night). When a write (the flush on PostgreSQL, the journal's
    # roll-up on SQLite) brings another day's clicks, the
    # database moves the count held here into DailyClicks (links/triggers.py,
    # DAY_MOVED; a writer sets the two together). Read through Link.clicks_per_day.
    latest_day = models.DateField(null=True, blank=True)
    # A default in the database too: take_limited_click makes rows in SQL.
    latest_day_clicks = models.PositiveBigIntegerField(default=0, db_default=0)

    class Meta:
        verbose_name = "link clicks"
        verbose_name_plural = "link clicks"

    def __str__(self) -> str:
        return f"{self.link_id}: {self.clicks}"


class ClickRollUp(models.Model):
    """How far the click journal has been added to the counters, on SQLite:
    the journal's last row added (one row, id 1). The journal is a file of
    its own beside the database (links.clicks: a flush's commit there leaves
    this file, and every reader's cache of it, alone), so a roll-up commits
    twice: the counters with this row here, then the rows' deletion there.
    Should it stop between the two, the next roll-up skips the rows up to
    `last_row` instead of adding them again."""

    last_row = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"rolled up to journal row {self.last_row}"


# Link.objects.order_by() names for the counters, NULL (never clicked) as 0.
COUNTER_ORDERINGS = {
    "clicks": Coalesce("counter__clicks", 0).asc(),
    "-clicks": Coalesce("counter__clicks", 0).desc(),
    "last_clicked_at": F("counter__last_clicked_at").asc(nulls_first=True),
    "-last_clicked_at": F("counter__last_clicked_at").desc(nulls_last=True),
}


class LinkTableVersion(models.Model):
    """One row whose `version` grows with every committed change to a link that
    could change a redirect (see migration 0002's triggers, which keep it in
    the writer's own transaction whatever wrote the row). Redirect caches
    compare it to the version they were filled under."""

    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"links version {self.version}"


class DayClicks(NamedTuple):
    day: date
    count: int


class DailyClicks(models.Model):
    """Clicks of one link on one UTC day; for the link's latest day, its
    LinkClicks row keeps a count of its own until another day's clicks arrive,
    to be added to this one: read Link.clicks_per_day."""

    link = models.ForeignKey(Link, on_delete=models.CASCADE, related_name="daily_clicks")
    day = models.DateField()
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-day"]
        constraints = [models.UniqueConstraint(fields=["link", "day"], name="one_row_per_link_day")]

    def __str__(self) -> str:
        return f"{self.link.slug} {self.day}: {self.count}"


class RateLimitBucket(models.Model):
    """The times of one client's recent requests of one kind (a sliding window),
    updated under a row lock so that concurrent workers cannot both take the
    last slot."""

    key = models.CharField(max_length=200, primary_key=True)
    hits = models.JSONField(default=list)
    updated_at = models.FloatField(db_index=True)

    def __str__(self) -> str:
        return f"{self.key}: {len(self.hits)} recent"


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
