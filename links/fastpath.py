"""The redirect fast path: `GET`/`HEAD /<slug>` answered without Django's stack.

A shortener exists to redirect, so the hot path is kept to a dictionary lookup,
a counter increment and one ASGI response. It answers only the plain cases:

- an active link without a click limit: 308 (the click is counted in memory
  by `links.clicks`), until its expiry;
- a slug with no link: 404 `{"error": "URL not found"}` (looked up each time,
  never cached, so a new link is found at once);
- a Host this site does not answer to: 400, as Django would.

Everything else (limited, expired or disabled links, other paths and methods)
goes to Django. Whether a link may be followed is `Link.status`'s decision.

Each worker process keeps a bounded slug -> answer cache, filled from SQLite
with a read-only connection of its own. Invalidation cannot miss a writer:
the database's triggers bump `links_linktableversion` in the same transaction
as any change to a link (migration 0002). On every request the worker asks
SQLite's `PRAGMA data_version` whether another connection committed anything
(a call into SQLite, no I/O) and only then re-reads the version row; a new
version clears the cache. Readers see only committed data, so an answer is
never cached from a row that a later commit changed without the version
moving on with it.
"""

import re
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from links.clicks import click_counter
from links.errors import INVALID_HOST, URL_NOT_FOUND, error_response
from links.models import Link, LinkStatus
from links.services import is_reserved_slug
from links.visitors import is_counted_visit

SLUG_PATH = re.compile(r"/([A-Za-z0-9_-]{1,64})")
COMMON_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
]
EMPTY_BODY_MESSAGE = {"type": "http.response.body", "body": b""}
# Hosts seen are remembered (allowed or not) up to this many.
MAX_REMEMBERED_HOSTS = 1024


def _error_messages(message: str, status: int) -> tuple[dict, dict]:
    """The ASGI messages of Django's own response for this error: the same bytes."""
    body = error_response(message, status=status).content
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *COMMON_HEADERS,
        ],
    }
    return start, {"type": "http.response.body", "body": body}


@dataclass(frozen=True, slots=True)
class CachedLink:
    link_id: int
    location: bytes
    # Seconds since the epoch after which this answer no longer holds (expiry).
    valid_until: float


# A cached answer that this module does not give: Django decides.
DELEGATE = CachedLink(link_id=0, location=b"", valid_until=0.0)
NEVER = float("inf")


def _parse_db_datetime(value: str | None) -> datetime | None:
    # Django stores aware datetimes as naive UTC text.
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


class RedirectFastPath:
    def __init__(self, *, database_path: Path, max_entries: int = 100_000):
        self.database_path = Path(database_path)
        self.max_entries = max_entries
        self._cache: dict[str, CachedLink] = {}
        # The links version the cache was filled under, and the connection's
        # data_version when it was last read.
        self._version: int | None = None
        self._data_version: int | None = None
        self._connection: sqlite3.Connection | None = None
        self._hosts: dict[bytes, bool] = {}
        self._not_found = _error_messages(URL_NOT_FOUND, 404)
        self._bad_host = _error_messages(INVALID_HOST, 400)

    def _database(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = sqlite3.connect(
                f"file:{self.database_path}?mode=ro", uri=True, check_same_thread=False, timeout=5
            )
            self._connection.execute("PRAGMA query_only = ON")
            self._connection.execute("PRAGMA mmap_size = 134217728")
        return self._connection

    def _forget_everything(self) -> None:
        self._cache.clear()
        self._version = self._data_version = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _revalidate(self, database: sqlite3.Connection) -> None:
        """Clear the cache if links changed since it was filled. The order
        matters: data_version, then the version row, then (on a miss) the link,
        so an entry is never filed under a version newer than its row."""
        (data_version,) = database.execute("PRAGMA data_version").fetchone()
        if data_version == self._data_version:
            return
        (version,) = database.execute("SELECT version FROM links_linktableversion WHERE id = 1").fetchone()
        self._data_version = data_version
        if version != self._version:
            self._cache.clear()
            self._version = version

    def _load(self, database: sqlite3.Connection, slug: str) -> CachedLink | None:
        row = database.execute(
            "SELECT id, original_url, is_active, expires_at, max_clicks, clicks "
            "FROM links_link WHERE slug = ?",
            (slug,),
        ).fetchone()
        if row is None:
            return None
        link_id, url, is_active, expires_at, max_clicks, clicks = row
        link = Link(
            id=link_id,
            original_url=url,
            is_active=bool(is_active),
            expires_at=_parse_db_datetime(expires_at),
            max_clicks=max_clicks,
            clicks=clicks,
        )
        # Limited links take their click in the database (exact across
        # workers): Django's view does that.
        if link.status != LinkStatus.ACTIVE or link.max_clicks is not None or not url.isascii():
            return DELEGATE
        valid_until = link.expires_at.timestamp() if link.expires_at is not None else NEVER
        return CachedLink(link_id=link_id, location=url.encode("ascii"), valid_until=valid_until)

    def lookup(self, slug: str) -> CachedLink | None:
        """The answer for `slug`: a link, None (no such link) or DELEGATE."""
        try:
            database = self._database()
            self._revalidate(database)
            try:
                return self._cache[slug]
            except KeyError:
                entry = self._load(database, slug)
        except sqlite3.Error:
            # No schema yet, a locked, missing or unreadable file: nothing cached
            # can be trusted, and Django answers properly.
            self._forget_everything()
            return DELEGATE
        if entry is not None:
            # "No such link" is not cached, so creating a link invalidates nothing.
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[slug] = entry
        return entry

    def host_allowed(self, host: bytes) -> bool:
        """Django's own rule (ALLOWED_HOSTS), remembered per Host value."""
        allowed = self._hosts.get(host)
        if allowed is None:
            domain, _port = split_domain_port(host.decode("latin-1"))
            allowed = bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)
            if len(self._hosts) >= MAX_REMEMBERED_HOSTS:
                self._hosts.clear()
            self._hosts[host] = allowed
        return allowed

    async def handle(self, scope, send) -> bool:
        """Answer the request if it is a plain redirect or an unknown slug;
        False leaves it to Django."""
        match = SLUG_PATH.fullmatch(scope["path"])
        if match is None or scope["method"] not in ("GET", "HEAD"):
            return False
        host = None
        user_agent = b""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"user-agent":
                user_agent = value
        if host is None:
            return False
        if not self.host_allowed(host):
            await self._send(send, self._bad_host)
            return True
        slug = match.group(1)
        entry = self.lookup(slug)
        if entry is None:
            if is_reserved_slug(slug):
                return False  # a path of the site's own, such as /healthz
            await self._send(send, self._not_found)
            return True
        if entry is DELEGATE or entry.valid_until <= time.time():
            return False
        if is_counted_visit(method=scope["method"], user_agent=user_agent.decode("latin-1")):
            click_counter.record(entry.link_id)
        await send(
            {
                "type": "http.response.start",
                "status": 308,
                "headers": [(b"location", entry.location), (b"content-length", b"0"), *COMMON_HEADERS],
            }
        )
        await send(EMPTY_BODY_MESSAGE)
        return True

    @staticmethod
    async def _send(send, messages: tuple[dict, dict]) -> None:
        start, body = messages
        await send(start)
        await send(body)
