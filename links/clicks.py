"""Click counting off the request path.

A redirect only adds to an in-memory tally; a background thread writes the
tally to the database about once a second, in one transaction, and once more
when the process shuts down (ASGI lifespan shutdown, or interpreter exit).

What a crash can lose: the clicks of at most the last flush interval in the
crashed worker process (SIGKILL, out-of-memory kill, power loss). A graceful
stop (SIGTERM, `docker compose stop`/`down`) loses nothing.

Links with `max_clicks` are the exception: their click is taken in the
database inside the request (see `services.take_limited_click`), because the
limit must hold exactly across worker processes; only their per-day tally is
batched.
"""

import atexit
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import NamedTuple

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
    def __init__(self, *, interval: float | None = None):
        self.interval = interval if interval is not None else settings.CLICK_FLUSH_SECONDS
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
        """Write the tally to the database; returns the clicks it took from the
        tally (those of a link deleted meanwhile are dropped, not written). On a
        database error the tally is kept for the next attempt."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, Tally()
            if not batch:
                return 0
            try:
                _write_batch(batch)
            except Exception:
                kept = batch.clicks_on_days()
                logger.exception("click flush failed; keeping %d clicks for the next try", kept)
                with self._lock:
                    self._pending.merge(batch)
                # Start the next attempt on a fresh connection.
                connection.close()
                return 0
            return batch.clicks_on_days()

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
        """Stop the background thread and write what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()


# Increments, not absolute values: other worker processes write too. Into the
# narrow links_linkclicks table, not the wide link rows (models.LinkClicks): one
# row per link and day of the batch, adding to the link's total and to the day
# the row keeps (when the day changes, the database moves the count the row
# held into DailyClicks: links/triggers.py, DAY_MOVED). A link's row is made at
# its first click; links deleted since their clicks were counted are skipped.
# Names are qualified: PostgreSQL finds bare ones ambiguous (the row or
# excluded).
#
# PostgreSQL: one upsert per row (ON CONFLICT is safe against another
# replica's flush inserting the same row at the same moment).
COUNTER_UPSERT = (
    "INSERT INTO links_linkclicks (link_id, clicks, last_clicked_at, latest_day, latest_day_clicks) "
    "SELECT id, %s, %s, %s, %s FROM links_link WHERE id = %s "
    "ON CONFLICT (link_id) DO UPDATE SET clicks = links_linkclicks.clicks + excluded.clicks, "
    "last_clicked_at = CASE WHEN links_linkclicks.last_clicked_at IS NULL "
    "OR links_linkclicks.last_clicked_at < excluded.last_clicked_at "
    "THEN excluded.last_clicked_at ELSE links_linkclicks.last_clicked_at END, "
    "latest_day_clicks = CASE WHEN links_linkclicks.latest_day = excluded.latest_day "
    "THEN links_linkclicks.latest_day_clicks + excluded.latest_day_clicks "
    "ELSE excluded.latest_day_clicks END, "
    "latest_day = excluded.latest_day"
)
# SQLite: which of the batch's links have a row already (one statement, the
# ids as one JSON array), then an insert of the others' first rows and a plain
# UPDATE for every other row, so a link clicked before costs no read of its
# wide row (measured: bench/flush_cost.py). Safe because SQLite's flush
# transaction is the only writer from its start (BEGIN IMMEDIATE): no row can
# appear in between.
COUNTERS_PRESENT = "SELECT link_id FROM links_linkclicks WHERE link_id IN (SELECT value FROM json_each(%s))"
COUNTER_INSERT = (
    "INSERT INTO links_linkclicks (link_id, clicks, last_clicked_at, latest_day, latest_day_clicks) "
    "SELECT id, %s, %s, %s, %s FROM links_link WHERE id = %s"
)
COUNTER_UPDATE = (
    "UPDATE links_linkclicks SET clicks = clicks + %s, last_clicked_at = CASE "
    "WHEN last_clicked_at IS NULL OR last_clicked_at < %s THEN %s ELSE last_clicked_at END, "
    "latest_day_clicks = CASE WHEN latest_day = %s THEN latest_day_clicks + %s ELSE %s END, "
    "latest_day = %s WHERE link_id = %s"
)


class CounterRow(NamedTuple):
    """What a flush adds to one link's counters for one day of clicks."""

    link_id: int
    clicks: int  # to the link's total
    last_clicked_at: str | datetime | None  # as the connection takes it (datetime_parameter)
    day: str
    day_clicks: int
    first_of_link: bool

    def insert_params(self) -> tuple:
        """COUNTER_INSERT's and COUNTER_UPSERT's parameters."""
        return (self.clicks, self.last_clicked_at, self.day, self.day_clicks, self.link_id)

    def update_params(self) -> tuple:
        """COUNTER_UPDATE's parameters."""
        at, day, day_clicks = self.last_clicked_at, self.day, self.day_clicks
        return (self.clicks, at, at, day, day_clicks, day_clicks, day, self.link_id)


def datetime_parameter() -> Callable[[float], object]:
    """Seconds since the epoch as the connection's parameter for a datetime
    column: what Django's adapter makes of the aware datetime. On SQLite (no
    time zones) it is made in the connection's zone and given to the adapter
    naive, so the adapter has nothing to convert: 1 µs a value instead of 3.5."""
    as_db_datetime = connection.ops.adapt_datetimefield_value
    if connection.features.supports_timezones:
        return lambda moment: as_db_datetime(datetime.fromtimestamp(moment, UTC))
    zone = connection.timezone
    return lambda moment: as_db_datetime(datetime.fromtimestamp(moment, zone).replace(tzinfo=None))


def counter_rows(batch: Tally) -> list[CounterRow]:
    """One row per link and day, in that order: B-tree pages are visited once
    each, in sequence (measured: about a third faster for batches spread over
    many links), and a link's days arrive oldest first. The total and the last
    click go with a link's first row; a limited link has none (the database
    took its clicks: services.take_limited_click). Made once a flush for every
    link clicked, so kept plain: about 4 µs a row, from 6-10 (docs/performance.md,
    2026-11-30, second session)."""
    as_parameter = datetime_parameter()
    day_texts = {day: day.isoformat() for day in batch.per_day}
    totals, last_clicked = batch.clicks, batch.last_clicked
    rows: list[CounterRow] = []
    previous_link = None
    for link_id, day, day_clicks in sorted(
        (link_id, day, clicks) for day, of_day in batch.per_day.items() for link_id, clicks in of_day.items()
    ):
        if link_id == previous_link:
            rows.append(CounterRow(link_id, 0, None, day_texts[day], day_clicks, False))
            continue
        previous_link = link_id
        moment = last_clicked.get(link_id)
        last_clicked_at = None if moment is None else as_parameter(moment)
        total = totals.get(link_id, 0)
        rows.append(CounterRow(link_id, total, last_clicked_at, day_texts[day], day_clicks, True))
    return rows


def made_and_updated(
    rows: list[CounterRow], *, present: set[int]
) -> tuple[list[CounterRow], list[CounterRow]]:
    """SQLite's flush: the rows that make a counters row (a link's first, unless
    the link has one: `present`) and the rows that update one (all others, run
    after the inserts)."""
    made: list[CounterRow] = []
    updated: list[CounterRow] = []
    for row in rows:
        (made if row.first_of_link and row.link_id not in present else updated).append(row)
    return made, updated


def _write_batch(batch: Tally) -> None:
    rows = counter_rows(batch)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(COUNTERS_PRESENT, [json.dumps([row.link_id for row in rows if row.first_of_link])])
            made, updated = made_and_updated(rows, present={link_id for (link_id,) in cursor.fetchall()})
            cursor.executemany(COUNTER_INSERT, [row.insert_params() for row in made])
            cursor.executemany(COUNTER_UPDATE, [row.update_params() for row in updated])
        else:
            cursor.executemany(COUNTER_UPSERT, [row.insert_params() for row in rows])


click_counter = ClickCounter()
atexit.register(click_counter.shutdown)
