"""Click counting off the request path.

A redirect only adds to an in-memory tally; a background thread writes the
tally to the database every CLICK_FLUSH_SECONDS, in one transaction, and once more
when the process shuts down (ASGI lifespan shutdown, or interpreter exit).

On SQLite the tally goes to a journal (a file of its own: attach_journal),
which is added to the link counters once a batch in it is CLICK_ROLLUP_SECONDS
old (by the flusher of the process that wrote it, unless another process's
roll-up took it first: ClickCounter._roll_up_due), at shutdown, and by
links.asgi at a worker's start (what a worker killed before its roll-up left):
the admin and the API show a click that much later. On PostgreSQL the flush
adds to the counters itself (journals_clicks).

What a crash can lose: the clicks of at most the last flush interval in the
crashed worker process (SIGKILL, out-of-memory kill, power loss). A graceful
stop (SIGTERM, `docker compose stop`/`down`) loses nothing.

Links with `max_clicks` are the exception: their click is taken in the
database inside the request (see `services.take_limited_click`), because the
limit must hold exactly across worker processes; only their per-day tally is
batched.
"""

import atexit
import logging
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from functools import cache, partial
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400


class Tally:
    """Clicks counted since the last flush, in dicts of plain numbers keyed by
    link id (per day: one such dict a day): the cyclic collector does not track
    them, where an object per clicked link (a dataclass and a Counter) was most
    of what it walked at 1,000,000 links (docs/performance.md, 2026-11-29,
    evening)."""

    __slots__ = ("clicks", "last_clicked", "per_day")

    def __init__(self) -> None:
        self.clicks: dict[int, int] = {}
        # Seconds since the epoch (time.time()): a datetime only when written.
        self.last_clicked: dict[int, float] = {}
        self.per_day: dict[date, dict[int, int]] = {}

    def __bool__(self) -> bool:
        # Every click counts on its day, a limited link's too.
        return bool(self.per_day)

    def add(self, link_id: int, *, day: date, moment: float, to_total: bool = True) -> None:
        """One click on `day`; `to_total` False for a limited link, whose
        total the database took (services.take_limited_click)."""
        if to_total:
            self._add_to_total(link_id, 1, moment)
        self._add_on_day(day, link_id, 1)

    def merge(self, other: "Tally") -> None:
        for link_id, clicks in other.clicks.items():
            self._add_to_total(link_id, clicks, other.last_clicked[link_id])
        for day, of_day in other.per_day.items():
            for link_id, clicks in of_day.items():
                self._add_on_day(day, link_id, clicks)

    def _add_to_total(self, link_id: int, clicks: int, moment: float) -> None:
        self.clicks[link_id] = self.clicks.get(link_id, 0) + clicks
        if link_id not in self.last_clicked or moment > self.last_clicked[link_id]:
            self.last_clicked[link_id] = moment

    def _add_on_day(self, day: date, link_id: int, clicks: int) -> None:
        of_day = self.per_day.get(day)
        if of_day is None:
            of_day = self.per_day[day] = {}
        of_day[link_id] = of_day.get(link_id, 0) + clicks

    def clicks_on_days(self) -> int:
        """Every click counted, limited links' included."""
        return sum(sum(of_day.values()) for of_day in self.per_day.values())


class ClickCounter:
    def __init__(self, *, interval: float | None = None, roll_up_interval: float | None = None):
        self.interval = interval if interval is not None else settings.CLICK_FLUSH_SECONDS
        self.roll_up_interval = (
            roll_up_interval if roll_up_interval is not None else settings.CLICK_ROLLUP_SECONDS
        )
        # This process's journal batches not known to be rolled up, oldest
        # first: when each was written (time.monotonic()) and its last row's
        # id. One that wrote none leaves the roll-up to those that did.
        self._unrolled: deque[tuple[float, int]] = deque()
        # After a roll-up failed: no other attempt before this moment.
        self._no_roll_up_before = 0.0
        # After a roll-up, how much of the database's write-ahead log is to be
        # copied into its file (CHECKPOINT): 0 until the first try tells the
        # log's length then. None: nothing due.
        self._copy_log_to: int | None = None
        self._pending = Tally()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The UTC day of the last click and the seconds it spans: a click's day
        # is found by two comparisons, not a datetime per click.
        self._day: date | None = None
        self._day_starts = self._day_ends = 0.0

    def record(self, link_id: int, *, at: datetime | None = None, already_counted: bool = False) -> None:
        """Count one click of `link_id` (now, or `at`). With `already_counted` (a
        limited link whose click the database took), only the per-day tally is
        added. On every redirect: kept to a clock read and a few dict steps."""
        moment = time.time() if at is None else at.timestamp()
        with self._lock:
            if not self._day_starts <= moment < self._day_ends:
                # POSIX time has no leap seconds: a UTC day starts at a multiple of 86,400.
                self._day_starts = moment - moment % SECONDS_PER_DAY
                self._day_ends = self._day_starts + SECONDS_PER_DAY
                self._day = datetime.fromtimestamp(self._day_starts, UTC).date()
            self._pending.add(link_id, day=self._day, moment=moment, to_total=not already_counted)
        self._ensure_flusher()

    def flush(self) -> int:
        """Write the tally to the database (and roll the journal up when that
        is due); returns the clicks it took from the tally (those of a link
        deleted meanwhile are dropped, by the roll-up on SQLite). On a
        database error the tally is kept for the next attempt."""
        with self._flush_lock:
            taken = self._write_tally()
            if self._copy_log_to is not None:
                self._checkpoint()
            if self._roll_up_due():
                self._roll_up()
            return taken

    def roll_up(self) -> None:
        """Add every click the journal holds to the link counters, now (any
        process's: a worker that crashed leaves its journaled clicks to the
        next roll-up)."""
        with self._flush_lock:
            self._roll_up()

    def roll_up_left_over(self) -> None:
        """At a worker's start (in a thread of its own): what a worker killed
        between its flush and its roll-up left in the journal, so that it shows
        even if no click comes to roll it up."""
        try:
            self.roll_up()
        finally:
            connection.close()

    def _write_tally(self) -> int:
        with self._lock:
            batch, self._pending = self._pending, Tally()
        if not batch:
            return 0
        try:
            journaled_to = _write_batch(batch)
        except Exception:
            kept = batch.clicks_on_days()
            logger.exception("click flush failed; keeping %d clicks for the next try", kept)
            with self._lock:
                self._pending.merge(batch)
            # Start the next attempt on a fresh connection.
            connection.close()
            return 0
        if journaled_to is not None:
            now = time.monotonic()
            if self._unrolled and now < self._no_roll_up_before:
                # Roll-ups failing: one entry for every batch since (its
                # oldest time), so the list stays short however long it lasts.
                self._unrolled[-1] = (self._unrolled[-1][0], journaled_to)
            else:
                self._unrolled.append((now, journaled_to))
        return batch.clicks_on_days()

    def _roll_up_due(self) -> bool:
        """Whether a batch this process journaled is CLICK_ROLLUP_SECONDS old
        and not yet rolled up. A roll-up takes every process's rows, so the
        roll-up of another process since may have taken this one's: the mark
        it left (ROLLED_UP_TO) is asked before a roll-up is run, once a batch
        looks due. So the workers between them roll the journal up about once
        an interval, not each of them once (each roll-up rewrites a counters
        page for nearly every link clicked since the last: under traffic spread
        over many links, every page; docs/performance.md, 2026-12-01)."""
        now = time.monotonic()
        if not self._is_due(now) or now < self._no_roll_up_before:
            return False
        if self.roll_up_interval <= 0:
            return True  # after every batch: nothing to ask
        try:
            rolled_up_to = journal_rolled_up_to()
        except Exception:
            return True  # the roll-up meets the error, and says so
        while self._unrolled and self._unrolled[0][1] <= rolled_up_to:
            self._unrolled.popleft()
        return self._is_due(now)

    def _is_due(self, now: float) -> bool:
        return bool(self._unrolled) and now - self._unrolled[0][0] >= self.roll_up_interval

    def _checkpoint(self) -> None:
        """At the flush after a roll-up, when the reads begun before its commit
        (each within one turn of a worker's event loop) have ended; again at
        each flush until what the log held at the first try is copied. What
        other writers add later is left to SQLite's own checkpoints, so steady
        writes do not keep this one running."""
        try:
            state = checkpoint_database()
        except Exception:
            # The next roll-up's commit and checkpoint try again.
            logger.exception("checkpoint after the click roll-up failed")
            self._copy_log_to = None
            connection.close()
            return
        if state is None:
            return  # it could not run now: the next flush's turn
        in_log, copied = state
        self._copy_log_to = self._copy_log_to or in_log
        # The log starts over only once everything in it was copied.
        if copied >= self._copy_log_to or in_log < self._copy_log_to:
            self._copy_log_to = None

    def _roll_up(self) -> None:
        try:
            if roll_up_journal():
                self._copy_log_to = 0
            # Every batch this process wrote is in it: a flush and a roll-up
            # of one process never run at once (_flush_lock).
            self._unrolled.clear()
        except Exception:
            # The journal keeps the clicks: the next roll-up, of any worker, adds them.
            logger.exception("click journal roll-up failed; its clicks wait for the next one")
            self._no_roll_up_before = time.monotonic() + self.roll_up_interval
            if self._unrolled:
                # Every batch is due: one entry stands for them all.
                self._unrolled = deque([(self._unrolled[0][0], self._unrolled[-1][1])])
            connection.close()

    def _ensure_flusher(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="click-flusher", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.flush()
        finally:
            # The thread's own connection, kept open between flushes.
            connection.close()

    def shutdown(self) -> None:
        """Stop the background thread, write what is left and roll the
        journal up: a stopped site shows every click."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()
        if self._unrolled:
            # Its pages are copied when the process's last connection to the
            # database closes (SQLite's checkpoint then).
            self.roll_up()


# Increments, not absolute values: other worker processes write too. Into the
# narrow links_linkclicks table, not the wide link rows (models.LinkClicks): one
# row per link and day, adding to the link's total and to the day the row keeps
# (when the day changes, the database moves the count the row held into
# DailyClicks: links/triggers.py, DAY_MOVED). A link's row is made at its first
# click; links deleted since their clicks were counted are skipped. Names are
# qualified: PostgreSQL finds bare ones ambiguous (the row or excluded).
ADD_TO_COUNTERS = (
    "ON CONFLICT (link_id) DO UPDATE SET clicks = links_linkclicks.clicks + excluded.clicks, "
    "last_clicked_at = CASE WHEN links_linkclicks.last_clicked_at IS NULL "
    "OR links_linkclicks.last_clicked_at < excluded.last_clicked_at "
    "THEN excluded.last_clicked_at ELSE links_linkclicks.last_clicked_at END, "
    "latest_day_clicks = CASE WHEN links_linkclicks.latest_day = excluded.latest_day "
    "THEN links_linkclicks.latest_day_clicks + excluded.latest_day_clicks "
    "ELSE excluded.latest_day_clicks END, "
    "latest_day = excluded.latest_day"
)
COUNTER_COLUMNS = "links_linkclicks (link_id, clicks, last_clicked_at, latest_day, latest_day_clicks)"

# PostgreSQL: one upsert per row (ON CONFLICT is safe against another
# replica's flush inserting the same row at the same moment).
COUNTER_UPSERT = (
    f"INSERT INTO {COUNTER_COLUMNS} SELECT id, %s, %s, %s, %s FROM links_link "  # noqa: S608 - constants
    f"WHERE id = %s {ADD_TO_COUNTERS}"
)

# SQLite: the journal, a file of its own beside the database (shortener.sqlite3:
# shortener-clicks.sqlite3), attached to every connection as the schema
# `clicks` (attach_journal). A commit in the database makes every reader of it
# (the fast path's, in each worker) drop its pages and its map of the file;
# a flush's commit now goes to the journal's file alone, so they see one a
# roll-up instead of one a flush (docs/performance.md, "Session of
# 2026-11-30, fourth"). No foreign key: an append reads no link row; the roll-up skips
# links deleted since.
JOURNAL_EXISTS = "SELECT 1 FROM clicks.sqlite_master WHERE name = 'links_clickjournal'"
JOURNAL_TABLE = (
    "CREATE TABLE clicks.links_clickjournal (id integer NOT NULL PRIMARY KEY AUTOINCREMENT, "
    "link_id bigint NOT NULL, clicks bigint NOT NULL, last_clicked_at datetime NULL, "
    "day date NOT NULL, day_clicks bigint NOT NULL)"
)
# The journal numbers its rows on from the last one rolled up, which a roll-up
# skips: checked as a connection attaches it, for a journal made anew (a first
# start, its file lost) or left behind the database (a backup of the database
# restored, the journal's last commits lost with the power while the
# database's were kept).
ROLL_UP_TABLE_EXISTS = "SELECT 1 FROM main.sqlite_master WHERE name = 'links_clickrollup'"
JOURNAL_NUMBERED_TO = (
    "SELECT coalesce((SELECT seq FROM clicks.sqlite_sequence WHERE name = 'links_clickjournal'), 0)"
)
JOURNAL_NUMBERING_FORGOTTEN = "DELETE FROM clicks.sqlite_sequence WHERE name = 'links_clickjournal'"
JOURNAL_NUMBERED_FROM = "INSERT INTO clicks.sqlite_sequence (name, seq) VALUES ('links_clickjournal', ?)"
# A flush appends its batch in a few statements of many rows each (VALUES
# lists of JOURNAL_ROWS_PER_STATEMENT rows, the rest in lists of powers of two
# below it: a handful of statement texts, each compiled once a connection), in
# one transaction of the journal's file alone (a savepoint: BEGIN IMMEDIATE
# would take the database's write lock too). Pages in proportion to the
# batch, all at the end of one table, and the interpreter lock let go once a
# statement (executemany lets it go at each row, and the request thread and
# the flusher then hand it back and forth). 1.15 µs a row, parameters
# included, against 2.85 µs for the JSON array the rows were sent in before,
# its text made in Python and read by SQLite's json_each (docs/performance.md,
# 2026-12-02, second session).
JOURNAL_ROWS_PER_STATEMENT = 512
JOURNAL_SAVEPOINT = "click_flush"


@cache
def journal_append(row_count: int) -> str:
    """The statement appending `row_count` rows (CounterRow) to the journal,
    with the sqlite3 module's own placeholders."""
    rows = ", ".join(["(?, ?, ?, ?, ?)"] * row_count)
    return (
        "INSERT INTO clicks.links_clickjournal (clicks, last_clicked_at, day, day_clicks, link_id) "  # noqa: S608 - constants
        f"VALUES {rows}"
    )


def journal_statements(rows: list["CounterRow"], *, most_rows: int) -> Iterator[tuple[str, list]]:
    """The statements and parameters appending `rows`: as many lists of
    `most_rows` rows (a power of two) as fit, then the rest by halves."""
    start, size = 0, most_rows
    while start < len(rows):
        while size > len(rows) - start:
            size //= 2
        yield journal_append(size), [value for row in rows[start : start + size] for value in row]
        start += size


def append_to_journal(database: sqlite3.Connection, rows: list["CounterRow"]) -> int:
    """Append `rows` to the journal attached to `database` (the sqlite3
    connection itself: Django's cursor rewrites every statement's %s into ?
    with a regular expression, 0.8 µs a row at 512 rows a statement) in one
    transaction, or in the caller's; the id of the last row. Its rows are
    numbered on from every row before them (AUTOINCREMENT)."""
    # SQLite before 3.32 takes 999 parameters a statement, later ones 32,766.
    rows_allowed = database.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(rows[0])
    most_rows = min(JOURNAL_ROWS_PER_STATEMENT, 1 << (rows_allowed.bit_length() - 1))
    cursor = database.cursor()
    try:
        cursor.execute(f"SAVEPOINT {JOURNAL_SAVEPOINT}")
        try:
            for statement, parameters in journal_statements(rows, most_rows=most_rows):
                cursor.execute(statement, parameters)
        except Exception:
            cursor.execute(f"ROLLBACK TO {JOURNAL_SAVEPOINT}")
            cursor.execute(f"RELEASE {JOURNAL_SAVEPOINT}")
            raise
        last_row = cursor.lastrowid
        cursor.execute(f"RELEASE {JOURNAL_SAVEPOINT}")
        return last_row
    finally:
        cursor.close()


# The roll-up, in one write transaction of the database: the journal's rows
# after the last one rolled up (models.ClickRollUp), each day in turn, oldest
# first (so the latest stays in the counters row: DAY_MOVED), one row per link,
# in link order, so each counters page is written once for all the clicks of
# its links (in the journal's order, twice the time: docs/performance.md).
# Whether the link is still there is asked once a link, of the narrow counters
# table first, so a link clicked before costs no read of its wide row. The
# rows rolled up are deleted from the journal once that has committed.
JOURNAL_LAST_ROW = "SELECT max(id) FROM clicks.links_clickjournal"
# 0 with no row: none made yet, or a test's flush of the tables took it.
ROLLED_UP_TO = "SELECT coalesce((SELECT last_row FROM links_clickrollup WHERE id = 1), 0)"
JOURNAL_DAYS = "SELECT DISTINCT day FROM clicks.links_clickjournal WHERE id > %s AND id <= %s ORDER BY day"
ROLL_UP_DAY = (
    f"INSERT INTO {COUNTER_COLUMNS} "  # noqa: S608 - constants
    "SELECT link_id, sum(clicks), max(last_clicked_at), day, sum(day_clicks) "
    "FROM clicks.links_clickjournal AS journal WHERE id > %s AND id <= %s AND day = %s GROUP BY link_id "
    "HAVING EXISTS (SELECT 1 FROM links_linkclicks WHERE link_id = journal.link_id) "
    f"OR EXISTS (SELECT 1 FROM links_link WHERE id = journal.link_id) {ADD_TO_COUNTERS}"
)
MARK_ROLLED_UP = (
    "INSERT INTO links_clickrollup (id, last_row) VALUES (1, %s) "
    "ON CONFLICT (id) DO UPDATE SET last_row = excluded.last_row"
)
DELETE_ROLLED_UP = "DELETE FROM clicks.links_clickjournal WHERE id <= %s"
# A roll-up's pages copied from the database's write-ahead log into its file.
# SQLite's own checkpoint, at the roll-up's commit, may not copy a page that a
# read begun before the commit could still need, and under traffic some
# worker's redirect reader nearly always has such a read under way: each
# roll-up's pages then stayed in the log, the next one's went after them, and
# the log grew by a roll-up's pages every roll-up for as long as the traffic
# lasted (54 MB every 10 s at 1,000,000 links; docs/performance.md,
# 2026-12-01, second). Once every page is copied the next writer starts the
# log over, and readers read the file alone. PASSIVE: it waits for no reader
# and no writer, and copies what it may.
CHECKPOINT = "PRAGMA main.wal_checkpoint(PASSIVE)"


# What a flush adds to one link's counters for one day of clicks, in the order
# of COUNTER_UPSERT's and journal_append's parameters: the clicks to add to the
# link's total, its last click (as the connection takes it: datetime_parameter),
# the day, the clicks on that day, and the link's id. A plain tuple: a NamedTuple
# is built by a function in Python, and a flush builds one a link (counter_rows).
CounterRow = tuple[int, str | datetime | None, str, int, int]


def datetime_parameter() -> Callable[[float], object]:
    """Seconds since the epoch as the connection's parameter for a datetime
    column: what Django's adapter makes of the aware datetime. On SQLite (no
    time zones) that is the naive time in the connection's zone as text; each
    second's text is made once (by the adapter) and the microseconds added as
    datetime.fromtimestamp rounds them: 0.4 µs a value instead of 1.45, most of
    what a flush did under the interpreter lock (docs/performance.md,
    2026-11-30, third session)."""
    as_db_datetime = connection.ops.adapt_datetimefield_value
    if connection.features.supports_timezones:
        return lambda moment: as_db_datetime(datetime.fromtimestamp(moment, UTC))
    zone = connection.timezone
    texts_of_seconds: dict[int, str] = {}

    def as_text(moment: float) -> str:
        second = math.floor(moment)
        # Half to even, as fromtimestamp; a zone's offset changes only on a whole second.
        micro = round((moment - second) * 1_000_000)
        if micro == 1_000_000:
            second, micro = second + 1, 0
        text = texts_of_seconds.get(second)
        if text is None:
            text = as_db_datetime(datetime.fromtimestamp(second, zone).replace(tzinfo=None))
            texts_of_seconds[second] = text
        # Django's text (str of a datetime) leaves out a fraction of zero.
        return f"{text}.{micro:06d}" if micro else text

    return as_text


def counter_rows(batch: Tally) -> list[CounterRow]:
    """One row per link and day, in that order: B-tree pages are visited once
    each, in sequence (measured: about a third faster for batches spread over
    many links), and a link's days arrive oldest first. The total and the last
    click go with a link's first row; a limited link has none (the database
    took its clicks: services.take_limited_click). Made once a flush for every
    link clicked, so kept plain: about 1 µs a row with its JSON, from 6-10
    (docs/performance.md, 2026-11-30, second, third and seventh sessions)."""
    as_parameter = datetime_parameter()
    day_texts = {day: day.isoformat() for day in batch.per_day}
    totals, last_clicked = batch.clicks, batch.last_clicked
    rows: list[CounterRow] = []
    previous_link = None
    for link_id, day, day_clicks in sorted(
        (link_id, day, clicks) for day, of_day in batch.per_day.items() for link_id, clicks in of_day.items()
    ):
        if link_id == previous_link:
            rows.append((0, None, day_texts[day], day_clicks, link_id))
            continue
        previous_link = link_id
        moment = last_clicked.get(link_id)
        last_clicked_at = None if moment is None else as_parameter(moment)
        total = totals.get(link_id, 0)
        rows.append((total, last_clicked_at, day_texts[day], day_clicks, link_id))
    return rows


def journal_file(connection) -> Path | None:
    """The click journal's file of a connection's database (None: the flush
    adds to the counters itself, as on PostgreSQL, whose replicas' upserts are
    safe side by side; and for an SQLite database in memory, with no folder)."""
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        return None
    database = Path(connection.settings_dict["NAME"])
    return database.with_name(f"{database.stem}-clicks{database.suffix}")


def journals_clicks() -> bool:
    """Whether this connection's flush appends to the journal (SQLite, one
    writer at a time, where a counters page a click was the flush's cost)."""
    return journal_file(connection) is not None


def attach_journal(sender, connection, **kwargs) -> None:
    """On every new connection to an SQLite file (Django's connection_created,
    links.apps): the journal's file attached. An ATTACH cannot run inside a
    transaction, and a flush or a roll-up may come inside one (a test's, or
    services.update_link's)."""
    path = journal_file(connection)
    if path is not None:
        attach_journal_file(connection.connection, path)


def attach_journal_file(database: sqlite3.Connection, path: Path) -> None:
    """`path` attached to `database` (in autocommit) as the schema `clicks`,
    its table made if need be, numbering on from the last row rolled up."""
    database.execute("ATTACH DATABASE ? AS clicks", (str(path),))
    database.execute("PRAGMA clicks.synchronous = NORMAL")
    made = database.execute(JOURNAL_EXISTS).fetchone()
    if made and _numbering_behind(database) is None:
        return
    if not made:
        # Kept in the file: once, before the transaction (WAL cannot be set inside one).
        database.execute("PRAGMA clicks.journal_mode = WAL")
    database.execute("BEGIN IMMEDIATE")
    try:
        if not database.execute(JOURNAL_EXISTS).fetchone():
            database.execute(JOURNAL_TABLE)
        rolled_up_to = _numbering_behind(database)
        if rolled_up_to is not None:
            database.execute(JOURNAL_NUMBERING_FORGOTTEN)
            database.execute(JOURNAL_NUMBERED_FROM, (rolled_up_to,))
        database.execute("COMMIT")
    except BaseException:
        if database.in_transaction:
            database.execute("ROLLBACK")
        raise


def _numbering_behind(database: sqlite3.Connection) -> int | None:
    """The last row rolled up when the journal's numbering is behind it (its
    next row would be skipped), else None (before migration 0006 there is no
    such row: any number does)."""
    if not database.execute(ROLL_UP_TABLE_EXISTS).fetchone():
        return None
    (rolled_up_to,) = database.execute(ROLLED_UP_TO).fetchone()
    (numbered_to,) = database.execute(JOURNAL_NUMBERED_TO).fetchone()
    return rolled_up_to if numbered_to < rolled_up_to else None


def _write_batch(batch: Tally) -> int | None:
    """The id of the batch's last row in the journal (None: it went to the
    counters, not to a journal)."""
    rows = counter_rows(batch)
    if journals_clicks():
        connection.ensure_connection()
        return append_to_journal(connection.connection, rows)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(COUNTER_UPSERT, rows)
    return None


def journal_rolled_up_to() -> int:
    """The journal's last row added to the counters so far, by any process."""
    with connection.cursor() as cursor:
        cursor.execute(ROLLED_UP_TO)
        (rolled_up_to,) = cursor.fetchone()
    return rolled_up_to


def roll_up_journal() -> bool:
    """Add the journal's clicks to the counters and empty it (nothing to do
    where the flush writes the counters: there is no journal); whether it
    wrote to the database."""
    if not journals_clicks():
        return False
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(JOURNAL_LAST_ROW)
        (last_row,) = cursor.fetchone()
        if last_row is None:
            return False
        rolled_up_to = journal_rolled_up_to()
        wrote = last_row > rolled_up_to
        if wrote:
            cursor.execute(JOURNAL_DAYS, [rolled_up_to, last_row])
            for (day,) in cursor.fetchall():
                cursor.execute(ROLL_UP_DAY, [rolled_up_to, last_row, day])
            cursor.execute(MARK_ROLLED_UP, [last_row])
        # After the outermost commit (the journal is another file, committed
        # apart): a failure leaves rows the next roll-up skips and deletes.
        transaction.on_commit(partial(_delete_rolled_up, last_row), robust=True)
        return wrote


def checkpoint_database() -> tuple[int, int] | None:
    """Copy what it may of the database's write-ahead log into its file
    (CHECKPOINT): the frames in the log and how many of them are copied; None
    when it cannot run now (inside a transaction, or another checkpoint under way)."""
    if connection.in_atomic_block:
        return None
    with connection.cursor() as cursor:
        cursor.execute(CHECKPOINT)
        busy, in_log, copied = cursor.fetchone()
    return None if busy else (in_log, copied)


def _delete_rolled_up(last_row: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(DELETE_ROLLED_UP, [last_row])


click_counter = ClickCounter()
atexit.register(click_counter.shutdown)
