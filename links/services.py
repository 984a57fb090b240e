"""Writes: creating links and changing them."""

import functools
import hashlib
import secrets
import time
import uuid
from datetime import datetime

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from links.clicks import roll_up_journal
from links.models import APIKey, Link, LinkStatus, LinkTableVersion, RateLimitBucket
from links.slugs import generate_slug

API_KEY_PREFIX = "shk_"

# A fresh random slug collides with an existing one with probability
# links / 62**7; a handful of retries makes failure practically impossible.
MAX_SLUG_ATTEMPTS = 10


class SlugTaken(Exception):
    """The custom slug already points at another URL."""


def shorten_url(
    *,
    url: str,
    slug: str | None = None,
    expires_at: datetime | None = None,
    max_clicks: int | None = None,
) -> tuple[Link, bool]:
    """Return the link for `url` and whether it was created now.

    Without a custom slug or limits, a URL has one canonical link, returned
    again on every later call. A custom slug names its own link (SlugTaken
    when it already names another URL); limits always make a new link, since
    sharing one would let one client's limits cut off another's. A URL whose
    canonical link an operator disabled gets no new link (ValidationError).
    """
    if slug is None and expires_at is None and max_clicks is None:
        existing = Link.objects.filter(original_url=url, is_canonical=True).first()
        if existing is not None and existing.status == LinkStatus.ACTIVE:
            return existing, False
    refuse_disabled_url(url=url)
    if slug is not None:
        return _create_custom_link(url=url, slug=slug, expires_at=expires_at, max_clicks=max_clicks)
    return _create_generated_link(url=url, expires_at=expires_at, max_clicks=max_clicks)


def refuse_disabled_url(*, url: str) -> None:
    """An operator who disables a URL's canonical link (phishing, spam) has
    disabled the URL: no new link may lead there (ValidationError)."""
    if Link.objects.filter(original_url=url, is_canonical=True, is_active=False).exists():
        raise ValidationError(
            {"url": ValidationError("This URL has been disabled on this site.", code="disabled")}
        )


def _insert(**fields) -> Link:
    """A new link, checked by the model's own rules first. Uniqueness is left
    to the database, which decides races (IntegrityError)."""
    link = Link(**fields)
    link.full_clean(validate_unique=False, validate_constraints=False)
    with transaction.atomic():
        link.save(force_insert=True)
    return link


def _create_generated_link(
    *, url: str, expires_at: datetime | None, max_clicks: int | None
) -> tuple[Link, bool]:
    canonical = expires_at is None and max_clicks is None
    for _ in range(MAX_SLUG_ATTEMPTS):
        try:
            link = _insert(
                slug=generate_slug(),
                original_url=url,
                is_canonical=canonical,
                expires_at=expires_at,
                max_clicks=max_clicks,
            )
            return link, True
        except IntegrityError:
            # Either a concurrent request created this URL's canonical link
            # first (return theirs), or the random slug collided (try again).
            if canonical:
                winner = Link.objects.filter(original_url=url, is_canonical=True).first()
                if winner is not None:
                    return winner, False
    raise RuntimeError(f"could not find a free slug in {MAX_SLUG_ATTEMPTS} attempts")


def _create_custom_link(
    *, url: str, slug: str, expires_at: datetime | None, max_clicks: int | None
) -> tuple[Link, bool]:
    try:
        return _insert(slug=slug, original_url=url, expires_at=expires_at, max_clicks=max_clicks), True
    except IntegrityError:
        existing = Link.objects.filter(slug=slug).first()
        if existing is not None and existing.original_url == url:
            return existing, False
        raise SlugTaken(slug) from None


# One statement, so the limit holds exactly however many requests and worker
# processes race for the last click: SQLite runs one writer at a time, and
# PostgreSQL's ON CONFLICT locks the counters row and checks the WHERE on its
# latest version (the first click inserts the row; a concurrent first click
# waits for it, then takes the UPDATE branch).
TAKE_LIMITED_CLICK = (
    "INSERT INTO links_linkclicks (link_id, clicks, last_clicked_at) "
    "SELECT id, 1, %s FROM links_link WHERE id = %s AND max_clicks IS NOT NULL AND max_clicks > 0 "
    "ON CONFLICT (link_id) DO UPDATE SET clicks = links_linkclicks.clicks + 1, "
    "last_clicked_at = excluded.last_clicked_at "
    "WHERE links_linkclicks.clicks < "
    "(SELECT max_clicks FROM links_link WHERE id = links_linkclicks.link_id AND max_clicks IS NOT NULL)"
)


def take_limited_click(*, link_id: int) -> bool:
    """Count one click of a link with `max_clicks`, in the database, if one is
    left (the counters live in models.LinkClicks)."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(TAKE_LIMITED_CLICK, (now, link_id))
        return cursor.rowcount == 1


def issue_api_key(*, name: str) -> tuple[APIKey, str]:
    """Create an API key; returns it with the plain key, which is not stored
    and cannot be shown again."""
    plain = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = APIKey.objects.create(
        name=name, prefix=plain[: len(API_KEY_PREFIX) + 6], key_hash=hash_api_key(plain)
    )
    return key, plain


def revoke_api_key(*, key: APIKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])


def hash_api_key(plain: str) -> str:
    # Keys are 256 random bits: a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(plain.encode()).hexdigest()


def update_link(*, link: Link, **changes) -> Link:
    """Change what may change of a link: is_active, expires_at, max_clicks.
    The model's rules check the changed fields (ValidationError)."""
    allowed = {"is_active", "expires_at", "max_clicks"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"cannot change {sorted(unknown)}")
    for name, value in changes.items():
        setattr(link, name, value)
    unchanged = [field.name for field in Link._meta.fields if field.name not in changes]
    link.full_clean(exclude=unchanged, validate_unique=False, validate_constraints=False)
    with transaction.atomic():
        if changes.get("max_clicks") is not None:
            # A limit counts the clicks before it too: those still in the
            # journal (SQLite) go to the counters first.
            roll_up_journal()
        link.save(update_fields=list(changes))
    return link


def set_links_active(*, links: QuerySet, active: bool) -> int:
    with transaction.atomic():
        return links.update(is_active=active)


def delete_link(*, link: Link) -> None:
    with transaction.atomic():
        link.delete()


def mark_links_changed(*, above: int = 0, using: str = DEFAULT_DB_ALIAS) -> None:
    """Tell every redirect cache that links changed, for writers that bypass
    the triggers (a restored database, a rebuilt table): the version becomes
    larger than both its current value and `above` (a version seen before)."""
    with transaction.atomic(using=using):
        _update_version_row(using, version=Greatest(F("version"), Value(above)) + 1)
        if connections[using].vendor == "postgresql":
            with connections[using].cursor() as cursor:
                cursor.execute("NOTIFY links_changed")


def check_database_writable() -> None:
    """A real write that commits (DatabaseError when the database is read-only,
    its disk full or its file gone). It changes no value, so no cache notices."""
    with transaction.atomic():
        _update_version_row(DEFAULT_DB_ALIAS, version=F("version"))


def _update_version_row(using: str, **values) -> None:
    # Migration 0002 makes the row; on PostgreSQL a TRUNCATE (`manage.py flush`)
    # can remove it, and the next writer puts it back.
    rows = LinkTableVersion.objects.using(using).filter(pk=1)
    if not rows.update(**values):
        LinkTableVersion.objects.using(using).get_or_create(pk=1)
        rows.update(**values)


def take_rate_slot(*, key: str, limit: int, period: float) -> float | None:
    """Take one of `limit` requests per `period` seconds for `key` (a sliding
    window): None when taken, else the seconds until one frees up. Atomic across
    threads, workers and replicas: in Redis (REDIS_URL) by one script, else in
    the database under a row lock (SQLite: the IMMEDIATE transaction's write
    lock), so no two requests can take the last slot."""
    if settings.REDIS_URL:
        return _take_rate_slot_in_redis(key=key, limit=limit, period=period)
    with transaction.atomic():
        bucket, _ = RateLimitBucket.objects.select_for_update().get_or_create(
            key=key, defaults={"updated_at": 0.0}
        )
        # Read once the lock is held: a hit recorded by whoever held it before is
        # then never in this request's future (a wait beyond `period`).
        now = time.time()
        recent = [hit for hit in bucket.hits if hit > now - period]
        if len(recent) >= limit:
            return recent[-limit] + period - now
        bucket.hits = [*recent, now]
        bucket.updated_at = now
        bucket.save(update_fields=["hits", "updated_at"])
        # Buckets of clients who went quiet are of no use any more.
        RateLimitBucket.objects.filter(updated_at__lt=now - period).delete()
    return None


# The same sliding window in one Redis script (run atomically), on Redis's own
# clock so that replicas with skewed clocks agree. Returns nil when the slot
# is taken, else the seconds until one frees up.
_RATE_SLOT_SCRIPT = """
local key, limit, period = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
local count = redis.call('ZCARD', key)
if count >= limit then
  local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + period - now)
end
redis.call('ZADD', key, now, ARGV[3])
redis.call('PEXPIRE', key, math.ceil(period * 1000))
return false
"""


@functools.cache
def _redis_rate_slot_script(url: str):
    return redis.Redis.from_url(url).register_script(_RATE_SLOT_SCRIPT)


def _take_rate_slot_in_redis(*, key: str, limit: int, period: float) -> float | None:
    wait = _redis_rate_slot_script(settings.REDIS_URL)(
        keys=[f"shortener:rate:{key}"], args=[limit, period, uuid.uuid4().hex]
    )
    return None if wait is None else float(wait)
