"""The redirect table (links/redirect_table.py) on real SQLite files: it holds
what the fast path would cache for every link, it is trusted only while the
links version it was built at holds, and a worker's keeper has it built in a
process of its own and maps the new file."""

import asyncio
import fcntl
import os
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from zlib import crc32

import pytest
from django.db import connection
from django.utils import timezone

from links.fastpath import (
    LINK_QUERY,
    RedirectFastPath,
    RedirectTableKeeper,
    SQLiteLinks,
    TableFacts,
    build_redirect_table,
    cached_link,
    link_row,
    open_redirect_table,
    redirect_table_path,
)
from links.models import LinkTableVersion
from links.redirect_table import (
    BUILD_UNDER_WAY,
    DELEGATE,
    HEADER_BYTES,
    LONGEST_FIELD,
    RedirectTable,
    TableError,
    slot_count_for,
    write_table,
)
from links.services import shorten_url, update_link
from tests.conftest import ON_POSTGRES, PROJECT_DIR, copy_of_test_database, disable_in, facts_of

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(ON_POSTGRES, reason="the redirect table is SQLite's"),
]


@pytest.fixture(autouse=True)
def version_row():
    LinkTableVersion.objects.get_or_create(pk=1)


def links_of_every_kind() -> list[str]:
    """Links the fast path answers and links it hands to Django, as the site makes them."""
    now = timezone.now()
    shorten_url(url="https://example.com/active", slug="active")
    shorten_url(url="https://example.com/limited", slug="limited", max_clicks=5)
    shorten_url(url="https://example.com/later", slug="expires-later", expires_at=now + timedelta(days=1))
    expired, _ = shorten_url(
        url="https://example.com/expired", slug="expired", expires_at=now + timedelta(days=1)
    )
    disabled, _ = shorten_url(url="https://example.com/disabled", slug="disabled")
    update_link(link=disabled, is_active=False)
    with connection.cursor() as cursor:
        # Rows written around the model: an expiry already past, a URL that
        # is not plain ASCII (Django answers both).
        cursor.execute(
            "UPDATE links_link SET expires_at = %s WHERE id = %s", [now - timedelta(hours=1), expired.pk]
        )
        shorten_url(url="https://example.com/plain", slug="non-ascii")
        cursor.execute(
            "UPDATE links_link SET original_url = %s WHERE slug = 'non-ascii'", ["https://example.com/é"]
        )
    return ["active", "limited", "expires-later", "expired", "disabled", "non-ascii"]


def cached_link_in(database: Path, slug: str):
    """What the fast path caches for `slug`, read from the database as a miss reads it."""
    with closing(sqlite3.connect(database)) as reader:
        return cached_link(link_row(reader.execute(LINK_QUERY, (slug,)).fetchone()))


def write_in(database: Path, sql: str, params: tuple = ()) -> None:
    """A write by another connection, committed."""
    with closing(sqlite3.connect(database)) as writer, writer:
        writer.execute(sql, params)


@pytest.fixture
def database(tmp_path) -> Path:
    links_of_every_kind()
    return copy_of_test_database(tmp_path / "site.sqlite3")


@pytest.fixture
def fast_path(database) -> Iterator[RedirectFastPath]:
    fast_path = RedirectFastPath(links=SQLiteLinks(database), max_bytes=1 << 20)
    yield fast_path
    fast_path.close()


def lookup(fast_path: RedirectFastPath, slug: str):
    return asyncio.run(fast_path.lookup(slug))


def statements_run(fast_path: RedirectFastPath, slug: str) -> tuple[object, list[str]]:
    """`slug`'s answer and the SQL statements it took."""
    statements = []
    fast_path.links._database().set_trace_callback(statements.append)
    try:
        return lookup(fast_path, slug), statements
    finally:
        fast_path.links._database().set_trace_callback(None)


def test_the_table_holds_what_a_miss_would_read_for_every_link(database):
    table = build_redirect_table(database=database, path=redirect_table_path(database))
    slugs = ["active", "limited", "expires-later", "expired", "disabled", "non-ascii"]
    for slug in slugs:
        assert table.get(slug) == cached_link_in(database, slug), slug
    # Both kinds are there: answered in place, and Django's.
    assert table.get("active")[1] == b"https://example.com/active"
    assert table.get("expires-later")[2] > time.time()
    assert {slug for slug in slugs if table.get(slug) is DELEGATE} == {
        "limited",
        "expired",
        "disabled",
        "non-ascii",
    }
    assert table.get("no-such-link") is None
    assert table.link_count == len(slugs)
    facts = facts_of(database)
    assert (table.version, table.identity, table.max_link_id) == (
        facts.version,
        facts.identity,
        facts.max_link_id,
    )
    assert facts.identity != 0, "the first build gives the database an identity"


def test_many_slugs_sharing_slots_are_each_found(tmp_path):
    # 5,000 links in 16,384 slots: many first slots are taken, and found by probing.
    entries = [
        (f"s{i}".encode(), (i + 1, f"https://example.com/{i}".encode(), float(i))) for i in range(5000)
    ]
    # Two slugs of one CRC-32: told apart by the slug in the record.
    assert crc32(b"plumless") == crc32(b"buckeroo")
    entries[:2] = [
        (b"plumless", (9001, b"https://a.example/", 1.0)),
        (b"buckeroo", (9002, b"https://b.example/", 2.0)),
    ]
    path = tmp_path / "table"
    write_table(path, version=7, identity=3, max_link_id=5000, link_count=len(entries), entries=entries)
    table = RedirectTable(path)
    assert table._mask + 1 == slot_count_for(5000) == 16384
    for slug, entry in entries:
        assert table.get(slug.decode()) == entry
    assert all(table.get(f"t{i}") is None for i in range(5000))
    assert (table.version, table.identity, table.link_count) == (7, 3, 5000)


def test_a_location_too_long_for_a_record_is_left_to_django(tmp_path):
    long_location = b"https://example.com/" + b"a" * LONGEST_FIELD
    entries = [
        (b"long", (1, long_location, float("inf"))),
        (b"s" * (LONGEST_FIELD + 1), (2, b"https://example.com/", float("inf"))),
        (b"short", (3, b"https://example.com/", float("inf"))),
    ]
    path = tmp_path / "table"
    write_table(path, version=1, identity=1, max_link_id=3, link_count=3, entries=entries)
    table = RedirectTable(path)
    assert table.get("long") is DELEGATE
    assert table.get("short") == (3, b"https://example.com/", float("inf"))
    assert table.link_count == 2, "a slug too long for a record is not held (the fast path never asks it)"


def table_of_one_link(path: Path) -> Path:
    """A table holding one link, slug "a"."""
    write_table(
        path,
        version=1,
        identity=1,
        max_link_id=1,
        link_count=1,
        entries=[(b"a", (1, b"https://a.example/", 1.0))],
    )
    return path


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="cut short"),
        pytest.param(lambda data: data[:10], id="shorter than its header"),
        pytest.param(lambda data: b"NOTATABL" + data[8:], id="another magic"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_a_file_that_is_not_a_whole_table_is_not_read(tmp_path, damage):
    path = table_of_one_link(tmp_path / "table")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(TableError):
        RedirectTable(path)
    assert open_redirect_table(path) is None
    assert open_redirect_table(tmp_path / "missing") is None


def test_a_build_is_skipped_while_the_table_is_current_and_while_another_holds_the_lock(database):
    path = redirect_table_path(database)
    first = build_redirect_table(database=database, path=path)
    again = build_redirect_table(database=database, path=path)
    assert again.stamp == first.stamp, "an up-to-date table is not written again"
    disable_in(database, "active")
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert build_redirect_table(database=database, path=path) is None
        command = subprocess.run(
            [sys.executable, "manage.py", "build_redirect_table", "--database", database, "--table", path],
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
        )
        assert (command.returncode, command.stdout) == (
            BUILD_UNDER_WAY,
            "redirect table: another build is under way\n",
        )
    rebuilt = build_redirect_table(database=database, path=path)
    assert rebuilt.stamp != first.stamp
    assert rebuilt.version == first.version + 1
    assert rebuilt.get("active") is DELEGATE
    assert not list(path.parent.glob("*.partial"))


def test_many_links_created_since_the_build_make_the_table_stale(database):
    table = build_redirect_table(database=database, path=redirect_table_path(database))
    facts = facts_of(database)
    assert not facts.table_is_stale(table)
    allowed = table.link_count // 8 + 1000
    assert not TableFacts(facts.identity, facts.version, facts.max_link_id + allowed).table_is_stale(table)
    assert TableFacts(facts.identity, facts.version, facts.max_link_id + allowed + 1).table_is_stale(table)
    assert TableFacts(facts.identity + 1, facts.version, facts.max_link_id).table_is_stale(table)
    assert facts.table_is_stale(None)


def test_a_build_for_every_link_follows_a_single_new_one(database):
    # After a bulk import: build_redirect_table --every-link.
    path = redirect_table_path(database)
    first = build_redirect_table(database=database, path=path)
    assert build_redirect_table(database=database, path=path, every_link=True).stamp == first.stamp
    write_in(
        database,
        "INSERT INTO links_link (slug, original_url, is_canonical, created_at, is_active) "
        "SELECT 'imported', 'https://example.com/imported', 0, created_at, 1 FROM links_link LIMIT 1",
    )
    assert build_redirect_table(database=database, path=path).stamp == first.stamp, "within the allowance"
    complete = build_redirect_table(database=database, path=path, every_link=True)
    assert complete.stamp != first.stamp
    assert complete.get("imported")[1] == b"https://example.com/imported"


def test_a_miss_is_answered_from_the_table_without_a_statement(fast_path, database):
    fast_path.table = build_redirect_table(database=database, path=redirect_table_path(database))
    entry, statements = statements_run(fast_path, "active")
    assert entry[1] == b"https://example.com/active"
    assert not any("links_link WHERE slug" in statement for statement in statements), statements


def test_a_link_disabled_after_the_build_stops_redirecting_at_once(fast_path, database):
    fast_path.table = build_redirect_table(database=database, path=redirect_table_path(database))
    # The worker has read the version already: only the WAL index shows the change.
    assert lookup(fast_path, "expires-later")[1] == b"https://example.com/later"
    disable_in(database, "active")
    assert fast_path.table.get("active") is not DELEGATE, "the table is as of its build"
    entry, statements = statements_run(fast_path, "active")
    assert entry is DELEGATE, "a changed links version leaves the table aside: the row is read"
    assert any("links_link WHERE slug" in statement for statement in statements)


def test_a_link_created_after_the_build_is_read_from_the_database(fast_path, database):
    fast_path.table = build_redirect_table(database=database, path=redirect_table_path(database))
    write_in(
        database,
        "INSERT INTO links_link (slug, original_url, is_canonical, is_active, created_at, max_clicks) "
        "VALUES ('newer', 'https://example.com/newer', 0, 1, '2026-12-01 00:00:00', NULL)",
    )
    assert fast_path.table.get("newer") is None
    assert lookup(fast_path, "newer")[1] == b"https://example.com/newer"
    assert lookup(fast_path, "still-nothing") is None
    # A creation changes no redirect: the table is still read for the others.
    entry, statements = statements_run(fast_path, "active")
    assert entry[1] == b"https://example.com/active"
    assert not any("links_link WHERE slug" in statement for statement in statements), statements


def wait_for(condition, *, seconds: float = 60, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.05)


def test_a_keeper_has_the_table_built_in_a_process_and_follows_changes(fast_path, database):
    path = redirect_table_path(database)
    keeper = RedirectTableKeeper(fast_path, database=database, path=path, every=0.05, rebuild_wait=0.2)
    keeper.start()
    try:
        wait_for(lambda: fast_path.table is not None, what="table built and mapped")
        first = fast_path.table
        assert first.get("active")[1] == b"https://example.com/active"
        disable_in(database, "active")
        wait_for(lambda: fast_path.table.version == first.version + 1, what="table rebuilt after the change")
        assert fast_path.table.get("active") is DELEGATE
        assert lookup(fast_path, "active") is DELEGATE
    finally:
        keeper.stop()
    wait_for(lambda: not keeper.building, what="builder's end")


def test_builds_are_spaced_by_the_last_builds_length(fast_path, database):
    path = redirect_table_path(database)
    build_redirect_table(database=database, path=path)  # gives the database its identity
    facts = facts_of(database)
    # Out of date (an older version), and its build took 5 s: the next waits 45 s after it.
    outdated = {"version": facts.version - 1, "identity": facts.identity, "max_link_id": facts.max_link_id}
    write_table(path, **outdated, link_count=0, entries=[], started_at=time.time() - 5)
    keeper = RedirectTableKeeper(fast_path, database=database, path=path, rebuild_wait=0.1)
    try:
        keeper.keep()
        assert fast_path.table is not None and fast_path.table.version == facts.version - 1
        assert not keeper.building, "too soon after a build of 5 s"
        # The same table, built in no time (renamed into place, as builds do): built again at once.
        write_table(path.with_name("quick"), **outdated, link_count=0, entries=[])
        os.replace(path.with_name("quick"), path)
        time.sleep(0.15)  # and at least rebuild_wait after it
        keeper.keep()
        assert keeper.building
        wait_for(lambda: not keeper.building, what="build")
        keeper.keep()
        assert fast_path.table.version == facts.version
    finally:
        keeper.stop()


def test_a_table_of_another_database_is_not_read(fast_path, database, tmp_path):
    # The database made anew (a fresh volume) beside an old table: its links
    # version may have come back to the table's.
    other = copy_of_test_database(tmp_path / "other.sqlite3")
    path = redirect_table_path(database)
    build_redirect_table(database=other, path=path)
    write_in(database, "PRAGMA user_version = 12345")
    keeper = RedirectTableKeeper(fast_path, database=database, path=path, rebuild_wait=0.1)
    try:
        keeper.keep()
        assert fast_path.table is None
        assert keeper.building, "and one of this database is built"
        wait_for(lambda: not keeper.building, what="build")
        keeper.keep()
        assert fast_path.table is not None and fast_path.table.identity == 12345
    finally:
        keeper.stop()


def test_a_header_records_the_files_length(tmp_path):
    path = tmp_path / "table"
    write_table(path, version=1, identity=1, max_link_id=0, link_count=0, entries=[])
    assert path.stat().st_size == HEADER_BYTES + 8 * slot_count_for(0) == 128 + 8 * 1024
    assert RedirectTable(path).get("anything") is None


def test_a_build_that_fails_is_tried_again_ever_later_and_logged(fast_path, database, tmp_path, caplog):
    # The table's folder does not exist: every build fails.
    keeper = RedirectTableKeeper(fast_path, database=database, path=tmp_path / "gone" / "t", rebuild_wait=0.1)
    try:
        waits = []
        for _failure in range(2):
            keeper.keep()
            assert keeper.building
            wait_for(lambda: not keeper.building, what="the build's end")
            keeper.keep()  # sees it failed: no new build for a while
            assert not keeper.building
            waits.append(keeper._next_build - time.monotonic())
            time.sleep(max(0.0, waits[-1]) + 0.05)
        assert keeper._failures == 2
        assert 0.1 < waits[0] <= 0.2 < waits[1] <= 0.4, waits
        assert fast_path.table is None
        assert "the build exited with 1 (failure 2)" in caplog.text
    finally:
        keeper.stop()


def test_a_builder_finding_another_build_under_way_says_so_and_is_no_failure(fast_path, database, caplog):
    path = redirect_table_path(database)
    keeper = RedirectTableKeeper(fast_path, database=database, path=path, rebuild_wait=0.1)
    try:
        keeper.keep()
        builder = keeper._builder
        assert keeper.building
        # Taken while the builder is still starting Django (hundreds of ms):
        # as if another worker's builder had won the lock.
        with open(f"{path}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            wait_for(lambda: not keeper.building, what="the builder's end")
        assert builder.returncode == BUILD_UNDER_WAY
        keeper.keep()
        assert keeper._failures == 0
        assert "exited" not in caplog.text
    finally:
        keeper.stop()


def test_a_table_from_a_history_the_database_has_left_is_never_read(fast_path, database):
    # A copy of the database put back (a replica, a file copy) with the same
    # identity and an older version: its version may climb to the table's
    # again, with other links behind it.
    path = redirect_table_path(database)
    build_redirect_table(database=database, path=path)
    facts = facts_of(database)
    later = {"version": facts.version + 2, "identity": facts.identity, "max_link_id": facts.max_link_id}
    write_table(path, **later, link_count=1, entries=[(b"active", (1, b"https://elsewhere.example/", 1e12))])
    keeper = RedirectTableKeeper(fast_path, database=database, path=path, rebuild_wait=60)
    try:
        keeper._next_build = time.monotonic() + 60  # no build meanwhile: the old file stays
        keeper.keep()
        assert fast_path.table is None
        for _change in range(2):
            disable_in(database, "active")
            write_in(database, "UPDATE links_link SET is_active = 1 WHERE slug = 'active'")
        assert facts_of(database).version >= later["version"]
        keeper.keep()
        assert fast_path.table is None, "set aside for good"
        assert lookup(fast_path, "active")[1] == b"https://example.com/active"
    finally:
        keeper.stop()


def test_stopping_a_keeper_ends_its_builder(fast_path, database):
    keeper = RedirectTableKeeper(fast_path, database=database, path=redirect_table_path(database))
    keeper.keep()
    builder = keeper._builder
    assert keeper.building
    keeper.stop()
    assert builder.poll() is not None


def test_a_slot_pointing_past_the_file_is_not_followed(tmp_path):
    path = table_of_one_link(tmp_path / "table")
    index = crc32(b"a") & (slot_count_for(1) - 1)
    damaged = bytearray(path.read_bytes())
    struct.pack_into("=Q", damaged, HEADER_BYTES + 8 * index, (crc32(b"a") << 32) | 0xFFFFFFF0)
    path.write_bytes(damaged)
    assert RedirectTable(path).get("a") is None
