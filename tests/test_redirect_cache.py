"""RedirectFastPath and ClickCounter in-process, on the real SQLite test database:
every kind of writer invalidates, inside its own transaction, and a failed write
leaves nothing that the cache and the database disagree on."""

import asyncio
import fcntl
import gc
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management.sql import emit_post_migrate_signal
from django.db import connection, models, transaction
from django.utils import timezone

from links import fastpath
from links.clicks import ClickCounter
from links.fastpath import (
    DELEGATE,
    ENTRY_OVERHEAD_BYTES,
    EVICTED_SHARE,
    FLOCK_FORMAT,
    LINK_QUERY,
    VERSION_POLL_SECONDS,
    VERSION_QUERY,
    WAL_INDEX_OPEN_LOCK_BYTE,
    Doorkeeper,
    RedirectFastPath,
    SQLiteLinks,
    entry_bytes,
    links_from_settings,
    wal_index_map,
)
from links.models import DailyClicks, Link, LinkClicks, LinkStatus, LinkTableVersion
from links.services import mark_links_changed, shorten_url, update_link
from tests.conftest import (
    JOURNALS_CLICKS,
    ON_POSTGRES,
    copy_of_test_database,
    disable_in,
    failing_writes_to,
    journal_waiting,
    site_env,
)
from tests.project import PROJECT_DIR

pytestmark = pytest.mark.django_db(transaction=True)

URL = "https://example.com/cached"


@pytest.fixture(autouse=True)
def version_row():
    # The row migration 0002 makes; PostgreSQL's flush between tests truncates it.
    LinkTableVersion.objects.get_or_create(pk=1)


@pytest.fixture
def fast_path() -> Iterator[RedirectFastPath]:
    fast_path = RedirectFastPath.from_settings()
    yield fast_path
    fast_path.close()


def lookup(fast_path: RedirectFastPath, slug: str):
    return asyncio.run(fast_path.lookup(slug))


@pytest.fixture
def link() -> Link:
    link, _ = shorten_url(url=URL, slug="cached-link")
    return link


@contextmanager
def change_arrives(fast_path: RedirectFastPath):
    """Wait, after the block commits a change, until the fast path has heard of
    it: at once on SQLite; on PostgreSQL when the listener's NOTIFY (or its
    poll, within VERSION_POLL_SECONDS) arrives."""
    before = fast_path.links.version()
    yield
    deadline = time.monotonic() + 2 * VERSION_POLL_SECONDS
    while fast_path.links.version() == before:
        assert time.monotonic() < deadline, "the change never reached the fast path"
        time.sleep(0.01)


def answers_redirect(fast_path: RedirectFastPath, slug: str) -> bool:
    entry = lookup(fast_path, slug)
    assert entry is not None, "the link should exist"
    if entry is DELEGATE:
        return False
    assert location_of(entry) == URL.encode()
    return True


def location_of(entry) -> bytes:
    _link_id, location, _valid_until = entry
    return location


def from_another_connection(sql: str, params: tuple = ()) -> None:
    """A write by another process's connection, committed at once."""
    database = connection.settings_dict
    if connection.vendor == "postgresql":
        import psycopg

        parts = {key.lower(): database[key] for key in ("USER", "PASSWORD", "HOST", "PORT") if database[key]}
        with psycopg.connect(dbname=database["NAME"], autocommit=True, **parts) as other:
            other.execute(sql, params)
    else:
        with sqlite3.connect(database["NAME"]) as other:
            other.execute(sql.replace("%s", "?"), params)


@pytest.mark.parametrize(
    ("write", "afterwards"),
    [
        pytest.param(lambda link: update_link(link=link, is_active=False), DELEGATE, id="service"),
        pytest.param(
            lambda link: Link.objects.filter(pk=link.pk).update(is_active=False), DELEGATE, id="update"
        ),
        pytest.param(
            lambda link: Link.objects.bulk_update([Link(pk=link.pk, is_active=False)], ["is_active"]),
            DELEGATE,
            id="bulk_update",
        ),
        pytest.param(lambda link: link.delete(), None, id="delete"),
    ],
)
def test_a_redirect_served_inside_the_commit_window_is_not_kept(fast_path, link, write, afterwards):
    assert answers_redirect(fast_path, link.slug)
    with change_arrives(fast_path), transaction.atomic():
        write(link)
        # Another worker answers between the write and the commit: it sees the
        # committed row, and may cache it.
        assert answers_redirect(fast_path, link.slug)
    assert lookup(fast_path, link.slug) is afterwards
    assert not Link.objects.followable().filter(slug=link.slug).exists()


def test_a_miss_loaded_inside_the_window_is_not_kept_either(fast_path, link):
    # The cache is cold; the first lookup happens between the write and the commit.
    with change_arrives(fast_path), transaction.atomic():
        Link.objects.filter(pk=link.pk).update(is_active=False)
        assert answers_redirect(fast_path, link.slug)
    assert lookup(fast_path, link.slug) is DELEGATE


def test_raw_sql_from_another_connection_invalidates(fast_path, link):
    assert answers_redirect(fast_path, link.slug)
    with change_arrives(fast_path):
        from_another_connection("UPDATE links_link SET is_active = %s WHERE slug = %s", (False, link.slug))
    assert lookup(fast_path, link.slug) is DELEGATE


def test_a_rolled_back_change_invalidates_nothing_and_changes_nothing(fast_path, link):
    assert answers_redirect(fast_path, link.slug)
    with pytest.raises(RuntimeError), transaction.atomic():
        Link.objects.filter(pk=link.pk).update(is_active=False)
        raise RuntimeError("the admin's form failed after the write")
    assert answers_redirect(fast_path, link.slug)
    assert Link.objects.get(pk=link.pk).is_active


def test_counting_clicks_does_not_clear_the_cache(fast_path, link):
    assert answers_redirect(fast_path, link.slug)
    counter = ClickCounter()
    counter.record(link.pk)
    assert counter.flush() == 1
    assert fast_path._cache, "a click flush must leave the cache warm"
    assert answers_redirect(fast_path, link.slug)


def test_quick_successive_changes_each_invalidate(fast_path, link):
    # The old key (inode, mtime) repeated within a clock tick; a version cannot.
    for round_number in range(50):
        active = round_number % 2 == 1
        with change_arrives(fast_path):
            Link.objects.filter(pk=link.pk).update(is_active=active)
        assert answers_redirect(fast_path, link.slug) is active, round_number


def test_the_version_only_grows(link):
    with connection.cursor() as cursor:
        cursor.execute("SELECT version FROM links_linktableversion")
        (before,) = cursor.fetchone()
        Link.objects.filter(pk=link.pk).update(is_active=False)
        mark_links_changed(above=before + 1000)
        cursor.execute("SELECT version FROM links_linktableversion")
        (after,) = cursor.fetchone()
    assert after == before + 1001  # max(before + 1, before + 1000) + 1


def test_a_failed_write_leaves_the_link_and_the_cache_agreeing(client, fast_path, link, api_key):
    assert answers_redirect(fast_path, link.slug)
    with failing_writes_to("links_linktableversion"):
        response = client.patch(
            f"/api/links/{link.slug}/",
            json.dumps({"is_active": False}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {api_key}",
        )
    assert response.status_code == 503
    assert response.json() == {"error": "The database is unavailable, try again shortly"}
    # Nothing was committed: the link is still active, and still redirects.
    assert Link.objects.get(pk=link.pk).is_active
    assert answers_redirect(fast_path, link.slug)


def test_the_health_check_fails_while_the_database_cannot_be_written(client, link):
    assert client.get("/healthz").json() == {"status": "ok", "database": "writable"}
    with failing_writes_to("links_linktableversion"):
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["error"].startswith("The database cannot be written")
        # The contract's health answer is unchanged.
        assert (client.get("/").status_code, client.get("/").json()) == (200, {"status": "ok"})
    assert client.get("/healthz").status_code == 200


def handle(fast_path: RedirectFastPath, path: str, *, host: bytes = b"testserver"):
    """One request through the ASGI fast path: (answered, status or None)."""
    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": [(b"host", host)]}
    answered = asyncio.run(fast_path.handle(scope, send))
    return answered, (sent[0]["status"] if sent else None)


def test_an_expiry_ends_a_cached_redirect_without_any_write(fast_path):
    shorten_url(url=URL, slug="expiring", expires_at=timezone.now() + timedelta(seconds=1))
    assert handle(fast_path, "/expiring") == (True, 308)
    time.sleep(1.1)
    # Handed to Django, which answers 410.
    assert handle(fast_path, "/expiring") == (False, None)


def test_hosts_django_refuses_are_refused_by_the_fast_path_too(fast_path, link):
    assert handle(fast_path, f"/{link.slug}", host=b"testserver") == (True, 308)
    assert handle(fast_path, f"/{link.slug}", host=b"evil.example") == (True, 400)
    assert handle(fast_path, "/NoSuchSlug", host=b"evil.example:80") == (True, 400)


def keys_in_distinct_slots(doorkeeper: Doorkeeper, candidates, count: int) -> list[str]:
    """The first `count` candidates whose doorkeeper slots all differ: str hashes
    are seeded anew in each process, and two keys sharing a slot admit each
    other (Doorkeeper's docstring), which a test must not leave to chance."""
    chosen: list[str] = []
    for key in candidates:
        if doorkeeper.slot(key) not in {doorkeeper.slot(other) for other in chosen}:
            chosen.append(key)
            if len(chosen) == count:
                return chosen
    raise AssertionError("not enough candidates")


def full_cache_of_like_entries(*, entries: int, prefix: str) -> tuple[RedirectFastPath, list[str]]:
    """A fast path whose bound holds `entries` (at least 16) links of one size,
    filled with them, and two more links of that size, not yet looked up, in
    distinct slots of its doorkeeper."""
    entry_size = entry_bytes(f"{prefix}-00", (0, f"https://example.com/{prefix}/00".encode(), 0.0))
    max_bytes = entries * entry_size
    fast_path = RedirectFastPath(links=links_from_settings(), max_bytes=max_bytes)
    while fast_path._entries_bound < entries * entry_size:
        max_bytes += 8  # room for the doorkeeper's table as well
        fast_path = RedirectFastPath(links=links_from_settings(), max_bytes=max_bytes)
    names = [f"{prefix}-{i:02}" for i in range(entries)]
    candidates = (f"{prefix}-{i:02}" for i in range(entries, 99))
    names += keys_in_distinct_slots(fast_path._doorkeeper, candidates, 2)
    slugs = [shorten_url(url=f"https://example.com/{name}", slug=name)[0].slug for name in names]
    for slug in slugs[:entries]:
        lookup(fast_path, slug)
    assert list(fast_path._cache) == slugs[:entries], "a cache with room keeps every link at its first miss"
    return fast_path, slugs


def test_a_full_cache_drops_only_its_oldest_entries():
    fast_path, slugs = full_cache_of_like_entries(entries=32, prefix="evict")
    try:
        # Full: the next new link (at its second miss) makes room by dropping
        # the oldest 32 // 16 = 2 only.
        for _ in range(2):
            lookup(fast_path, slugs[32])
        assert list(fast_path._cache) == slugs[2:33]
        for _ in range(2):
            lookup(fast_path, slugs[33])
        assert list(fast_path._cache) == slugs[2:34]
        # The entries kept are answered from the cache: the database is not asked.
        fast_path.links.load = None
        locations = [location_of(lookup(fast_path, slug)) for slug in slugs[2:]]
        assert all(location.startswith(b"https://example.com/evict-") for location in locations)
    finally:
        fast_path.close()


def test_a_full_cache_keeps_a_new_link_only_at_its_second_miss():
    fast_path, slugs = full_cache_of_like_entries(entries=32, prefix="admit")
    try:
        # Its first miss is answered, and pushes no link out.
        assert location_of(lookup(fast_path, slugs[32])) == f"https://example.com/{slugs[32]}".encode()
        assert list(fast_path._cache) == slugs[:32]
        # Its second, soon after: kept, in place of the oldest.
        assert location_of(lookup(fast_path, slugs[32])) == f"https://example.com/{slugs[32]}".encode()
        assert list(fast_path._cache) == slugs[2:33]
        # The room that eviction left goes to a link at its second miss too.
        lookup(fast_path, slugs[33])
        assert list(fast_path._cache) == slugs[2:33]
        lookup(fast_path, slugs[33])
        assert list(fast_path._cache) == slugs[2:34]
    finally:
        fast_path.close()


def test_a_change_starts_a_full_cache_afresh_keeping_links_at_their_first_miss():
    fast_path, slugs = full_cache_of_like_entries(entries=32, prefix="afresh")
    try:
        lookup(fast_path, slugs[32])
        assert slugs[32] not in fast_path._cache  # full: its first miss is not kept
        with change_arrives(fast_path):
            mark_links_changed()
        lookup(fast_path, slugs[33])
        assert list(fast_path._cache) == [slugs[33]]
    finally:
        fast_path.close()


def test_a_link_kept_once_and_read_again_at_once_stays_kept(fast_path, link):
    # PostgreSQL: two requests for one slug can both miss and both be read in a
    # thread. The second read replaces the entry the first kept, whatever the
    # doorkeeper has forgotten since.
    version, row = fast_path.links.load(link.slug)
    fast_path._remember(link.slug, version, row)
    fast_path._filled = True  # as if the cache had filled meanwhile...
    fast_path._doorkeeper = Doorkeeper(window=fast_path._doorkeeper.window)  # ...and the table been cleared
    fast_path._remember(link.slug, version, row)
    assert list(fast_path._cache) == [link.slug]


def test_the_doorkeeper_forgets_after_its_window_of_first_misses():
    doorkeeper = Doorkeeper(window=100)
    early, late = keys_in_distinct_slots(doorkeeper, (f"key-{n}" for n in range(1000)), 2)
    assert not doorkeeper.admits(early)
    assert doorkeeper.admits(early)  # its second miss, within the window
    assert not doorkeeper.admits(late)
    # 98 more first misses make 100 since the table was cleared: it is cleared again.
    first_misses, n = 2, 0
    while first_misses < doorkeeper.window:
        first_misses += not doorkeeper.admits(f"other-{n}")
        n += 1
    assert not doorkeeper.admits(early) and not doorkeeper.admits(late)
    assert doorkeeper.table_bytes >= Doorkeeper.SLOTS_PER_KEY * 100


def memory_held(cache: dict) -> int:
    """What a cache's dict and every object in its entries take, by CPython's own account."""
    return sys.getsizeof(cache) + sum(
        sys.getsizeof(slug) + sys.getsizeof(entry) + sum(sys.getsizeof(part) for part in entry)
        for slug, entry in cache.items()
    )


@pytest.mark.parametrize("path_length", [10, 2000], ids=["short URLs", "URLs of 2,000 characters"])
def test_a_full_cache_holds_no_more_memory_than_its_bound(path_length):
    # The bound is on memory, not on a count of entries: 64 KiB holds about
    # 200 short links or 28 of 2,000 characters.
    bound = 64 * 1024
    fast_path = RedirectFastPath(links=links_from_settings(), max_bytes=bound)
    path = "p" * (path_length - 5)
    slugs = [
        shorten_url(url=f"https://example.com/{path}{i:05}", slug=f"bound-{i:03}")[0].slug
        for i in range(2 * bound // (ENTRY_OVERHEAD_BYTES + path_length))
    ]
    try:
        for slug in slugs:
            # A full cache keeps a link at its second miss, and a third when
            # the doorkeeper's window ended between the first two (which the
            # string hashes' seed decides: 2 seeds in 30 before).
            for _ in range(3):
                lookup(fast_path, slug)
        held = memory_held(fast_path._cache)
        accounted = sum(entry_bytes(slug, entry) for slug, entry in fast_path._cache.items())
        assert fast_path._cached_bytes == accounted
        # Each entry's estimate covers what it really takes, the dict's table
        # included, and the doorkeeper's table is within the bound too...
        assert held <= accounted
        assert accounted + sys.getsizeof(fast_path._doorkeeper._seen) <= bound
        # ...and a full cache stays nearly full: it drops only its oldest entries.
        assert accounted > bound * (1 - 2 / EVICTED_SHARE)
        assert slugs[-1] in fast_path._cache and slugs[0] not in fast_path._cache
    finally:
        fast_path.close()


def test_a_cache_of_no_bytes_keeps_nothing_and_still_answers(link):
    fast_path = RedirectFastPath(links=links_from_settings(), max_bytes=0)
    try:
        for _ in range(2):
            assert location_of(lookup(fast_path, link.slug)) == URL.encode()
        assert fast_path._cache == {} and fast_path._cached_bytes == 0
    finally:
        fast_path.close()


def test_a_link_read_twice_at_once_is_counted_once(fast_path, link):
    # On PostgreSQL two requests for one slug can both miss, both be read in a
    # thread, and both be remembered.
    version, row = fast_path.links.load(link.slug)
    for _ in range(2):
        fast_path._remember(link.slug, version, row)
    assert list(fast_path._cache) == [link.slug]
    assert fast_path._cached_bytes == entry_bytes(link.slug, fast_path._cache[link.slug])


def test_a_full_cache_gives_the_cyclic_collector_nothing_to_walk(fast_path):
    # A full pass of the collector walks every object it tracks: a dataclass
    # per entry was 100,000 of them in a full cache (docs/performance.md).
    # Plain tuples of a number, bytes and a float are untracked once the
    # collector has seen them.
    slugs = [shorten_url(url=f"https://example.com/gc/{n}")[0].slug for n in range(50)]
    for slug in slugs:
        lookup(fast_path, slug)
    assert len(fast_path._cache) == len(slugs)
    gc.collect()
    assert not any(gc.is_tracked(entry) for entry in fast_path._cache.values())


# Where a worker watches the WAL index (links.fastpath.wal_index_map).
WATCHES_THE_WAL_INDEX = pytest.mark.skipif(
    not hasattr(fcntl, "F_OFD_GETLK"), reason="the WAL index is watched on Linux (with OFD locks)"
)


# The reader's transaction control: one read transaction a turn of the event
# loop (test_the_misses_of_one_turn_of_the_event_loop_share_a_read_transaction).
TRANSACTION_CONTROL = ("BEGIN", "COMMIT")


def traced(fast_path: RedirectFastPath, *, transactions: bool = False) -> list[str]:
    """The statements the fast path's SQLite reader runs from now on (its
    BEGIN and COMMIT too with `transactions`)."""
    statements = []

    def trace(statement: str) -> None:
        # Statements SQLite runs inside one (its pragma table's own) start "-- ".
        if statement.startswith("-- ") or (statement in TRANSACTION_CONTROL and not transactions):
            return
        statements.append(statement)

    fast_path.links._database().set_trace_callback(trace)
    return statements


def commit_a_click(link: Link) -> None:
    """A commit by another connection that changes no link (the cache stays warm)."""
    counter = ClickCounter()
    counter.record(link.pk)
    assert counter.flush() == 1


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite's reader: PostgreSQL's version is heard, not read")
@WATCHES_THE_WAL_INDEX
def test_sqlite_is_asked_only_what_a_commit_since_the_last_read_makes_necessary(fast_path, link):
    fast_path.start()  # reads the version
    statements = traced(fast_path)
    assert answers_redirect(fast_path, link.slug)  # a miss, nothing committed since: the row alone
    assert statements == [LINK_QUERY.replace("?", f"'{link.slug}'")]
    statements.clear()
    for _ in range(3):
        # A hit while the WAL index's header stands still: nothing committed since.
        assert answers_redirect(fast_path, link.slug)
    assert statements == []
    commit_a_click(link)
    # The next hit asks SQLite, and reads the version row again.
    assert answers_redirect(fast_path, link.slug)
    assert statements == ["PRAGMA data_version", VERSION_QUERY]
    statements.clear()
    assert answers_redirect(fast_path, link.slug)
    assert lookup(fast_path, "NoSuchSlug") is None  # never cached: read each time
    assert statements == [LINK_QUERY.replace("?", "'NoSuchSlug'")]
    statements.clear()
    commit_a_click(link)
    # A miss after a commit: the row, the version and data_version in one statement.
    assert lookup(fast_path, "NoSuchSlug") is None
    assert len(statements) == 1 and "pragma_data_version()" in statements[0]


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite's reader")
@WATCHES_THE_WAL_INDEX
def test_the_misses_of_one_turn_of_the_event_loop_share_a_read_transaction(fast_path, link):
    # Each read transaction is a lock and an unlock of a read mark (two system
    # calls): the misses of one turn share one, until another connection commits.
    other, _ = shorten_url(url=URL, slug="other-link")
    disabled, _ = shorten_url(url=URL, slug="disabled-meanwhile")
    fast_path.start()
    statements = traced(fast_path, transactions=True)
    reader = fast_path.links._database()

    async def one_turn():
        # No await between them: requests answered from one poll of the sockets.
        first = fast_path._lookup_now(link.slug)
        second = fast_path._lookup_now(other.slug)
        from_another_connection("UPDATE links_link SET is_active = 0 WHERE id = %s", (disabled.pk,))
        third = fast_path._lookup_now(disabled.slug)
        during = reader.in_transaction
        await asyncio.sleep(0)  # the next turn
        return first, second, third, during, reader.in_transaction

    first, second, third, during, after = asyncio.run(one_turn())
    assert location_of(first) == location_of(second) == URL.encode()
    assert third is DELEGATE  # the commit was seen: Django answers the disabled link
    assert (during, after) == (True, False)  # held through the turn, ended with it
    read = [LINK_QUERY.replace("?", f"'{slug}'") for slug in (link.slug, other.slug)]
    assert statements[:5] == ["BEGIN", *read, "COMMIT", "BEGIN"]
    assert "pragma_data_version()" in statements[5] and statements[6:] == ["COMMIT"]


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite's reader")
@pytest.mark.parametrize(
    ("kind", "read_during"),
    [
        pytest.param("miss", "FROM links_link WHERE", id="a miss, the row alone"),
        pytest.param("miss after a commit", "pragma_data_version()", id="a miss, row and version"),
        pytest.param("hit after a commit", VERSION_QUERY, id="a hit, the version row"),
    ],
)
def test_a_change_committed_during_a_read_reaches_the_next_request(fast_path, link, kind, read_during):
    # The WAL index's header is read before each statement, so a change
    # committed once the statement's snapshot is taken has moved it since. The
    # change is committed from SQLite's progress handler, first called after
    # the statement's read transaction has begun.
    fast_path.start()
    if kind.startswith("hit"):
        assert answers_redirect(fast_path, link.slug)
    if kind.endswith("after a commit"):
        commit_a_click(link)  # the next question reads the version too
    database = fast_path.links._database()
    running, committed = [], []
    database.set_trace_callback(running.append)

    def disable_during_the_read() -> int:
        if not committed and read_during in running[-1]:
            disable = "UPDATE links_link SET is_active = %s WHERE slug = %s"
            from_another_connection(disable, (False, link.slug))
            committed.append(running[-1])
        return 0

    database.set_progress_handler(disable_during_the_read, 1)
    lookup(fast_path, link.slug)  # raced the commit: either answer is right
    database.set_progress_handler(None, 0)
    assert committed, f"no statement with {read_during!r} ran: {running}"
    assert lookup(fast_path, link.slug) is DELEGATE


# Run in another process: F_GETLK reports only other processes' locks.
LOCK_HOLDER = f"""
import fcntl, os, struct, sys
descriptor = os.open(sys.argv[1], os.O_RDWR)
# struct flock: would a write lock on SQLite's open lock byte be refused?
wanted = struct.pack("{FLOCK_FORMAT}", fcntl.F_WRLCK, os.SEEK_SET, {WAL_INDEX_OPEN_LOCK_BYTE}, 1, 0)
lock_type, _, _, _, pid = struct.unpack("{FLOCK_FORMAT}", fcntl.fcntl(descriptor, fcntl.F_GETLK, wanted))
print(pid if lock_type == fcntl.F_RDLCK else 0)
"""


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite's reader")
@WATCHES_THE_WAL_INDEX
def test_watching_the_wal_index_keeps_sqlites_own_lock_on_it(fast_path, link):
    # Closing any descriptor of the -shm file would drop the lock SQLite's
    # connection holds on it, and let another process truncate the file under
    # the fast path's map (links.fastpath.wal_index_map). A descriptor closed at
    # the reconnection is caught too: Django's connection in this process keeps
    # the database open meanwhile, so SQLite does not lock the file afresh.
    shm = f"{connection.settings_dict['NAME']}-shm"

    def holder() -> int:
        asked = [sys.executable, "-c", LOCK_HOLDER, shm]
        return int(subprocess.run(asked, capture_output=True, text=True, check=True).stdout)

    for _ in range(2):  # mapped, then mapped again after a reconnection
        assert answers_redirect(fast_path, link.slug)
        assert fast_path.links._wal_index is not None, "the WAL index is watched"
        assert answers_redirect(fast_path, link.slug)
        assert holder() == os.getpid()
        fast_path.links.reset()


def assert_every_hit_asks(links: SQLiteLinks, slug: str) -> None:
    """Nothing watched: each question runs the pragma, and a change by another
    connection is still seen."""
    assert links.load(slug)[1] is not None
    assert links._wal_index is None
    statements = []
    links._database().set_trace_callback(statements.append)
    before = links.version()
    assert links.version() == before
    assert statements == ["PRAGMA data_version"] * 2
    disable_in(links.path, slug)
    assert links.version() > before


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite's reader")
def test_a_wal_index_of_another_format_is_not_watched(link, tmp_path, monkeypatch):
    # Its header's bytes might not move at every commit: the pragma is asked instead.
    monkeypatch.setattr(fastpath, "WAL_INDEX_VERSION", fastpath.WAL_INDEX_VERSION + 1000)
    links = SQLiteLinks(copy_of_test_database(tmp_path / "copy.sqlite3"))
    try:
        assert_every_hit_asks(links, link.slug)
    finally:
        links.close()


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite's reader")
@WATCHES_THE_WAL_INDEX
def test_a_leftover_index_beside_a_linked_database_is_not_the_one_watched(link, tmp_path):
    # The database opened through a symbolic link: SQLite keeps its index beside
    # the file the link points to. A leftover index beside the link itself, in
    # the right format, is written by nobody; watching it would serve every
    # cached answer forever.
    real = copy_of_test_database(tmp_path / "real.sqlite3")
    linked = tmp_path / "linked.sqlite3"
    linked.symlink_to(real)
    links = SQLiteLinks(linked)
    try:
        assert links.load(link.slug)[1] is not None
        # The same header, in a file no one has open. (Not a copy of the file:
        # opening and closing it would drop this process's locks on it.)
        Path(f"{linked}-shm").write_bytes(links._wal_index[:] + bytes(32768 - len(links._wal_index)))
        with pytest.raises(ValueError, match="not the WAL index SQLite has open"):
            wal_index_map(f"{linked}-shm")
        assert links._wal_index is wal_index_map(f"{real}-shm")
        before = links.version()
        disable_in(real, link.slug)
        assert links.version() > before
    finally:
        links.close()


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite's reader")
def test_a_database_not_in_wal_mode_is_asked_on_every_hit(link, tmp_path):
    # No WAL index to watch (a copy in rollback-journal mode).
    links = SQLiteLinks(copy_of_test_database(tmp_path / "rollback.sqlite3", journal_mode="DELETE"))
    try:
        assert_every_hit_asks(links, link.slug)
    finally:
        links.close()


# The production application's lifespan, driven as uvicorn drives it, in a
# process of its own: what it freezes is what a worker's start-up made.
LIFESPAN_FREEZE = """
import asyncio, gc, json
from shortener_site.asgi import application

async def main():
    inbox = asyncio.Queue()
    inbox.put_nowait({"type": "lifespan.startup"})
    seen = {"before": gc.get_freeze_count()}

    async def send(message):
        if message["type"] == "lifespan.startup.complete":
            seen["after_startup"] = gc.get_freeze_count()
            inbox.put_nowait({"type": "lifespan.shutdown"})

    await application({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    print(json.dumps(seen))

asyncio.run(main())
"""


@pytest.mark.skipif(ON_POSTGRES, reason="a worker's start-up is the same on either database")
def test_a_worker_sets_its_start_up_objects_aside_at_lifespan_startup(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-c", LIFESPAN_FREEZE],
        cwd=PROJECT_DIR,
        env=site_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(finished.stdout.strip().splitlines()[-1])
    assert seen["before"] == 0
    # Django's modules and settings and the site's own: tens of thousands of objects.
    assert seen["after_startup"] > 10_000


@pytest.mark.skipif(
    ON_POSTGRES, reason="SQLite keeps dates as text, which a write around the model may offset"
)
def test_an_expiry_written_with_an_offset_is_read_with_it(fast_path, link):
    # An hour ago, written as the wall time at +05:00: four hours ahead if read as UTC.
    an_hour_ago = (timezone.now() - timedelta(hours=1)).astimezone(timezone.get_fixed_timezone(300))
    from_another_connection(
        "UPDATE links_link SET expires_at = %s WHERE id = %s", (an_hour_ago.isoformat(), link.pk)
    )
    assert Link.objects.get(pk=link.pk).status == LinkStatus.EXPIRED  # as Django reads it
    assert lookup(fast_path, link.slug) is DELEGATE  # so Django answers


def test_click_flush_keeps_the_tally_when_the_write_fails(link):
    counter = ClickCounter()
    for _ in range(3):
        counter.record(link.pk)
    # What a flush inserts: on SQLite the journal's rows (its file's, links.clicks),
    # on PostgreSQL the link's counters row (models.LinkClicks), at its first clicks.
    with failing_writes_to(
        "clicks.links_clickjournal" if connection.vendor == "sqlite" else "links_linkclicks", event="INSERT"
    ):
        assert counter.flush() == 0
    assert Link.objects.get(pk=link.pk).clicks == 0
    assert counter.flush() == 3
    link.refresh_from_db()
    assert link.clicks == 3
    assert link.clicks_per_day() == [(timezone.now().date(), 3)]


@JOURNALS_CLICKS
def test_journaled_clicks_wait_for_the_next_roll_up_when_one_fails(link, empty_click_journal):
    counter = ClickCounter(roll_up_interval=0)
    for _ in range(3):
        counter.record(link.pk)
    with failing_writes_to("links_linkclicks", event="INSERT"):
        assert counter.flush() == 3  # journaled; the roll-up after it failed
    assert Link.objects.get(pk=link.pk).clicks == 0
    assert journal_waiting() == [(link.pk, 3)]
    assert counter.flush() == 0  # nothing new: the flusher's next turn rolls up again
    assert journal_waiting() == []
    link.refresh_from_db()
    assert (link.clicks, link.clicks_per_day()) == (3, [(timezone.now().date(), 3)])


def test_clicks_of_a_deleted_link_are_dropped(link):
    other, _ = shorten_url(url="https://example.com/kept", slug="kept-link")
    counter = ClickCounter()
    counter.record(link.pk)
    counter.record(other.pk)
    link.delete()
    assert counter.flush() == 2  # both taken from the tally...
    # ...and only the existing link's written.
    assert [(row.link_id, row.latest_day_clicks) for row in LinkClicks.objects.all()] == [(other.pk, 1)]
    assert not DailyClicks.objects.exists()
    assert Link.objects.get(pk=other.pk).clicks == 1


def link_triggers() -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'links_link'"
            )
        else:
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'links_link'::regclass AND NOT tgisinternal"
            )
        return {name for (name,) in cursor.fetchall()}


@contextmanager
def original_url_altered():
    """A later migration's AlterField on links_link (null=True: SQLite rebuilds
    the table for it), undone afterwards."""
    old = Link._meta.get_field("original_url")
    new = models.TextField(null=True, validators=old.validators)
    new.set_attributes_from_name("original_url")
    new.model = Link
    with connection.schema_editor() as editor:
        editor.alter_field(Link, old, new)
    try:
        yield
    finally:
        with connection.schema_editor() as editor:
            editor.alter_field(Link, new, old)
        emit_post_migrate_signal(verbosity=0, interactive=False, db=connection.alias)


def test_a_migration_that_rebuilds_the_links_table_keeps_invalidation(fast_path, link):
    """SQLite drops a table's triggers when a migration rebuilds it; `migrate`
    puts them back (post_migrate) and clears every cache."""
    installed = link_triggers()
    assert answers_redirect(fast_path, link.slug)
    with original_url_altered():
        if connection.vendor == "sqlite":
            assert link_triggers() == set(), "the rebuild should have dropped the triggers"
        with change_arrives(fast_path):
            emit_post_migrate_signal(verbosity=0, interactive=False, db=connection.alias)
        assert link_triggers() == installed
        assert answers_redirect(fast_path, link.slug)
        with change_arrives(fast_path):
            Link.objects.filter(pk=link.pk).update(is_active=False)
        assert lookup(fast_path, link.slug) is DELEGATE
    assert link_triggers() == installed


def test_insert_or_replace_invalidates(fast_path, link):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's INSERT OR REPLACE (PostgreSQL's ON CONFLICT DO UPDATE is an UPDATE)")
    assert answers_redirect(fast_path, link.slug)
    with change_arrives(fast_path):
        from_another_connection(
            "INSERT OR REPLACE INTO links_link (id, slug, original_url, is_canonical, created_at, is_active) "
            "VALUES (%s, %s, %s, 0, '2026-01-01 00:00:00', 0)",
            (link.pk, link.slug, URL),
        )
    assert lookup(fast_path, link.slug) is DELEGATE


def test_truncate_invalidates(fast_path, link):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's TRUNCATE (SQLite's DELETE fires the row triggers, tested above)")
    assert answers_redirect(fast_path, link.slug)
    with change_arrives(fast_path):
        from_another_connection("TRUNCATE links_link CASCADE")
    assert lookup(fast_path, link.slug) is None


def test_a_reserved_path_is_never_answered_by_the_fast_path(fast_path):
    # A row written past the rule (raw SQL, an old database) cannot hijack /healthz.
    Link.objects.bulk_create([Link(slug="healthz", original_url="https://evil.example/")])
    assert handle(fast_path, "/healthz") == (False, None)


def test_a_database_failure_on_a_visitor_path_is_a_json_503(client):
    shorten_url(url=URL, slug="limited-one", max_clicks=5)
    # take_limited_click's write of the click counter (its first: an INSERT) fails, as on a full disk.
    with failing_writes_to("links_linkclicks", event="INSERT"):
        response = client.get("/limited-one", HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0")
    assert response.status_code == 503
    assert response.json() == {"error": "The database is unavailable, try again shortly"}
    assert response["Retry-After"] == "5"
    assert Link.objects.get(slug="limited-one").clicks == 0


def test_redis_down_is_a_json_503_and_creates_nothing(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.post("/", {"url": "https://example.com/no-redis"}, content_type="application/json")
    assert response.status_code == 503
    assert response.json() == {"error": "The rate limiter (Redis) is unavailable, try again shortly"}
    assert not Link.objects.filter(original_url="https://example.com/no-redis").exists()
