"""The redirect fast path: `GET`/`HEAD /<slug>` answered without Django's stack.

A shortener exists to redirect, so the hot path is kept to a dictionary lookup,
a counter increment and one ASGI response. It answers only the plain cases:

- an active, unexpired link without a click limit: 308 (the click is counted
  in memory by `links.clicks`);
- a slug with no link: 404 `{"error": "URL not found"}` (looked up each time,
  never cached, so a new link is found at once).

Everything else (limited, expired or disabled links, other paths and methods)
goes to Django, where the rules live in `links.views`.

Each worker process keeps a bounded slug -> link cache, filled from SQLite with
a read-only connection of its own. Any change to an existing link (`post_save` or
`post_delete`, so every edit made through the admin, the API or the ORM) bumps
a generation file beside the database; each request compares that file's stat
with the one the cache was filled under (one `stat` call, about a microsecond),
so every worker drops stale entries before it answers again.
"""

import json
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from links.clicks import click_counter
from links.exceptions import URL_NOT_FOUND
from links.visitors import is_counted_visit

SLUG_PATH = re.compile(r"/([A-Za-z0-9_-]{1,64})")
# The same bytes as Django's JsonResponse for the same error.
NOT_FOUND_BODY = json.dumps({"error": URL_NOT_FOUND}).encode()
COMMON_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
]
NOT_FOUND_START = {
    "type": "http.response.start",
    "status": 404,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(NOT_FOUND_BODY)).encode()),
        *COMMON_HEADERS,
    ],
}
NOT_FOUND_BODY_MESSAGE = {"type": "http.response.body", "body": NOT_FOUND_BODY}
EMPTY_BODY_MESSAGE = {"type": "http.response.body", "body": b""}


@dataclass(frozen=True, slots=True)
class CachedLink:
    link_id: int
    location: bytes
    # Seconds since the epoch, or None for never.
    expires_at: float | None


# A cached answer that this module does not give: Django decides.
DELEGATE = CachedLink(link_id=0, location=b"", expires_at=None)


def generation_path(database_path: Path) -> Path:
    return Path(database_path).with_name(Path(database_path).name + ".generation")


def bump_generation(database_path: Path) -> None:
    """Tell every worker's cache that links changed."""
    path = generation_path(database_path)
    # A new file (new inode and mtime) replaces the old one atomically.
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
    temporary.write_text(str(time.time_ns()))
    os.replace(temporary, path)


def _parse_db_datetime(value: str | None) -> float | None:
    if value is None:
        return None
    # Django stores aware datetimes as naive UTC text.
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


class RedirectFastPath:
    def __init__(self, *, database_path: Path, max_entries: int = 100_000):
        self.database_path = Path(database_path)
        self.generation_file = generation_path(self.database_path)
        self.max_entries = max_entries
        self._cache: dict[str, CachedLink] = {}
        self._generation: tuple[int, int] | None = None
        self._connection: sqlite3.Connection | None = None

    def _current_generation(self) -> tuple[int, int]:
        try:
            stat = os.stat(self.generation_file)
        except FileNotFoundError:
            return (0, 0)
        return (stat.st_ino, stat.st_mtime_ns)

    def _database(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = sqlite3.connect(
                f"file:{self.database_path}?mode=ro", uri=True, check_same_thread=False, timeout=5
            )
            self._connection.execute("PRAGMA query_only = ON")
            self._connection.execute("PRAGMA mmap_size = 134217728")
        return self._connection

    def _load(self, slug: str) -> CachedLink | None:
        row = (
            self._database()
            .execute(
                "SELECT id, original_url, is_active, expires_at, max_clicks FROM links_link WHERE slug = ?",
                (slug,),
            )
            .fetchone()
        )
        if row is None:
            return None
        link_id, url, is_active, expires_at, max_clicks = row
        if not is_active or max_clicks is not None:
            return DELEGATE
        return CachedLink(
            link_id=link_id, location=url.encode("ascii"), expires_at=_parse_db_datetime(expires_at)
        )

    def lookup(self, slug: str) -> CachedLink | None:
        """The cached answer for `slug`: a link, None (no such link) or DELEGATE."""
        generation = self._current_generation()
        if generation != self._generation:
            self._cache.clear()
            self._generation = generation
        try:
            return self._cache[slug]
        except KeyError:
            pass
        try:
            entry = self._load(slug)
        except sqlite3.Error:
            # No schema yet, a locked or missing file: Django answers properly.
            return DELEGATE
        if entry is not None:
            # "No such link" is not cached, so creating a link invalidates nothing.
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[slug] = entry
        return entry

    async def handle(self, scope, send) -> bool:
        """Answer the request if it is a plain redirect or an unknown slug;
        False leaves it to Django."""
        match = SLUG_PATH.fullmatch(scope["path"])
        if match is None or scope["method"] not in ("GET", "HEAD"):
            return False
        entry = self.lookup(match.group(1))
        if entry is None:
            await send(NOT_FOUND_START)
            await send(NOT_FOUND_BODY_MESSAGE)
            return True
        if entry is DELEGATE or (entry.expires_at is not None and entry.expires_at <= time.time()):
            return False
        user_agent = ""
        for name, value in scope["headers"]:
            if name == b"user-agent":
                user_agent = value.decode("latin-1")
                break
        if is_counted_visit(method=scope["method"], user_agent=user_agent):
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
