"""The redirect fast path: `GET`/`HEAD /<slug>` answered without Django's stack.

A shortener exists to redirect, so the hot path is kept to a dictionary lookup,
a counter increment and one ASGI response. It answers only the plain cases:

- an active link without a click limit: 308 (the click is counted in memory
  by `links.clicks`), until its expiry;
- a slug with no link: 404 `{"error": "URL not found"}`, or the same page
  Django gives to a client that prefers HTML (links.negotiation); looked up
  each time, never cached, so a new link is found at once;
- a Host this site does not answer to: 400, as Django would.

Everything else (limited, expired or disabled links, reserved paths, other
methods) goes to Django. Whether a link may be followed is `Link.status`'s
decision (models.status_of); the bytes of every error are links.errors'.

Each worker process keeps a bounded slug -> answer cache. Invalidation cannot
miss a writer: the database's triggers (links/triggers.py) bump
`links_linktableversion` in the same transaction as any change to a link.

- SQLite (SQLiteLinks): a read-only connection of the worker's own, in the
  event loop. Every request asks `PRAGMA data_version` whether another
  connection committed anything (a call into SQLite, no I/O) and only then
  re-reads the version row; a new version clears the cache.
- PostgreSQL (PostgresLinks): misses are read in a thread on a small pool; a
  listener thread hears the triggers' NOTIFY at commit, and reads the version
  row every second in case a notification was lost.

Readers see only committed data, and an answer read while a change arrived is
not kept, so no answer outlives the change that made it wrong.
"""

import asyncio
import logging
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import psycopg
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from links.clicks import click_counter
from links.errors import INVALID_HOST, URL_NOT_FOUND, error_response
from links.models import LinkState, LinkStatus, status_of
from links.negotiation import prefers_html
from links.pages import visitor_error_page
from links.slugs import RESERVED_SLUGS
from links.visitors import is_counted_visit

logger = logging.getLogger(__name__)

SLUG_PATH = re.compile(r"/([A-Za-z0-9_-]{1,64})")
COMMON_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
]
EMPTY_BODY_MESSAGE = {"type": "http.response.body", "body": b""}
# A full redirect cache drops its oldest-inserted 1/EVICTED_SHARE of entries.
EVICTED_SHARE = 16
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


def _page_messages(message: str, status: int) -> tuple[dict, dict]:
    """The ASGI messages of Django's page for this error (a browser's answer)."""
    page = visitor_error_page(status=status, message=message)
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", page["Content-Type"].encode("latin-1")),
            (b"content-length", str(len(page.content)).encode()),
            *COMMON_HEADERS,
        ],
    }
    return start, {"type": "http.response.body", "body": page.content}


def _accept_header(scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"accept":
            return value.decode("latin-1")
    return None


@dataclass(frozen=True, slots=True)
class CachedLink:
    link_id: int
    location: bytes
    # Seconds since the epoch after which this answer no longer holds (expiry).
    valid_until: float


# A cached answer that this module does not give: Django decides.
DELEGATE = CachedLink(link_id=0, location=b"", valid_until=0.0)
NEVER = float("inf")


# No clicks: they matter only to a limited link's status, and a limited link is
# handed to Django before its status is asked (RedirectFastPath._answer), so the
# counters table (models.LinkClicks) is never read here (bench/miss_cost.py).
LINK_QUERY = "SELECT id, original_url, is_active, expires_at, max_clicks FROM links_link WHERE slug = ?"
POSTGRES_LINK_QUERY = LINK_QUERY.replace("?", "%s")
VERSION_QUERY = "SELECT version FROM links_linktableversion WHERE id = 1"
# How often a PostgreSQL listener also reads the version row, in case a
# notification was lost with its connection: the bound on a stale answer.
VERSION_POLL_SECONDS = 1.0
DATABASE_ERRORS = (sqlite3.Error, psycopg.Error, PoolTimeout)


class SQLiteLinks:
    """The links table read straight from the SQLite file, by a read-only
    connection of this worker's own: a few microseconds, so it runs in the event
    loop. Changes are seen through `PRAGMA data_version` (did another connection
    commit?) and the version row that the triggers keep."""

    blocking = False

    def __init__(self, path: Path):
        self.path = Path(path)
        self._connection: sqlite3.Connection | None = None
        self._data_version: int | None = None
        self._version: int | None = None

    def _database(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=5
            )
            self._connection.execute("PRAGMA query_only = ON")
            self._connection.execute("PRAGMA mmap_size = 134217728")
        return self._connection

    def version(self) -> int:
        """The links version now. Asked before a lookup, so that an entry is
        never filed under a version newer than its row."""
        database = self._database()
        (data_version,) = database.execute("PRAGMA data_version").fetchone()
        if data_version != self._data_version:
            (self._version,) = database.execute(VERSION_QUERY).fetchone()
            self._data_version = data_version
        return self._version

    def load(self, slug: str) -> tuple | None:
        row = self._database().execute(LINK_QUERY, (slug,)).fetchone()
        if row is None:
            return None
        link_id, url, is_active, expires_at, max_clicks = row
        # Django stores aware datetimes as naive UTC text.
        expires = None if expires_at is None else datetime.fromisoformat(expires_at).replace(tzinfo=UTC)
        return link_id, url, bool(is_active), expires, max_clicks

    def reset(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = self._data_version = self._version = None

    close = reset


class PostgresLinks:
    """The links table over the network. Misses run in a thread on a small
    connection pool of this worker's own, so the event loop never waits on
    PostgreSQL. Changes arrive by LISTEN on a thread of the worker's own: the
    link triggers NOTIFY at commit (never for a rollback); the version row is
    read every VERSION_POLL_SECONDS as well, in case a notification was lost
    with its connection. Each change moves this worker's `version` on."""

    blocking = True

    def __init__(self, conninfo: str, *, pool_size: int = 2):
        self.conninfo = conninfo
        self.pool_size = pool_size
        self._changes = 0
        self._pool: ConnectionPool | None = None
        self._started = threading.Lock()
        self._listener: threading.Thread | None = None
        self._listening = threading.Event()
        self._stop = threading.Event()

    def version(self) -> int:
        if self._listener is None:
            with self._started:
                if self._listener is None:
                    self._listener = threading.Thread(target=self._listen, name="links-listener", daemon=True)
                    self._listener.start()
                    # Nothing is cached before changes can be heard (once, at the first request).
                    self._listening.wait(timeout=5)
        return self._changes

    def _changed(self) -> None:
        self._changes += 1

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as connection:
                    connection.execute("LISTEN links_changed")
                    # Whatever changed while nobody was listening.
                    self._changed()
                    self._listening.set()
                    seen = connection.execute(VERSION_QUERY).fetchone()
                    while not self._stop.is_set():
                        for _notification in connection.notifies(timeout=VERSION_POLL_SECONDS):
                            self._changed()
                        version = connection.execute(VERSION_QUERY).fetchone()
                        if version != seen:
                            self._changed()
                            seen = version
            except Exception as error:
                logger.warning("links listener lost its connection (%s); retrying in 1 s", error)
                self._changed()
                time.sleep(1)

    def load(self, slug: str) -> tuple | None:
        if self._pool is None:
            with self._started:
                if self._pool is None:
                    self._pool = ConnectionPool(
                        self.conninfo,
                        min_size=1,
                        max_size=self.pool_size,
                        kwargs={"autocommit": True},
                        open=True,
                    )
        with self._pool.connection(timeout=5) as connection:
            return connection.execute(POSTGRES_LINK_QUERY, (slug,)).fetchone()

    def reset(self) -> None:
        self._changed()

    def close(self) -> None:
        self._stop.set()
        if self._pool is not None:
            self._pool.close()
        if self._listener is not None:
            self._listener.join(timeout=2 * VERSION_POLL_SECONDS)


# Options of Django's PostgreSQL backend that are not libpq connection parameters.
DJANGO_ONLY_OPTIONS = {"pool", "isolation_level", "server_side_binding", "assume_role"}


def links_from_settings() -> SQLiteLinks | PostgresLinks:
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.postgresql":
        parts = {
            "dbname": database["NAME"],
            "user": database.get("USER"),
            "password": database.get("PASSWORD"),
            "host": database.get("HOST"),
            "port": database.get("PORT"),
            # sslmode, sslrootcert, connect_timeout…: the same as Django's connections.
            **{k: v for k, v in database.get("OPTIONS", {}).items() if k not in DJANGO_ONLY_OPTIONS},
        }
        return PostgresLinks(make_conninfo(**{key: value for key, value in parts.items() if value}))
    return SQLiteLinks(database["NAME"])


class RedirectFastPath:
    def __init__(self, *, links: SQLiteLinks | PostgresLinks, max_entries: int = 100_000):
        self.links = links
        self.max_entries = max_entries
        self._cache: dict[str, CachedLink] = {}
        # The links version the cache was filled under.
        self._version: int | None = None
        self._hosts: dict[bytes, bool] = {}
        self._not_found = _error_messages(URL_NOT_FOUND, 404)
        self._not_found_page = _page_messages(URL_NOT_FOUND, 404)
        self._bad_host = _error_messages(INVALID_HOST, 400)

    @classmethod
    def from_settings(cls) -> "RedirectFastPath":
        return cls(links=links_from_settings())

    def start(self) -> None:
        """Open the database (and on PostgreSQL start listening) before the first
        request, so that no request waits for it in the event loop."""
        try:
            self._version = self.links.version()
        except DATABASE_ERRORS:
            pass  # not migrated yet: the first request tries again

    def close(self) -> None:
        self.links.close()

    @staticmethod
    def _answer(row: tuple | None) -> CachedLink | None:
        if row is None:
            return None
        link_id, url, is_active, expires_at, max_clicks = row
        # Limited links take their click in the database (exact across
        # workers): Django's view does that. Checked first, and the status on a
        # plain tuple, not a model instance: building a Link was most of a
        # miss's cost (docs/performance.md, 2026-11-29). Unlimited, so no
        # rule reads its clicks.
        if max_clicks is not None or not url.isascii():
            return DELEGATE
        state = LinkState(is_active=is_active, expires_at=expires_at, max_clicks=None, clicks=0)
        if status_of(link=state) != LinkStatus.ACTIVE:
            return DELEGATE
        valid_until = expires_at.timestamp() if expires_at is not None else NEVER
        return CachedLink(link_id=link_id, location=url.encode("ascii"), valid_until=valid_until)

    async def lookup(self, slug: str) -> CachedLink | None:
        """The answer for `slug`: a link, None (no such link) or DELEGATE."""
        try:
            version = self.links.version()
            if version != self._version:
                self._cache.clear()
                self._version = version
            try:
                return self._cache[slug]
            except KeyError:
                pass
            if self.links.blocking:
                row = await asyncio.to_thread(self.links.load, slug)
            else:
                row = self.links.load(slug)
            entry = self._answer(row)
            # Kept only if no change arrived while the row was read.
            if entry is not None and self.links.version() == version:
                # "No such link" is not cached, so creating a link invalidates nothing.
                if len(self._cache) >= self.max_entries:
                    self._evict_oldest()
                self._cache[slug] = entry
            return entry
        except DATABASE_ERRORS:
            # No schema yet, a locked, missing or unreachable database: nothing
            # cached can be trusted, and Django answers properly.
            self._cache.clear()
            self._version = None
            self.links.reset()
            return DELEGATE

    def _evict_oldest(self) -> None:
        """Make room in a full cache by dropping the oldest-inserted 1/16 of it
        (a dict keeps insertion order), so hot links stay cached; clearing it
        all made every hot link miss again. Dropped in a batch, not one at a
        time: deleting a dict's first key over and over leaves a run of dead
        slots that every later search for the first key walks again (measured
        in docs/performance.md, issue 15)."""
        oldest = list(islice(self._cache, max(1, self.max_entries // EVICTED_SHARE)))
        for slug in oldest:
            del self._cache[slug]

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
                if host is not None:
                    return False  # two Host headers: Django refuses them its own way
                host = value
            elif name == b"user-agent":
                user_agent = value
        if host is None:
            return False
        if not self.host_allowed(host):
            await self._send(send, self._bad_host)
            return True
        slug = match.group(1)
        if slug.lower() in RESERVED_SLUGS:
            return False  # a path of the site's own, such as /healthz
        entry = await self.lookup(slug)
        if entry is None:
            # Which answer, by links.negotiation's rule: read only here, so the
            # redirects and curl's requests do no more work than before.
            page = prefers_html(_accept_header(scope))
            await self._send(send, self._not_found_page if page else self._not_found)
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
