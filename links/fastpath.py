"""The redirect fast path: `GET`/`HEAD /<slug>` answered without Django's stack.

A shortener exists to redirect, so the hot path is kept to a dictionary lookup,
a counter increment and one response: written to the connection by uvicorn's
protocol as soon as the headers are read (links.protocol, answer_now), or sent
as ASGI messages (handle). It answers only the plain cases:

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
  event loop. A cached answer is given only after learning whether anything
  was committed since the version was read: the WAL index's header (a memory
  read, wal_index_map) moves at every commit, and only then are `PRAGMA
  data_version` and the version row asked; a new version clears the cache. A
  miss reads its row alone when nothing was committed since, or else the row
  and the version in one statement: one snapshot, so the row is filed under
  the version it was read with.
- PostgreSQL (PostgresLinks): misses are read in a thread on a small pool; a
  listener thread hears the triggers' NOTIFY at commit, and reads the version
  row every second in case a notification was lost.

Readers see only committed data, and an answer read while a change arrived is
not kept, so no answer outlives the change that made it wrong.
"""

import asyncio
import fcntl
import logging
import mmap
import os
import re
import secrets
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import psycopg
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.dateparse import parse_datetime
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from links.clicks import click_counter
from links.errors import INVALID_HOST, URL_NOT_FOUND, error_response
from links.models import LinkState, LinkStatus, status_of
from links.negotiation import prefers_html
from links.pages import visitor_error_page
from links.protocol import header_lines
from links.redirect_table import BUILD_UNDER_WAY, DELEGATE, CachedLink, RedirectTable, file_stamp, write_table
from links.slugs import RESERVED_SLUGS
from links.visitors import is_counted_visit

logger = logging.getLogger(__name__)

SLUG_PATH = re.compile(r"/([A-Za-z0-9_-]{1,64})")
COMMON_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
)
# A full redirect cache drops its oldest-inserted 1/EVICTED_SHARE of entries.
EVICTED_SHARE = 16
# What a cached entry costs a worker besides its slug's and its Location's
# characters, at most: the str and bytes objects' headers, the tuple, its number
# and float (198 bytes on 64-bit CPython 3.11), and the entry's share of the
# dict's table, with the slots its evictions leave until it is rebuilt (up to
# about 70). Measured in caches under churn: 255-266 in all.
# tests/test_redirect_cache.py checks it against sys.getsizeof.
ENTRY_OVERHEAD_BYTES = 288
# Hosts seen are remembered (allowed or not) up to this many.
MAX_REMEMBERED_HOSTS = 1024


class Answer:
    """A whole response of the fast path: its status, its headers as they go on
    the wire (header_lines) and its body. Written straight to the connection by
    links.protocol, or sent as two ASGI messages.

    The headers are kept as bytes, not pairs, because a redirect makes an Answer
    on every request: a frozen dataclass with a tuple of pairs, turned into bytes
    again by the protocol, cost about 3 µs a redirect against 0.5 µs
    (docs/performance.md, 2026-11-30). Not to be changed once made (error
    answers are shared)."""

    __slots__ = ("body", "header_lines", "status")

    def __init__(self, status: int, header_lines: bytes, body: bytes = b""):
        self.status = status
        self.header_lines = header_lines
        self.body = body

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The headers as pairs, read back from their lines (no value holds a
        line break: the fast path's locations are printable ASCII)."""
        return [tuple(line.split(b": ", 1)) for line in self.header_lines.split(b"\r\n")[:-1]]

    def asgi_messages(self) -> tuple[dict, dict]:
        start = {"type": "http.response.start", "status": self.status, "headers": self.headers()}
        return start, {"type": "http.response.body", "body": self.body}


def _body_answer(status: int, content_type: str, body: bytes) -> Answer:
    headers = (
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
        *COMMON_HEADERS,
    )
    return Answer(status, header_lines(headers), body)


def _error_answer(message: str, status: int) -> Answer:
    """Django's own response for this error: the same bytes."""
    return _body_answer(status, "application/json", error_response(message, status=status).content)


def _page_answer(message: str, status: int) -> Answer:
    """Django's page for this error (a browser's answer)."""
    page = visitor_error_page(status=status, message=message)
    return _body_answer(status, page["Content-Type"], page.content)


# Every redirect's headers after its Location, made once.
AFTER_LOCATION = header_lines(((b"content-length", b"0"), *COMMON_HEADERS))


def redirect_answer(location: bytes) -> Answer:
    return Answer(308, b"".join((b"location: ", location, b"\r\n", AFTER_LOCATION)))


def _header(scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return value
    return None


def _accept_header(scope) -> str | None:
    accept = _header(scope, b"accept")
    return None if accept is None else accept.decode("latin-1")


def entry_bytes(slug: str, entry: CachedLink) -> int:
    """What keeping `entry` under `slug` costs a worker's memory, near enough."""
    return ENTRY_OVERHEAD_BYTES + len(slug) + len(entry[1])


@dataclass(frozen=True, slots=True)
class Miss:
    """A slug not in the cache, to be read from the database."""

    slug: str


# A row written around the model that cannot be read here (a malformed date in
# SQLite's text, or a number): Django answers it, as Django reads it.
UNREADABLE_ROW = ("unreadable",)
NEVER = float("inf")


# No clicks: they matter only to a limited link's status, and a limited link is
# handed to Django before its status is asked (cached_link), so the
# counters table (models.LinkClicks) is never read here (bench/miss_cost.py).
LINK_COLUMNS = "id, original_url, is_active, expires_at, max_clicks"  # as cached_link unpacks them
LINK_QUERY = f"SELECT {LINK_COLUMNS} FROM links_link WHERE slug = ?"  # noqa: S608 - constants
POSTGRES_LINK_QUERY = LINK_QUERY.replace("?", "%s")
VERSION_QUERY = "SELECT version FROM links_linktableversion WHERE id = 1"
# SQLite: a miss's row (or NULLs), the links version and PRAGMA data_version,
# in one statement and so one snapshot: a miss was three (the version asked
# before the read and again after it), each a read transaction of its own.
SQLITE_MISS_QUERY = (
    f"SELECT (SELECT data_version FROM pragma_data_version()), ({VERSION_QUERY}), link.* "  # noqa: S608 - constants
    f"FROM (SELECT 1) LEFT JOIN (SELECT {LINK_COLUMNS} FROM links_link WHERE slug = ?) AS link"
)
# How often a PostgreSQL listener also reads the version row, in case a
# notification was lost with its connection: the bound on a stale answer.
VERSION_POLL_SECONDS = 1.0
DATABASE_ERRORS = (sqlite3.Error, psycopg.Error, PoolTimeout)


def stored_datetime(value: str) -> datetime:
    """A datetime as Django reads it from SQLite's text: naive text (what Django
    writes) is UTC, an offset written by other means is kept."""
    parsed = parse_datetime(value)
    if parsed is None:
        raise ValueError(f"not a datetime: {value!r}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def link_row(row: tuple | None) -> tuple | None:
    """LINK_COLUMNS as cached_link reads them: None (no such link),
    or UNREADABLE_ROW for an expiry Django must read."""
    if row is None:
        return None
    link_id, url, is_active, expires_at, max_clicks = row
    try:
        expires = None if expires_at is None else stored_datetime(expires_at)
    except (TypeError, ValueError):
        return UNREADABLE_ROW
    return (link_id, url, bool(is_active), expires, max_clicks)


def cached_link(row: tuple | None) -> CachedLink | None:
    """What the fast path keeps for a link's row (link_row): None (no such
    link), DELEGATE (Django answers it) or the link to redirect to. The redirect
    table (links.redirect_table) holds the same, made here too."""
    if row is None:
        return None
    if row is UNREADABLE_ROW:
        return DELEGATE
    link_id, url, is_active, expires_at, max_clicks = row
    # Limited links take their click in the database (exact across
    # workers): Django's view does that. Checked first, and the status on a
    # plain tuple, not a model instance: building a Link was most of a
    # miss's cost (docs/performance.md, 2026-11-29). Unlimited, so no
    # rule reads its clicks. A URL that is not plain printable ASCII (a row
    # written around the model's validation) is Django's to answer: the
    # location goes into the response's bytes as it is (links.protocol).
    if max_clicks is not None or not (url.isascii() and url.isprintable()):
        return DELEGATE
    state = LinkState(is_active=is_active, expires_at=expires_at, max_clicks=None, clicks=0)
    if status_of(link=state) != LinkStatus.ACTIVE:
        return DELEGATE
    valid_until = expires_at.timestamp() if expires_at is not None else NEVER
    return (link_id, url.encode("ascii"), valid_until)


# The first copy of a WAL index's header (sqlite.org/walformat.html, "The
# WAL-Index Header"): its frame count, salts and checksums. It starts with the
# index's format version, in the machine's byte order: 3007000 since SQLite 3.7.0
# (2010), and every version of SQLite sharing a database reads that format.
WAL_INDEX_HEADER_BYTES = 48
WAL_INDEX_VERSION = 3007000
# The byte of the index that every connection with the database open holds a
# shared lock on (SQLite's "DMS" lock, os_unix.c): while it is held, no other
# process may truncate or re-create the file.
WAL_INDEX_OPEN_LOCK_BYTE = 128
# Linux's struct flock (type, whence, start, length, pid), for fcntl's lock queries.
FLOCK_FORMAT = "@hhqqi4x"
# Every `-shm` file opened and mapped by this process, by its identity (device,
# inode), kept open for the life of the process. Closing any descriptor of a
# file drops every POSIX lock this process holds on it, SQLite's own included:
# the shared lock above, and the read marks that keep a checkpoint from
# overwriting what a reader still reads. That holds for the duplicate descriptor
# a map keeps too (closed when the map is closed or collected), so no entry is
# ever replaced. Two descriptors per file ever watched (one per file tried and
# not watched): a new file only when SQLite makes it anew, which it does only
# when no connection has the database open.
_WAL_INDEX_DESCRIPTORS: dict[tuple[int, int], int] = {}
_WAL_INDEX_MAPS: dict[tuple[int, int], mmap.mmap] = {}


def _held_open_by_sqlite(descriptor: int) -> bool:
    """Whether a connection (this process's own, when it has the database open)
    holds the index's open lock: so this is the file SQLite uses. Asked with an
    open-file-description lock, which sees this process's own POSIX locks too."""
    ask = getattr(fcntl, "F_OFD_GETLK", None)
    if ask is None:
        return False  # not Linux: not known, so not watched
    wanted = struct.pack(FLOCK_FORMAT, fcntl.F_WRLCK, os.SEEK_SET, WAL_INDEX_OPEN_LOCK_BYTE, 1, 0)
    (held, *_) = struct.unpack(FLOCK_FORMAT, fcntl.fcntl(descriptor, ask, wanted))
    return held == fcntl.F_RDLCK


def wal_index_map(path: str) -> mmap.mmap:
    """The header of a WAL database's shared-memory index (its `-shm` file),
    mapped read-only. Every commit, by any connection of any process, rewrites
    it: SQLite compares the same bytes to learn whether its own page cache is
    stale. To be read only while a connection of this process has the database
    open (whose shared lock on the file stops its truncation). ValueError when
    the file is not one to watch (too short, not locked by SQLite, another
    format): then the pragma is asked every time."""
    known = os.stat(path)
    identity = (known.st_dev, known.st_ino)
    if identity not in _WAL_INDEX_DESCRIPTORS:
        opening = os.open(path, os.O_RDONLY)  # never closed: above
        opened = os.fstat(opening)
        identity = (opened.st_dev, opened.st_ino)
        _WAL_INDEX_DESCRIPTORS.setdefault(identity, opening)
    descriptor = _WAL_INDEX_DESCRIPTORS[identity]
    mapped = _WAL_INDEX_MAPS.get(identity)
    if mapped is None:
        if os.fstat(descriptor).st_size < WAL_INDEX_HEADER_BYTES:
            raise ValueError(f"{path}: no WAL index header")
        mapped = mmap.mmap(descriptor, WAL_INDEX_HEADER_BYTES, access=mmap.ACCESS_READ)
        _WAL_INDEX_MAPS[identity] = mapped
    if not _held_open_by_sqlite(descriptor):
        raise ValueError(f"{path}: not the WAL index SQLite has open")
    if int.from_bytes(mapped[:4], sys.byteorder) != WAL_INDEX_VERSION:
        raise ValueError(f"{path}: not a WAL index this reader knows")
    return mapped


class SQLiteLinks:
    """The links table read straight from the SQLite file, by a read-only
    connection of this worker's own: a few microseconds, so it runs in the event
    loop. Changes are seen through `PRAGMA data_version` (did another connection
    commit?) and the version row that the triggers keep.

    The pragma is a read transaction: three system calls (a lock and an unlock
    of a read mark, an fstat), 2.5-3 µs on every cached redirect. So a cached
    answer asks it only when the WAL index's header (wal_index_map) has changed
    since the version was last read: a memory read (docs/performance.md,
    2026-11-30, second session).

    A read transaction of its own for each miss is the same lock and unlock:
    the misses of one turn of the event loop share one instead (_snapshot)."""

    blocking = False

    def __init__(self, path: Path):
        self.path = Path(path)
        self._connection: sqlite3.Connection | None = None
        self._cursor: sqlite3.Cursor | None = None
        self._wal_index: mmap.mmap | None = None
        # The WAL index's header when the version was last read: while the
        # header is the same, nothing has been committed since.
        self._header_read: bytes | None = None
        self._data_version: int | None = None
        self._version: int | None = None
        # The WAL index's header read just before the read transaction this
        # turn of the event loop holds began (_snapshot).
        self._snapshot_header: bytes | None = None

    def _database(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=5
            )
            try:
                connection.execute("PRAGMA query_only = ON")
                connection.execute(f"PRAGMA mmap_size = {settings.SQLITE_MMAP_BYTES}")
                # A read opens the WAL index; a database in another journal mode
                # (not this site's) has none, and is asked the pragma every time.
                (journal_mode,) = connection.execute("PRAGMA journal_mode").fetchone()
                connection.execute("PRAGMA data_version").fetchone()
                # The file as SQLite resolved it (through symbolic links): its
                # index is beside it.
                (_, _, database_file) = connection.execute("PRAGMA database_list").fetchone()
                self._wal_index = self._watch(f"{database_file}-shm") if journal_mode == "wal" else None
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _database_cursor(self) -> sqlite3.Cursor:
        """One cursor kept for every question (the version on every cache hit,
        the row on every miss): a new cursor each time costs a third of the
        version's question (docs/performance.md) and 0.1-0.3 µs a miss."""
        if self._cursor is None:
            self._cursor = self._database().cursor()
        return self._cursor

    @staticmethod
    def _watch(path: str) -> mmap.mmap | None:
        try:
            return wal_index_map(path)
        except (OSError, ValueError):
            return None  # not watched: the pragma every time

    def _header_now(self) -> bytes | None:
        return None if self._wal_index is None else self._wal_index[:WAL_INDEX_HEADER_BYTES]

    def _nothing_committed_since_read(self, header: bytes | None) -> bool:
        """Whether `header`, read now, is the one seen when the version was
        last read: no commit since, by anyone."""
        return header is not None and header == self._header_read

    def version(self) -> int:
        """The links version now, asked before every cached answer is given.
        (The version row cannot be deleted: links/triggers.py.)"""
        cursor = self._database_cursor()
        # Read before the pragma: a commit after this read moves the header
        # again, so the next request asks.
        header = self._header_now()
        if self._nothing_committed_since_read(header):
            return self._version
        self._snapshot(header)
        (data_version,) = cursor.execute("PRAGMA data_version").fetchone()
        if data_version != self._data_version:
            (self._version,) = cursor.execute(VERSION_QUERY).fetchone()
            self._data_version = data_version
        self._header_read = header
        return self._version

    def load(self, slug: str) -> tuple[int | None, tuple | None]:
        """`slug`'s row (None: no such link) and the links version it holds
        under."""
        cursor = self._database_cursor()
        header = self._header_now()
        self._snapshot(header)
        if self._nothing_committed_since_read(header):
            # The row alone (in-process 8-11 µs a miss against 11.6). A commit
            # landing after the header's read gives a newer row, filed under
            # the older version; the next question sees the header moved, and
            # the new version clears it.
            row = cursor.execute(LINK_QUERY, (slug,)).fetchone()
            return self._version, link_row(row)
        # The row, the version and data_version in one snapshot.
        data_version, version, *row = cursor.execute(SQLITE_MISS_QUERY, (slug,)).fetchone()
        # What this read saw: the next version() asks the version row again
        # only if another connection commits after it.
        self._data_version, self._version, self._header_read = data_version, version, header
        return version, link_row(None if row[0] is None else row)

    def _snapshot(self, header: bytes | None) -> None:
        """Before a read: keep the read transaction this turn of the event
        loop holds while `header` (read now) is the one read just before it
        began, so nothing has been committed since and it reads what a read
        transaction of its own would; else end it and begin another. It ends
        with the turn (a few milliseconds), so a checkpoint never waits on it
        for longer. Outside an event loop (a thread, a test), and for a database
        whose WAL index is not watched, each read is its own transaction."""
        connection = self._connection
        if connection.in_transaction:
            if header == self._snapshot_header:
                return
            connection.commit()
        if header is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        # The read lock is taken at the first read, after `header` was read:
        # a commit in between moves the header, and the next read begins anew.
        connection.execute("BEGIN")
        self._snapshot_header = header
        loop.call_soon(self._end_snapshot)

    def _end_snapshot(self) -> None:
        if self._connection is not None and self._connection.in_transaction:
            self._connection.commit()

    def reset(self) -> None:
        # The WAL index's map stays open (wal_index_map), unread until the
        # next connection opens the database again.
        if self._connection is not None:
            self._connection.close()
        self._connection = self._cursor = self._wal_index = None
        self._header_read = self._data_version = self._version = self._snapshot_header = None

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

    def load(self, slug: str) -> tuple[int | None, tuple | None]:
        """`slug`'s row (None: no such link) and the links version it holds
        under: None if a change was heard while it was read."""
        before = self.version()
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
            row = connection.execute(POSTGRES_LINK_QUERY, (slug,)).fetchone()
        return (before if self._changes == before else None), row

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


# The facts a redirect table is checked against, in one statement and so one
# snapshot: the database's identity (PRAGMA user_version, set by the first
# build: a database made anew, whose links version starts again at 1, has
# another), the links version, and the largest link id. Asked every second by
# every worker, so nothing that reads the whole table: a count(*) of 1,000,000
# links takes 14 ms, against 0.01 ms for these (docs/performance.md, 2026-12-02).
TABLE_FACTS_QUERY = (
    f"SELECT (SELECT user_version FROM pragma_user_version()), ({VERSION_QUERY}), "  # noqa: S608 - constants
    "(SELECT coalesce(max(id), 0) FROM links_link)"
)
TABLE_ROWS_QUERY = f"SELECT slug, {LINK_COLUMNS} FROM links_link"  # noqa: S608 - constants
# Links created since a table was built are read from the database, a
# statement a miss: the table is built again once they outnumber an eighth of
# it (and this many).
NEW_LINKS_BEFORE_REBUILD = 1000


@dataclass(frozen=True, slots=True)
class TableFacts:
    identity: int
    version: int
    max_link_id: int

    @classmethod
    def read(cls, cursor: sqlite3.Cursor) -> "TableFacts":
        return cls(*cursor.execute(TABLE_FACTS_QUERY).fetchone())

    def table_is_stale(self, table: RedirectTable | None, *, every_link: bool = False) -> bool:
        """Whether `table` should be built again for this database as it is:
        with `every_link`, whenever a link was created since its build."""
        if table is None or table.identity != self.identity or table.version != self.version:
            return True
        allowed = 0 if every_link else table.link_count // 8 + NEW_LINKS_BEFORE_REBUILD
        return self.max_link_id - table.max_link_id > allowed


def redirect_table_path(database: Path) -> Path:
    """Where the redirect table of the SQLite file `database` is: beside it."""
    return Path(f"{database}.redirects")


def open_build_lock(table: Path) -> int:
    """The descriptor of the lock file that one build at a time holds (flock)."""
    return os.open(f"{table}.lock", os.O_RDONLY | os.O_CREAT, 0o644)


def build_lock_held(table: Path) -> bool:
    try:
        lock = open_build_lock(table)
    except OSError:
        return False  # the build will say what is wrong
    try:
        fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(lock)


def open_redirect_table(path: Path) -> RedirectTable | None:
    try:
        return RedirectTable(path)
    except (OSError, ValueError):
        return None  # none yet, or not a whole table: misses read the database


def build_redirect_table(*, database: Path, path: Path, every_link: bool = False) -> RedirectTable | None:
    """Build the redirect table of `database` at `path` (links.redirect_table),
    unless the one there is up to date (TableFacts.table_is_stale): every
    link's cached_link, read in one snapshot with the links version. None when
    another build holds the lock."""
    path = Path(path)
    lock = open_build_lock(path)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        connection = sqlite3.connect(database, timeout=20, isolation_level=None)
        try:
            if connection.execute("PRAGMA user_version").fetchone()[0] == 0:
                connection.execute(f"PRAGMA user_version = {secrets.randbelow(2**31 - 1) + 1}")
            started_at = time.time()
            cursor = connection.cursor()
            cursor.execute("BEGIN")
            facts = TableFacts.read(cursor)
            current = open_redirect_table(path)
            if not facts.table_is_stale(current, every_link=every_link):
                return current
            (link_count,) = cursor.execute("SELECT count(*) FROM links_link").fetchone()
            rows = cursor.execute(TABLE_ROWS_QUERY)
            entries = (
                (slug.encode("ascii"), entry)
                for slug, *row in rows
                if slug.isascii() and (entry := cached_link(link_row(tuple(row)))) is not None
            )
            # One name, under the lock: a build killed midway leaves one file,
            # which the next build writes over.
            partial = path.with_name(f"{path.name}.partial")
            try:
                write_table(
                    partial,
                    version=facts.version,
                    identity=facts.identity,
                    max_link_id=facts.max_link_id,
                    link_count=link_count,
                    entries=entries,
                    started_at=started_at,
                )
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
            cursor.execute("COMMIT")
        finally:
            connection.close()
        return RedirectTable(path)
    finally:
        os.close(lock)


# A table is built again no sooner than this many times its last build's
# length after it (a build of 1,000,000 links takes seconds of a CPU): under a
# stream of changes, builds take at most a tenth of one CPU, whatever the
# number of workers asking for them.
BUILD_SPACING = 9
# The longest wait between builds that keep failing, in seconds.
MAX_BUILD_BACKOFF = 900


class RedirectTableKeeper:
    """A thread of a worker's own that keeps its fast path reading the newest
    redirect table: it maps a table once it is renamed into place, withdraws
    one built from another database, and has one built (manage.py
    build_redirect_table, in a process of its own) when the table is missing
    or out of date (TableFacts.table_is_stale). Builds are spaced by BUILD_SPACING
    times the last one's length, read from the table (shared by the workers),
    and at least `rebuild_wait` seconds; after a worker's own builder ends
    (having found another's under way, say) it waits `rebuild_wait` too, and
    longer after failures."""

    def __init__(
        self,
        fast_path: "RedirectFastPath",
        *,
        database: Path,
        path: Path,
        every: float = 1.0,
        rebuild_wait: float = 10.0,
    ):
        self.fast_path = fast_path
        self.database = Path(database)
        self.path = Path(path)
        self.every = every
        self.rebuild_wait = rebuild_wait
        self._table: RedirectTable | None = None
        self._connection: sqlite3.Connection | None = None
        self._builder: subprocess.Popen | None = None
        self._next_build = -float("inf")  # time.monotonic()
        self._failures = 0
        self._left_aside: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redirect-table-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self.building:
            # Its worker is going: the next build starts afresh.
            self._builder.terminate()
            self._builder.wait(timeout=5)
        self._close_connection()

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _run(self) -> None:
        while True:
            try:
                self.keep()
            except Exception as error:
                logger.warning("redirect table keeper: %s", error)
                self.fast_path.table = None
                self._close_connection()
            if self._stop.wait(self.every):
                return

    def _facts(self) -> TableFacts:
        if self._connection is None:
            # Used by the keeper's thread, and closed by whoever stops it.
            self._connection = sqlite3.connect(
                f"file:{self.database}?mode=ro", uri=True, timeout=5, check_same_thread=False
            )
        return TableFacts.read(self._connection.cursor())

    def _newest_table(self) -> RedirectTable | None:
        try:
            known = os.stat(self.path)
        except FileNotFoundError:
            return None
        if file_stamp(known) == self._left_aside:
            return None
        if self._table is None or self._table.stamp != file_stamp(known):
            self._table = open_redirect_table(self.path)
        return self._table

    def keep(self) -> None:
        """One pass: map the newest table, publish it if it is this database's,
        and start a build if one is due."""
        table = self._newest_table()
        facts = self._facts()
        if table is not None and (table.identity != facts.identity or table.version > facts.version):
            # Another database's, or this one's from a history it has left (a
            # copy or a replica put back in place, whose version may climb to
            # the table's again with other links): never read, whatever the
            # version becomes.
            self._left_aside = table.stamp
            table = None
        self.fast_path.table = table
        if facts.table_is_stale(table):
            self._build(after=table)

    def _build(self, *, after: RedirectTable | None) -> None:
        """Start a builder, unless one is under way or it is too soon after the
        build of `after` (this database's table, out of date) or our last one."""
        if self._builder is not None:
            exit_status = self._builder.poll()
            if exit_status is None:
                return
            self._builder = None
            # A build that fails (a full disk, a read-only folder) fails again:
            # each failure doubles the wait, up to MAX_BUILD_BACKOFF, so its
            # error reaches the log a few times an hour, not every few seconds.
            failed = exit_status not in (0, BUILD_UNDER_WAY)
            self._failures = self._failures + 1 if failed else 0
            if failed:
                logger.warning(
                    "redirect table: the build exited with %s (failure %d); misses read the database",
                    exit_status,
                    self._failures,
                )
            wait = min(MAX_BUILD_BACKOFF, self.rebuild_wait * 2**self._failures)
            self._next_build = time.monotonic() + wait
        if time.monotonic() < self._next_build:
            return
        if after is not None:
            spacing = max(self.rebuild_wait, BUILD_SPACING * (after.build_ended_at - after.build_started_at))
            if time.time() < after.build_ended_at + spacing:
                return
        if build_lock_held(self.path):
            return  # another worker's builder: not a Django start-up to learn that
        self._builder = subprocess.Popen(
            [
                sys.executable,
                str(settings.BASE_DIR / "manage.py"),
                "build_redirect_table",
                "--database",
                str(self.database),
                "--table",
                str(self.path),
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def building(self) -> bool:
        return self._builder is not None and self._builder.poll() is None


class Doorkeeper:
    """Which keys have missed once lately: a full cache admits a link at its
    second miss since the table was last cleared, which it is, whole, after
    every `window` first misses (TinyLFU's doorkeeper). Under traffic spread
    over many links most misses are links visited once in a long while: each
    pushed a link out of the cache, hot or not, and cost its insertion and its
    share of an eviction. Over 1,000,000 links (bench/eviction.py) the Zipf
    mix's hit rate is 82.1 % against 78.4 % (docs/performance.md,
    2026-11-30, seventh session).

    A byte per slot, the slot chosen by the key's hash (a str keeps its hash;
    Python seeds it anew in each process): eight slots for each key the window
    can hold, so a key never seen shares a marked slot, and is admitted at
    once, at most one time in eight."""

    __slots__ = ("_first_misses", "_seen", "window")

    SLOTS_PER_KEY = 8

    def __init__(self, *, window: int):
        self.window = max(1, window)
        self._seen = bytearray(self.SLOTS_PER_KEY * self.window)
        self._first_misses = 0

    @property
    def table_bytes(self) -> int:
        return sys.getsizeof(self._seen)

    def slot(self, key: str) -> int:
        return hash(key) % len(self._seen)

    def admits(self, key: str) -> bool:
        slot = self.slot(key)
        if self._seen[slot]:
            return True
        self._seen[slot] = 1
        self._first_misses += 1
        if self._first_misses >= self.window:
            self._seen = bytearray(len(self._seen))
            self._first_misses = 0
        return False


class RedirectFastPath:
    def __init__(self, *, links: SQLiteLinks | PostgresLinks, max_bytes: int):
        self.links = links
        self._cache: dict[str, CachedLink] = {}
        self._cached_bytes = 0
        # The cache is bounded by what it holds, not by a count of entries:
        # Locations run from a few dozen characters to SHORTENER_MAX_URL_LENGTH.
        # When full it admits a link at its second miss (Doorkeeper), whose
        # table, sized for as many entries as `max_bytes` could hold, counts in it.
        self._doorkeeper = Doorkeeper(window=max_bytes // ENTRY_OVERHEAD_BYTES)
        self._entries_bound = max(0, max_bytes - self._doorkeeper.table_bytes)
        # Whether the cache has filled since it was last started afresh.
        self._filled = False
        # The links version the cache was filled under.
        self._version: int | None = None
        self._hosts: dict[bytes, bool] = {}
        # The redirect table this worker reads misses from (SQLite), put here
        # by its RedirectTableKeeper.
        self.table: RedirectTable | None = None
        self._table_keeper: RedirectTableKeeper | None = None
        self._not_found = _error_answer(URL_NOT_FOUND, 404)
        self._not_found_page = _page_answer(URL_NOT_FOUND, 404)
        self._bad_host = _error_answer(INVALID_HOST, 400)

    @classmethod
    def from_settings(cls) -> "RedirectFastPath":
        return cls(links=links_from_settings(), max_bytes=settings.REDIRECT_CACHE_BYTES)

    def start(self) -> None:
        """Open the database (and on PostgreSQL start listening) before the first
        request, so that no request waits for it in the event loop."""
        try:
            self._version = self.links.version()
        except DATABASE_ERRORS:
            pass  # not migrated yet: the first request tries again

    def keep_table(self) -> None:
        """On SQLite, with the redirect table on (SHORTENER_REDIRECT_TABLE), read
        misses from it: a keeper thread maps it and has it built."""
        if self._table_keeper is None and settings.REDIRECT_TABLE and isinstance(self.links, SQLiteLinks):
            self._table_keeper = RedirectTableKeeper(
                self, database=self.links.path, path=redirect_table_path(self.links.path)
            )
            self._table_keeper.start()

    def close(self) -> None:
        if self._table_keeper is not None:
            self._table_keeper.stop()
        self.links.close()

    def _remember(self, slug: str, version: int | None, row: tuple | None) -> CachedLink | None:
        """The answer for a row read under `version`, kept in the cache filed
        under that version (not kept if None: a change arrived while it was read)."""
        return self._keep(slug, version, cached_link(row))

    def _keep(self, slug: str, version: int | None, entry: CachedLink | None) -> CachedLink | None:
        """`entry`, kept in the cache filed under `version` (as _remember)."""
        # "No such link" is not cached, so creating a link invalidates nothing.
        if entry is None or version is None:
            return entry
        if version != self._version:
            # Read under a version the cache was not filled under: its entries
            # may be stale. (A PostgreSQL read that finished just before a
            # change was heard files its row under the older version; the next
            # cached answer asks the version first, and clears it.)
            self._file_under(version)
        # Two requests for one slug can both miss and both be read in a thread
        # (PostgreSQL): the second replaces the first, counted once.
        replaced = self._cache.pop(slug, None)
        if replaced is not None:
            self._cached_bytes -= entry_bytes(slug, replaced)
        size = entry_bytes(slug, entry)
        if size > self._entries_bound:
            return entry  # larger than the whole cache (or the cache is off: 0)
        # Once the cache has filled, keeping a link pushes older ones out, now
        # or when the room an eviction left is taken: only a link missed lately
        # is worth it. (Before, one-off visits took that room in turn.)
        self._filled = self._filled or self._cached_bytes + size > self._entries_bound
        if self._filled and replaced is None and not self._doorkeeper.admits(slug):
            return entry  # (a slug read twice at once, on PostgreSQL, stays kept)
        while self._cache and self._cached_bytes + size > self._entries_bound:
            self._evict_oldest()
        self._cache[slug] = entry
        self._cached_bytes += size
        return entry

    def _file_under(self, version: int | None) -> None:
        """Start the cache afresh under `version`: nothing filed under another
        holds."""
        self._cache.clear()
        self._cached_bytes = 0
        self._filled = False
        self._version = version

    def _database_failed(self) -> CachedLink:
        """No schema yet, a locked, missing or unreachable database: nothing
        cached can be trusted, and Django answers properly."""
        self._file_under(None)
        self.links.reset()
        return DELEGATE

    def _lookup_now(self, slug: str) -> CachedLink | Miss | None:
        """The answer for `slug` without waiting: from the cache, or read in
        place from a database that does not block (SQLite); a Miss otherwise."""
        try:
            entry = self._cache.get(slug)
            if entry is not None:
                # Given only while the links version it was filed under holds.
                version = self.links.version()
                if version == self._version:
                    return entry
                self._file_under(version)
            if self.links.blocking:
                return Miss(slug=slug)
            table = self.table
            if table is not None:
                # Trusted only while the links version it was built at holds;
                # a slug it lacks (a link created since) is read below.
                version = self.links.version()
                if version == table.version and (entry := table.get(slug)) is not None:
                    return self._keep(slug, version, entry)
            return self._remember(slug, *self.links.load(slug))
        except DATABASE_ERRORS:
            return self._database_failed()

    async def _load_in_thread(self, miss: Miss) -> CachedLink | None:
        try:
            return self._remember(miss.slug, *await asyncio.to_thread(self.links.load, miss.slug))
        except DATABASE_ERRORS:
            return self._database_failed()

    async def lookup(self, slug: str) -> CachedLink | None:
        """The answer for `slug`: a link, None (no such link) or DELEGATE."""
        found = self._lookup_now(slug)
        return await self._load_in_thread(found) if isinstance(found, Miss) else found

    def _evict_oldest(self) -> None:
        """Make room in a full cache by dropping the oldest-inserted 1/16 of it
        (a dict keeps insertion order), so hot links stay cached; clearing it
        all made every hot link miss again. Dropped in a batch, not one at a
        time: deleting a dict's first key over and over leaves a run of dead
        slots that every later search for the first key walks again (measured
        in docs/performance.md, issue 15)."""
        oldest = list(islice(self._cache, max(1, len(self._cache) // EVICTED_SHARE)))
        for slug in oldest:
            self._cached_bytes -= entry_bytes(slug, self._cache.pop(slug))

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

    def answer_now(self, scope) -> Answer | Miss | None:
        """The answer to a plain redirect or an unknown slug, counting its click;
        a Miss when the link must first be read in a thread (PostgreSQL); None
        leaves the request to Django."""
        match = SLUG_PATH.fullmatch(scope["path"])
        if match is None or scope["method"] not in ("GET", "HEAD"):
            return None
        host = None
        user_agent = b""
        for name, value in scope["headers"]:
            if name == b"host":
                if host is not None:
                    return None  # two Host headers: Django refuses them its own way
                host = value
            elif name == b"user-agent":
                user_agent = value
        if host is None:
            return None
        if not self.host_allowed(host):
            return self._bad_host
        slug = match.group(1)
        if slug.lower() in RESERVED_SLUGS:
            return None  # a path of the site's own, such as /healthz
        entry = self._lookup_now(slug)
        if isinstance(entry, Miss):
            return entry
        return self._answer_for(scope, entry, user_agent)

    def answer_in_place(self, scope) -> Answer | None:
        """answer_now for links.protocol: None for a Miss too, which the ASGI way
        (handle) reads in a thread, asking the cache and the host again first."""
        answer = self.answer_now(scope)
        return None if isinstance(answer, Miss) else answer

    def _answer_for(self, scope, entry: CachedLink | None, user_agent: bytes) -> Answer | None:
        if entry is None:
            # Which answer, by links.negotiation's rule: read only here, so the
            # redirects and curl's requests do no more work than before.
            return self._not_found_page if prefers_html(_accept_header(scope)) else self._not_found
        link_id, location, valid_until = entry
        if entry is DELEGATE or valid_until <= time.time():
            return None
        if is_counted_visit(method=scope["method"], user_agent=user_agent.decode("latin-1")):
            click_counter.record(link_id)
        return redirect_answer(location)

    async def handle(self, scope, send) -> bool:
        """The ASGI way to answer_now: False leaves the request to Django."""
        answer = self.answer_now(scope)
        if isinstance(answer, Miss):
            entry = await self._load_in_thread(answer)
            answer = self._answer_for(scope, entry, _header(scope, b"user-agent") or b"")
        if answer is None:
            return False
        start, body = answer.asgi_messages()
        await send(start)
        await send(body)
        return True
