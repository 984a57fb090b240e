"""Click counters apart from the link rows (models.LinkClicks, migration 0003):
written by the flush and by take_limited_click, read through Link.clicks, gone
with their link, exact for limited links under concurrent takers, moved by the
migration both ways. A link's latest day of clicks kept in its counters row
(migration 0004), moved to DailyClicks by the database when another day's
clicks arrive, read through Link.clicks_per_day. On a real SQLite file, and
again on PostgreSQL (scripts/with_postgres.sh)."""

import asyncio
import gc
import random
import sqlite3
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.sql import emit_post_migrate_signal
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from links import asgi
from links.clicks import ClickCounter, datetime_parameter, journal_append, journal_file, journal_statements
from links.fastpath import DELEGATE, RedirectFastPath
from links.models import ClickRollUp, DailyClicks, Link, LinkClicks, LinkStatus, LinkTableVersion
from links.services import shorten_url, take_limited_click, update_link
from tests.conftest import JOURNALS_CLICKS, failing_writes_to, journal_waiting

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def version_row(empty_click_journal):
    # The row migration 0002 makes; PostgreSQL's flush between tests truncates it.
    LinkTableVersion.objects.get_or_create(pk=1)


def journal_rows() -> list[int]:
    """The ids of every row in the journal's file, rolled up or not."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM clicks.links_clickjournal ORDER BY id")
        return [row_id for (row_id,) in cursor.fetchall()]


def database_reader() -> sqlite3.Connection:
    """A read-only connection of its own to the test database, as a worker's
    redirect reader is (links.fastpath.SQLiteLinks)."""
    return sqlite3.connect(f"file:{connection.settings_dict['NAME']}?mode=ro", uri=True)


def read_under_way(reader: sqlite3.Connection) -> int:
    """A read transaction begun and left open, as a worker's redirect reader
    holds one for a turn of its event loop; the links it counted."""
    reader.execute("BEGIN")
    (links,) = reader.execute("SELECT count(*) FROM links_link").fetchone()
    return links


def link_columns() -> set[str]:
    with connection.cursor() as cursor:
        columns = connection.introspection.get_table_description(cursor, "links_link")
    return {column.name for column in columns}


def test_the_flush_writes_the_counters_row_not_the_link_row_and_it_follows_deletes():
    link, _ = shorten_url(url="https://example.com/counted")
    assert "clicks" not in link_columns() and "last_clicked_at" not in link_columns()
    assert not LinkClicks.objects.filter(link=link).exists()  # none until the first click
    assert (link.clicks, link.last_clicked_at) == (0, None)
    counter = ClickCounter()
    for _ in range(3):
        counter.record(link.pk)
    assert counter.flush() == 3
    counter.record(link.pk)
    assert counter.flush() == 1
    row = LinkClicks.objects.get(link=link)
    assert row.clicks == 4 and row.last_clicked_at is not None
    loaded = Link.objects.get(pk=link.pk)
    assert (loaded.clicks, loaded.last_clicked_at) == (4, row.last_clicked_at)
    # The day's count is kept in the same row: no daily row is written within a day.
    today = timezone.now().date()
    assert (row.latest_day, row.latest_day_clicks) == (today, 4)
    assert not DailyClicks.objects.exists()
    assert loaded.clicks_per_day() == [(today, 4)]
    # A later day's click: the kept day moves into a daily row, which goes with the link too.
    counter.record(link.pk, at=timezone.now() + timedelta(days=1))
    counter.flush()
    assert DailyClicks.objects.filter(link=link).count() == 1
    link.delete()
    assert not LinkClicks.objects.exists()
    assert not DailyClicks.objects.exists()


def test_one_flush_mixes_counted_links_first_clicks_and_deleted_links():
    counted, _ = shorten_url(url="https://example.com/counted-before")
    first, _ = shorten_url(url="https://example.com/first-click")
    gone, _ = shorten_url(url="https://example.com/deleted-meanwhile")
    LinkClicks.objects.create(link=counted, clicks=5)
    counter = ClickCounter()
    for link in (counted, counted, first, gone):
        counter.record(link.pk)
    gone.delete()
    assert counter.flush() == 4  # all taken from the tally, the deleted link's dropped
    assert dict(LinkClicks.objects.values_list("link_id", "clicks")) == {counted.pk: 7, first.pk: 1}
    assert dict(LinkClicks.objects.values_list("link_id", "latest_day_clicks")) == {
        counted.pk: 2,
        first.pk: 1,
    }
    today = timezone.now().date()
    assert [link.clicks_per_day() for link in Link.objects.order_by("pk")] == [[(today, 2)], [(today, 1)]]


@JOURNALS_CLICKS
def test_on_sqlite_a_flush_journals_the_clicks_and_the_roll_up_adds_them_to_the_counters():
    counted, _ = shorten_url(url="https://example.com/journal-counted")
    gone, _ = shorten_url(url="https://example.com/journal-deleted")
    LinkClicks.objects.create(link=counted, clicks=5)
    midnight = datetime(2026, 12, 1, tzinfo=UTC)
    counter = ClickCounter(roll_up_interval=3600)
    # Two days in two flushes, the later day first; and a link deleted once journaled.
    for at in (midnight + timedelta(hours=1), midnight + timedelta(hours=2)):
        counter.record(counted.pk, at=at)
    counter.record(gone.pk, at=midnight)
    assert counter.flush() == 3
    counter.record(counted.pk, at=midnight - timedelta(hours=1))
    assert counter.flush() == 1
    gone.delete()
    # Not due: the counters are as they were, the journal holds one row per link and day.
    assert (Link.objects.get(pk=counted.pk).clicks, len(journal_waiting())) == (5, 3)
    counter.roll_up()
    assert (journal_waiting(), journal_rows()) == ([], [])
    counted = Link.objects.get(pk=counted.pk)
    assert (counted.clicks, counted.last_clicked_at) == (8, midnight + timedelta(hours=2))
    assert counted.clicks_per_day() == [(date(2026, 12, 1), 2), (date(2026, 11, 30), 1)]
    # The days rolled up oldest first: the latest stays in the counters row.
    assert (counted.counter.latest_day, counted.counter.latest_day_clicks) == (date(2026, 12, 1), 2)
    assert list(DailyClicks.objects.values_list("day", "count")) == [(date(2026, 11, 30), 1)]
    assert list(LinkClicks.objects.values_list("link_id", flat=True)) == [counted.pk]


@JOURNALS_CLICKS
def test_a_worker_starting_rolls_up_what_a_killed_one_journaled(monkeypatch):
    link, _ = shorten_url(url="https://example.com/journal-left-over")
    killed = ClickCounter(roll_up_interval=3600)
    killed.record(link.pk)
    assert killed.flush() == 1  # and killed before its roll-up
    # A worker's start, as uvicorn drives it (ASGI lifespan), without the
    # serving marker's file and the collector's freeze, which have tests of their own.
    monkeypatch.setattr(asgi, "hold_serving_marker", lambda: None)
    monkeypatch.setattr(asgi, "release_serving_marker", lambda marker: None)
    monkeypatch.setattr(asgi, "set_start_up_objects_aside", lambda: None)
    journaled_when_started = []

    async def start_and_stop():
        inbox: asyncio.Queue = asyncio.Queue()

        async def send(message):
            if message["type"] == "lifespan.startup.complete":
                journaled_when_started.append(len(await asyncio.to_thread(journal_waiting)))
                await inbox.put({"type": "lifespan.shutdown"})

        await inbox.put({"type": "lifespan.startup"})
        await asgi.ShortenerApplication(None).lifespan(inbox.get, send)

    asyncio.run(start_and_stop())
    assert journaled_when_started == [0]
    assert Link.objects.get(pk=link.pk).clicks == 1


@JOURNALS_CLICKS
def test_a_limit_set_later_counts_the_clicks_still_in_the_journal():
    link, _ = shorten_url(url="https://example.com/journal-then-limited", slug="limited-later")
    counter = ClickCounter(roll_up_interval=3600)
    for _ in range(3):
        counter.record(link.pk)
    assert counter.flush() == 3
    update_link(link=link, max_clicks=4)
    assert (journal_waiting(), journal_rows()) == ([], [])
    assert take_limited_click(link_id=link.pk)
    assert not take_limited_click(link_id=link.pk)  # 3 before the limit, and this one
    assert Link.objects.get(pk=link.pk).clicks == 4


@JOURNALS_CLICKS
def test_a_flush_commits_to_the_journals_file_alone():
    # What every worker's reader of the database sees change (PRAGMA
    # data_version): a flush, none; a roll-up, one (links.clicks).
    link, _ = shorten_url(url="https://example.com/journal-apart")
    reader = database_reader()
    try:
        (before,) = reader.execute("PRAGMA data_version").fetchone()
        counter = ClickCounter(roll_up_interval=3600)
        counter.record(link.pk)
        assert counter.flush() == 1
        assert journal_waiting() == [(link.pk, 1)]
        assert reader.execute("PRAGMA data_version").fetchone() == (before,)
        counter.roll_up()
        assert reader.execute("PRAGMA data_version").fetchone() != (before,)
    finally:
        reader.close()
    assert Link.objects.get(pk=link.pk).clicks == 1


def test_a_journal_append_is_split_into_statements_of_powers_of_two():
    rows = [(1, None, "2026-12-02", 1, link_id) for link_id in range(1, 1301)]
    statements = list(journal_statements(rows, most_rows=512))
    assert [len(parameters) // 5 for _, parameters in statements] == [512, 512, 256, 16, 4]
    assert [value for _, parameters in statements for value in parameters] == [v for row in rows for v in row]
    assert all(statement == journal_append(len(parameters) // 5) for statement, parameters in statements)


@JOURNALS_CLICKS
def test_a_flush_of_many_statements_journals_all_of_them_or_none_and_leaves_the_database_unlocked():
    links = Link.objects.bulk_create(
        Link(slug=f"many-{n}", original_url=f"https://example.com/many/{n}") for n in range(1300)
    )
    last = max(link.pk for link in links)
    counter = ClickCounter(roll_up_interval=3600)
    for link in links:
        counter.record(link.pk)
    # The last of the flush's five statements fails: nothing is journaled, the tally keeps every click.
    with failing_writes_to("clicks.links_clickjournal", when=f"NEW.link_id = {last}", event="INSERT"):
        assert counter.flush() == 0
    assert journal_rows() == []
    # A writer of the database holds its write lock: the flush, in the journal's file alone, goes on.
    writer = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, timeout=0)
    try:
        writer.execute("BEGIN IMMEDIATE")
        assert counter.flush() == 1300
        writer.execute("ROLLBACK")
    finally:
        writer.close()
    assert len(journal_waiting()) == 1300
    counter.roll_up()
    assert dict(LinkClicks.objects.values_list("link_id", "clicks")) == {link.pk: 1 for link in links}


@JOURNALS_CLICKS
def test_a_roll_up_stopped_before_deleting_its_rows_does_not_add_them_twice():
    link, _ = shorten_url(url="https://example.com/journal-interrupted")
    counter = ClickCounter(roll_up_interval=3600)
    counter.record(link.pk)
    counter.record(link.pk)
    counter.flush()
    # The counters commit, then the journal's file refuses the deletion.
    with failing_writes_to("clicks.links_clickjournal", event="DELETE"):
        counter.roll_up()
    assert Link.objects.get(pk=link.pk).clicks == 2
    assert (len(journal_rows()), journal_waiting()) == (1, [])
    counter.record(link.pk)
    counter.flush()
    counter.roll_up()
    link = Link.objects.get(pk=link.pk)
    assert (link.clicks, link.clicks_per_day()) == (3, [(timezone.now().date(), 3)])
    assert journal_rows() == []


@JOURNALS_CLICKS
def test_a_journal_file_made_anew_numbers_its_rows_on_from_the_last_rolled_up():
    link, _ = shorten_url(url="https://example.com/journal-lost")
    counter = ClickCounter(roll_up_interval=3600)
    counter.record(link.pk)
    counter.flush()
    counter.roll_up()
    rolled_up_to = ClickRollUp.objects.get().last_row
    # The file lost (a volume restored from a replica of the database alone).
    path = journal_file(connection)
    connection.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    counter.record(link.pk)
    counter.flush()  # on a new connection, which makes the file again
    assert path.exists()
    assert journal_rows() == [rolled_up_to + 1]
    counter.roll_up()
    assert Link.objects.get(pk=link.pk).clicks == 2


@JOURNALS_CLICKS
def test_a_database_restored_ahead_of_its_journal_has_the_journal_number_on():
    link, _ = shorten_url(url="https://example.com/journal-behind")
    # A backup restored whose roll-ups had gone further than this journal's rows.
    ClickRollUp.objects.update_or_create(pk=1, defaults={"last_row": 1_000_000})
    connection.close()  # the site starts again: each connection attaches the journal
    counter = ClickCounter(roll_up_interval=3600)
    counter.record(link.pk)
    counter.flush()
    assert journal_rows() == [1_000_001]
    counter.roll_up()
    assert Link.objects.get(pk=link.pk).clicks == 1


@JOURNALS_CLICKS
def test_a_worker_leaves_the_roll_up_to_another_whose_roll_up_took_its_batches():
    link, _ = shorten_url(url="https://example.com/journal-one-roll-up")
    interval = 0.5
    first, second = ClickCounter(roll_up_interval=interval), ClickCounter(roll_up_interval=interval)
    for worker in (first, second):
        worker.record(link.pk)
        assert worker.flush() == 1
    time.sleep(interval)
    assert first.flush() == 0  # its batch is due: it rolls up both workers' rows
    assert (journal_waiting(), Link.objects.get(pk=link.pk).clicks) == ([], 2)
    # The second's first batch is due too, but the first's roll-up took it; so
    # it rolls up nothing now, and its new batch waits for its own interval.
    second.record(link.pk)
    assert second.flush() == 1
    assert (journal_waiting(), Link.objects.get(pk=link.pk).clicks) == ([(link.pk, 1)], 2)
    time.sleep(interval)
    assert second.flush() == 0
    assert (journal_waiting(), Link.objects.get(pk=link.pk).clicks) == ([], 3)


@JOURNALS_CLICKS
def test_after_a_failed_roll_up_the_next_waits_an_interval_and_the_batches_since_stay_one_entry():
    link, _ = shorten_url(url="https://example.com/journal-roll-up-fails")
    interval = 0.5
    counter = ClickCounter(roll_up_interval=interval)
    counter.record(link.pk)
    counter.flush()
    time.sleep(interval)
    with failing_writes_to("links_linkclicks", event="INSERT"):
        counter.record(link.pk)
        assert counter.flush() == 1  # journaled; the roll-up due after it failed
    for _ in range(3):  # journaled while roll-ups are held off: none is tried
        counter.record(link.pk)
        assert counter.flush() == 1
    assert (len(journal_waiting()), Link.objects.get(pk=link.pk).clicks) == (5, 0)
    # Every batch this worker journaled stands in one entry, however long
    # roll-ups keep failing (a worker's memory).
    assert len(counter._unrolled) == 1
    time.sleep(interval)
    assert counter.flush() == 0
    assert (journal_waiting(), Link.objects.get(pk=link.pk).clicks) == ([], 5)


def write_ahead_log(database: str) -> tuple[int, int]:
    """The frames in an SQLite database's write-ahead log and how many of them
    are copied into its file, from its WAL index (sqlite.org/walformat.html:
    the header's mxFrame, the checkpoint information's nBackfill)."""
    index = Path(f"{database}-shm").read_bytes()
    return int.from_bytes(index[16:20], sys.byteorder), int.from_bytes(index[96:100], sys.byteorder)


@JOURNALS_CLICKS
def test_roll_ups_under_steady_reads_leave_the_write_ahead_log_no_longer():
    # Each roll-up commits while a read begun before it is under way; then
    # the flusher's next turn comes, with no clicks to write.
    # Why the log grew: links.clicks.CHECKPOINT.
    links = [shorten_url(url=f"https://example.com/journal-log-{n}")[0] for n in range(50)]
    database = connection.settings_dict["NAME"]
    reader = database_reader()
    counter = ClickCounter(roll_up_interval=3600)
    logs = []
    try:
        for _ in range(4):
            for link in links:
                counter.record(link.pk)
            assert counter.flush() == len(links)
            assert read_under_way(reader) == len(links)
            counter.roll_up()
            reader.commit()
            assert counter.flush() == 0
            logs.append(write_ahead_log(database))
    finally:
        reader.close()
    # Every frame copied after each roll-up; from the second on, each starts
    # the log over, so it holds one roll-up's frames, not one more each time.
    assert all(copied == in_log for in_log, copied in logs), logs
    assert [in_log for in_log, _ in logs[1:]] == [logs[1][0]] * 3, logs
    assert {link.clicks for link in Link.objects.all()} == {4}


@JOURNALS_CLICKS
def test_the_checkpoint_after_a_roll_up_stops_once_the_roll_up_is_copied():
    # Later writes under later reads are left to SQLite's own checkpoints:
    # steady writes must not keep a checkpoint running at every flush.
    link, _ = shorten_url(url="https://example.com/journal-log-writes")
    database = connection.settings_dict["NAME"]
    first, later = database_reader(), database_reader()
    counter = ClickCounter(roll_up_interval=3600)
    try:
        counter.record(link.pk)
        counter.flush()
        read_under_way(first)
        counter.roll_up()
        counter.flush()  # the first reader still reads: the roll-up stays in the log
        rolled_up, copied = write_ahead_log(database)
        assert copied < rolled_up
        first.commit()
        read_under_way(later)
        shorten_url(url="https://example.com/journal-log-written-later")
        counter.flush()
        in_log, copied = write_ahead_log(database)
        assert rolled_up <= copied < in_log  # the roll-up copied, the later write not
        later.commit()
        with CaptureQueriesContext(connection) as flushed:
            counter.flush()
        assert not [query for query in flushed.captured_queries if "checkpoint" in query["sql"]]
    finally:
        first.close()
        later.close()


@JOURNALS_CLICKS
def test_a_roll_up_takes_every_process_journal_and_a_stop_rolls_up_its_own():
    link, _ = shorten_url(url="https://example.com/journal-others")
    # A worker that crashed after its flush, before its roll-up.
    crashed = ClickCounter(roll_up_interval=3600)
    crashed.record(link.pk)
    assert crashed.flush() == 1
    counter = ClickCounter(roll_up_interval=3600)
    counter.record(link.pk)
    counter.shutdown()  # writes its tally and rolls up the journal, the other's rows too
    assert (journal_waiting(), journal_rows()) == ([], [])
    assert Link.objects.get(pk=link.pk).clicks == 2
    # One that journaled nothing leaves the database alone at its stop.
    with CaptureQueriesContext(connection) as queries:
        ClickCounter(roll_up_interval=3600).shutdown()
    assert queries.captured_queries == []


def test_a_later_click_written_first_keeps_the_latest_time():
    link, _ = shorten_url(url="https://example.com/times")
    later = timezone.now()
    counter = ClickCounter()
    counter.record(link.pk, at=later)
    counter.flush()
    counter.record(link.pk, at=later - timedelta(minutes=5))  # another worker's older click
    counter.flush()
    assert Link.objects.get(pk=link.pk).last_clicked_at == later
    assert Link.objects.get(pk=link.pk).clicks == 2


def test_clicks_either_side_of_midnight_utc_count_on_their_own_days():
    link, _ = shorten_url(url="https://example.com/midnight")
    midnight = datetime(2026, 11, 30, tzinfo=UTC)
    counter = ClickCounter()
    last = midnight + timedelta(hours=23, minutes=59)
    for at in (midnight - timedelta(seconds=1), midnight, last, midnight):
        counter.record(link.pk, at=at)
    counter.record(link.pk, at=midnight - timedelta(microseconds=1), already_counted=True)
    counter.flush()
    link = Link.objects.get(pk=link.pk)
    assert link.clicks_per_day() == [(date(2026, 11, 30), 3), (date(2026, 11, 29), 2)]
    assert (link.clicks, link.last_clicked_at) == (4, last)
    # One flush, two days: the newer is kept in the counters row, the older moved out.
    assert list(DailyClicks.objects.values_list("day", "count")) == [(date(2026, 11, 29), 2)]
    assert (link.counter.latest_day, link.counter.latest_day_clicks) == (date(2026, 11, 30), 3)


def test_the_next_days_clicks_move_the_day_the_counters_kept_into_daily_clicks():
    link, _ = shorten_url(url="https://example.com/next-day")
    monday = datetime(2026, 11, 30, 12, tzinfo=UTC)
    counter = ClickCounter()
    for day, clicks in ((0, 3), (1, 2), (1, 1), (3, 4)):  # one flush each
        for _ in range(clicks):
            counter.record(link.pk, at=monday + timedelta(days=day))
        counter.flush()
    link = Link.objects.get(pk=link.pk)
    assert link.clicks == 10
    assert link.clicks_per_day() == [
        (date(2026, 12, 3), 4),
        (date(2026, 12, 1), 3),
        (date(2026, 11, 30), 3),
    ]
    assert list(DailyClicks.objects.order_by("day").values_list("day", "count")) == [
        (date(2026, 11, 30), 3),
        (date(2026, 12, 1), 3),
    ]


def test_a_late_flush_of_an_earlier_day_counts_on_that_day():
    # Another worker flushes clicks of before midnight after this one has
    # written the new day's: the kept day goes back and forth, nothing is lost.
    link, _ = shorten_url(url="https://example.com/late")
    midnight = datetime(2026, 12, 1, tzinfo=UTC)
    early, late = ClickCounter(), ClickCounter()
    early.record(link.pk, at=midnight + timedelta(seconds=1))
    early.record(link.pk, at=midnight + timedelta(seconds=2))
    late.record(link.pk, at=midnight - timedelta(seconds=1))
    early.flush()
    late.flush()
    early.record(link.pk, at=midnight + timedelta(seconds=3))
    early.flush()
    link = Link.objects.get(pk=link.pk)
    assert link.clicks_per_day() == [(date(2026, 12, 1), 3), (date(2026, 11, 30), 1)]
    assert (link.clicks, link.last_clicked_at) == (4, midnight + timedelta(seconds=3))


def test_any_writer_that_changes_the_kept_day_has_its_count_moved():
    # The database's trigger, not the flush, moves the count: raw SQL too.
    link, _ = shorten_url(url="https://example.com/raw-writer")
    DailyClicks.objects.create(link=link, day=date(2026, 11, 29), count=5)
    LinkClicks.objects.create(link=link, clicks=7, latest_day=date(2026, 11, 29), latest_day_clicks=2)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE links_linkclicks SET latest_day = %s, latest_day_clicks = 1 WHERE link_id = %s",
            [date(2026, 11, 30), link.pk],
        )
        # The same day written again: nothing moves.
        cursor.execute(
            "UPDATE links_linkclicks SET latest_day = latest_day, latest_day_clicks = latest_day_clicks + 1 "
            "WHERE link_id = %s",
            [link.pk],
        )
    assert dict(DailyClicks.objects.values_list("day", "count")) == {date(2026, 11, 29): 7}
    assert Link.objects.get(pk=link.pk).clicks_per_day() == [(date(2026, 11, 30), 2), (date(2026, 11, 29), 7)]


def test_a_days_clicks_are_read_in_one_statement(django_assert_num_queries):
    # One snapshot: the kept day cannot move into DailyClicks between two reads.
    link, _ = shorten_url(url="https://example.com/one-read")
    DailyClicks.objects.create(link=link, day=date(2026, 11, 29), count=5)
    DailyClicks.objects.create(link=link, day=date(2026, 10, 1), count=8)
    LinkClicks.objects.create(link=link, clicks=7, latest_day=date(2026, 11, 30), latest_day_clicks=2)
    with django_assert_num_queries(1):
        assert link.clicks_per_day() == [
            (date(2026, 11, 30), 2),
            (date(2026, 11, 29), 5),
            (date(2026, 10, 1), 8),
        ]
    with django_assert_num_queries(1):
        assert link.clicks_per_day(since=date(2026, 11, 29)) == [
            (date(2026, 11, 30), 2),
            (date(2026, 11, 29), 5),
        ]


def test_a_limited_link_clicked_across_midnight_counts_each_day_once():
    limited, _ = shorten_url(url="https://example.com/limited-midnight", max_clicks=10)
    midnight = datetime(2026, 12, 1, tzinfo=UTC)
    assert take_limited_click(link_id=limited.pk) and take_limited_click(link_id=limited.pk)
    counter = ClickCounter()
    counter.record(limited.pk, at=midnight - timedelta(seconds=1), already_counted=True)
    counter.record(limited.pk, at=midnight + timedelta(seconds=1), already_counted=True)
    assert counter.flush() == 2
    limited = Link.objects.get(pk=limited.pk)
    assert limited.clicks == 2  # the database's, not added again
    assert limited.clicks_per_day() == [(date(2026, 12, 1), 1), (date(2026, 11, 30), 1)]


def test_flushes_of_different_days_at_once_lose_nothing():
    # Workers (replicas, on PostgreSQL) flushing the same link at the same
    # moment, one the day before midnight's clicks and one the day after's.
    link, _ = shorten_url(url="https://example.com/racing-days")
    midnight = datetime(2026, 12, 1, tzinfo=UTC)
    rounds = 15
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def flusher(at: datetime):
        counter = ClickCounter()
        try:
            for _ in range(rounds):
                counter.record(link.pk, at=at)
                counter.record(link.pk, at=at)
                start.wait(timeout=30)
                assert counter.flush() == 2
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)
            start.abort()
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=flusher, args=(at,))
        for at in (midnight - timedelta(seconds=1), midnight + timedelta(seconds=1))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    link = Link.objects.get(pk=link.pk)
    assert link.clicks == 4 * rounds
    assert link.clicks_per_day() == [(date(2026, 12, 1), 2 * rounds), (date(2026, 11, 30), 2 * rounds)]


def test_a_daily_row_for_the_kept_day_adds_to_it():
    # Written before migration 0004, or by another writer: both are that day's clicks.
    link, _ = shorten_url(url="https://example.com/both-places")
    today = date(2026, 11, 30)
    DailyClicks.objects.create(link=link, day=today, count=5)
    LinkClicks.objects.create(link=link, clicks=7, latest_day=today, latest_day_clicks=2)
    assert Link.objects.get(pk=link.pk).clicks_per_day() == [(today, 7)]
    never, _ = shorten_url(url="https://example.com/never-clicked")
    assert never.clicks_per_day() == []
    assert Link(slug="unsaved", original_url="https://example.com/unsaved").clicks_per_day() == []


def test_the_tally_gives_the_cyclic_collector_nothing_to_walk():
    # An object per clicked link was most of what the collector's full passes
    # walked at 1,000,000 links (docs/performance.md): the tally is dicts of
    # plain numbers, which it does not track.
    links = [shorten_url(url=f"https://example.com/tally/{n}")[0] for n in range(20)]
    midnight = datetime(2026, 11, 30, tzinfo=UTC)
    counter = ClickCounter()
    for link in links:
        counter.record(link.pk, at=midnight - timedelta(seconds=1))
        counter.record(link.pk, at=midnight, already_counted=True)
    tally = counter._pending
    gc.collect()
    # What grows with the links clicked (the day's dict holds one entry a day).
    per_link = [tally.clicks, tally.last_clicked, *tally.per_day.values()]
    assert len(per_link) == 4 and not any(gc.is_tracked(part) for part in per_link)
    assert counter.flush() == 40


def test_a_limited_link_takes_exactly_its_clicks_and_then_is_exhausted():
    limited, _ = shorten_url(url="https://example.com/limited", max_clicks=3)
    plain, _ = shorten_url(url="https://example.com/plain")
    assert Link.objects.get(pk=limited.pk).status == LinkStatus.ACTIVE  # no counters row yet
    assert [take_limited_click(link_id=limited.pk) for _ in range(5)] == [True] * 3 + [False] * 2
    limited = Link.objects.get(pk=limited.pk)
    assert limited.clicks == 3 and limited.last_clicked_at is not None
    assert limited.status == LinkStatus.EXHAUSTED
    assert set(Link.objects.with_status(LinkStatus.EXHAUSTED)) == {limited}
    assert set(Link.objects.followable()) == {plain}
    # Not limited, or gone: nothing taken, no row made.
    assert take_limited_click(link_id=plain.pk) is False
    assert take_limited_click(link_id=plain.pk + limited.pk + 1000) is False
    assert not LinkClicks.objects.filter(link=plain).exists()
    # A raised limit gives clicks again.
    Link.objects.filter(pk=limited.pk).update(max_clicks=4)
    assert [take_limited_click(link_id=limited.pk) for _ in range(2)] == [True, False]


def test_the_fast_path_leaves_limited_links_to_django_clicked_or_exhausted():
    limited, _ = shorten_url(url="https://example.com/fast-limited", max_clicks=5)
    exhausted, _ = shorten_url(url="https://example.com/fast-exhausted", max_clicks=1)
    plain, _ = shorten_url(url="https://example.com/fast-plain")
    take_limited_click(link_id=limited.pk)
    take_limited_click(link_id=exhausted.pk)
    counter = ClickCounter()
    counter.record(plain.pk)
    counter.flush()
    fast_path = RedirectFastPath.from_settings()
    try:
        assert asyncio.run(fast_path.lookup(limited.slug)) is DELEGATE
        assert asyncio.run(fast_path.lookup(exhausted.slug)) is DELEGATE
        # A counted unlimited link is served from the cache, its counters never read.
        _link_id, location, _valid_until = asyncio.run(fast_path.lookup(plain.slug))
        assert location == b"https://example.com/fast-plain"
    finally:
        fast_path.close()


def test_concurrent_takers_never_exceed_the_limit():
    limited, _ = shorten_url(url="https://example.com/race", max_clicks=25)
    start = threading.Barrier(8)
    taken: list[bool] = []
    errors: list[BaseException] = []

    def taker():
        try:
            start.wait()
            for _ in range(10):
                taken.append(take_limited_click(link_id=limited.pk))
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=taker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert (taken.count(True), taken.count(False)) == (25, 55)
    assert Link.objects.get(pk=limited.pk).clicks == 25


def test_ordering_by_clicks_counts_a_link_never_clicked_as_zero():
    never, _ = shorten_url(url="https://example.com/never")
    once, _ = shorten_url(url="https://example.com/once")
    often, _ = shorten_url(url="https://example.com/often")
    LinkClicks.objects.create(link=once, clicks=1, last_clicked_at=timezone.now() - timedelta(days=1))
    LinkClicks.objects.create(link=often, clicks=9, last_clicked_at=timezone.now())
    assert list(Link.objects.order_by("clicks")) == [never, once, often]
    assert list(Link.objects.order_by("-clicks")) == [often, once, never]
    assert list(Link.objects.order_by("last_clicked_at")) == [never, once, often]
    assert list(Link.objects.order_by("-last_clicked_at")) == [often, once, never]


def test_the_migration_moves_counts_into_the_counters_table_and_back():
    executor = MigrationExecutor(connection)
    executor.migrate([("links", "0002_link_state")])
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO links_link (slug, original_url, is_canonical, created_at, is_active, clicks, "
                "last_clicked_at) VALUES ('moved1', 'https://example.com/m', %s, %s, %s, 7, %s), "
                "('never1', 'https://example.com/n', %s, %s, %s, 0, NULL)",
                (False, timezone.now(), True, timezone.now(), False, timezone.now(), True),
            )
        executor.loader.build_graph()
        executor.migrate([("links", "0003_link_clicks_apart")])
        # The models of today name later columns: read as 0003 left the table.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT l.slug, c.clicks, c.last_clicked_at IS NOT NULL "
                "FROM links_linkclicks c JOIN links_link l ON l.id = c.link_id"
            )
            assert [tuple(row) for row in cursor.fetchall()] == [("moved1", 7, True)]
        executor.loader.build_graph()
        executor.migrate([("links", "0002_link_state")])
        with connection.cursor() as cursor:
            cursor.execute("SELECT slug, clicks, last_clicked_at IS NOT NULL FROM links_link ORDER BY slug")
            assert [tuple(row) for row in cursor.fetchall()] == [("moved1", 7, True), ("never1", 0, False)]
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
        emit_post_migrate_signal(verbosity=0, interactive=False, db=connection.alias)


def counters_table_sql() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'links_linkclicks'")
        return cursor.fetchone()[0]


def day_moved_trigger_exists() -> bool:
    query = {
        "sqlite": "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = %s",
        "postgresql": "SELECT count(*) FROM pg_trigger WHERE tgname = %s",
    }[connection.vendor]
    with connection.cursor() as cursor:
        cursor.execute(query, ["links_linkclicks_day_moved"])
        return cursor.fetchone()[0] == 1


def test_migration_0004_keeps_days_in_the_counters_and_moves_them_back():
    link, _ = shorten_url(url="https://example.com/kept-day")
    DailyClicks.objects.create(link=link, day=date(2026, 11, 28), count=4)
    DailyClicks.objects.create(link=link, day=date(2026, 11, 29), count=1)
    LinkClicks.objects.create(link=link, clicks=9, latest_day=date(2026, 11, 29), latest_day_clicks=3)
    if connection.vendor == "sqlite":
        # Added in place: the key is still the table's rowid (migration 0003).
        assert '"link_id" integer NOT NULL PRIMARY KEY' in counters_table_sql()
    assert day_moved_trigger_exists()
    # The command, as an operator runs it: its post_migrate handler (links/apps.py)
    # must not put back a trigger on columns that are gone.
    call_command("migrate", "links", "0003_link_clicks_apart", verbosity=0)
    executor = MigrationExecutor(connection)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT day, count FROM links_dailyclicks ORDER BY day")
            days = [(str(day), count) for day, count in cursor.fetchall()]
        assert days == [("2026-11-28", 4), ("2026-11-29", 4)]
        with connection.cursor() as cursor:
            columns = connection.introspection.get_table_description(cursor, "links_linkclicks")
        assert {column.name for column in columns} == {"link_id", "clicks", "last_clicked_at"}
        assert not day_moved_trigger_exists()
        executor.migrate(executor.loader.graph.leaf_nodes())
        # The migration itself puts the trigger in, before any post_migrate handler.
        assert day_moved_trigger_exists()
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
        emit_post_migrate_signal(verbosity=0, interactive=False, db=connection.alias)
    link = Link.objects.get(pk=link.pk)
    assert (link.clicks, link.clicks_per_day()) == (9, [(date(2026, 11, 29), 4), (date(2026, 11, 28), 4)])
    assert (link.counter.latest_day, link.counter.latest_day_clicks) == (None, 0)
    if connection.vendor == "sqlite":
        # Columns dropped and added in place both ways: still the rowid.
        assert '"link_id" integer NOT NULL PRIMARY KEY' in counters_table_sql()
    # Forward again: the next day's clicks move the one kept.
    counter = ClickCounter()
    counter.record(link.pk, at=datetime(2026, 11, 30, tzinfo=UTC))
    counter.flush()
    counter.record(link.pk, at=datetime(2026, 12, 1, tzinfo=UTC))
    counter.flush()
    assert Link.objects.get(pk=link.pk).clicks_per_day()[:3] == [
        (date(2026, 12, 1), 1),
        (date(2026, 11, 30), 1),
        (date(2026, 11, 29), 4),
    ]
    assert DailyClicks.objects.filter(day=date(2026, 11, 30)).get().count == 1


def test_migration_0006_adds_what_the_journal_table_held_before_it_goes():
    link, _ = shorten_url(url="https://example.com/old-journal")
    LinkClicks.objects.create(link=link, clicks=2, latest_day=date(2026, 11, 29), latest_day_clicks=2)
    executor = MigrationExecutor(connection)
    executor.migrate([("links", "0005_click_journal")])
    try:
        # Left by a worker killed before its roll-up: two days, and a link deleted since.
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO links_clickjournal (link_id, clicks, last_clicked_at, day, day_clicks) "
                "VALUES (%s, 3, %s, %s, 3), (%s, 1, %s, %s, 1), (%s, 4, NULL, %s, 4)",
                [
                    link.pk,
                    datetime(2026, 11, 29, 12, tzinfo=UTC),
                    date(2026, 11, 29),
                    link.pk,
                    datetime(2026, 11, 30, 1, tzinfo=UTC),
                    date(2026, 11, 30),
                    link.pk + 1000,
                    date(2026, 11, 30),
                ],
            )
        executor.loader.build_graph()
        executor.migrate([("links", "0006_click_journal_file_of_its_own")])
        assert "links_clickjournal" not in connection.introspection.table_names()
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
        emit_post_migrate_signal(verbosity=0, interactive=False, db=connection.alias)
    link = Link.objects.get(pk=link.pk)
    assert (link.clicks, link.last_clicked_at) == (6, datetime(2026, 11, 30, 1, tzinfo=UTC))
    assert link.clicks_per_day() == [(date(2026, 11, 30), 1), (date(2026, 11, 29), 5)]
    assert list(LinkClicks.objects.values_list("link_id", flat=True)) == [link.pk]


@pytest.mark.parametrize("time_zone", [None, "Europe/Paris"], ids=["UTC", "a zone with summer time"])
def test_the_flush_gives_the_database_the_datetimes_djangos_adapter_gives(time_zone, monkeypatch):
    # The click flush makes its datetimes its own way (faster); they must be
    # Django's, to the microsecond, around a summer time change too.
    if time_zone is not None:
        monkeypatch.setitem(connection.settings_dict, "TIME_ZONE", time_zone)
    for cached in ("timezone", "timezone_name"):
        connections["default"].__dict__.pop(cached, None)
    try:
        assert str(connection.timezone) == (time_zone or "UTC")
        as_parameter = datetime_parameter()
        django_adapts = connection.ops.adapt_datetimefield_value
        # The last hour of summer time in Paris in 2026, then the hour repeated.
        change = datetime(2026, 10, 25, 1, tzinfo=UTC).timestamp()
        picked = random.Random(15)
        moments = [
            *(change - 1800.000001, change - 0.5, change, change + 1800.25, time.time()),
            # Rounding to the microsecond: half to even, and up into the next second.
            *(change + 0.0000005, change + 0.0000015, change - 0.0000004, change + 0.9999996),
            # Exact ties at this magnitude (a float's step here is 2**-22 s): 7812.5 and 23437.5 µs.
            *(change + 1 / 128, change + 3 / 128),
            # Any moment of these two hours, at any precision a float holds.
            *(change + picked.uniform(-3600, 3600) for _ in range(2000)),
            *(change + picked.randrange(-3600, 3600) for _ in range(200)),
        ]
        for moment in moments:
            assert as_parameter(moment) == django_adapts(datetime.fromtimestamp(moment, UTC)), moment
    finally:
        for cached in ("timezone", "timezone_name"):
            connections["default"].__dict__.pop(cached, None)
