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
from datetime import UTC, date, datetime

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
# narrow links_linkclicks table, not the wide link rows (models.LinkClicks); a
# link's row is made at its first click, and links deleted since their clicks
# were counted are skipped. Names are qualified: PostgreSQL finds bare ones
# ambiguous (the row or excluded).
#
# PostgreSQL: one upsert per link (ON CONFLICT is safe against another
# replica's flush inserting the same row at the same moment).
COUNTER_UPSERT = (
    "INSERT INTO links_linkclicks (link_id, clicks, last_clicked_at) "
    "SELECT id, %s, %s FROM links_link WHERE id = %s "
    "ON CONFLICT (link_id) DO UPDATE SET clicks = links_linkclicks.clicks + excluded.clicks, "
    "last_clicked_at = CASE WHEN links_linkclicks.last_clicked_at IS NULL "
    "OR links_linkclicks.last_clicked_at < excluded.last_clicked_at "
    "THEN excluded.last_clicked_at ELSE links_linkclicks.last_clicked_at END"
)
# SQLite: which of the batch's links have a row already (one statement, the
# ids as one JSON array), then a plain UPDATE of those and an insert of the
# rest, so a link clicked before costs no read of its wide row (measured:
# bench/flush_cost.py). Safe because SQLite's flush transaction is the only
# writer from its start (BEGIN IMMEDIATE): no row can appear in between.
COUNTERS_PRESENT = "SELECT link_id FROM links_linkclicks WHERE link_id IN (SELECT value FROM json_each(%s))"
COUNTER_UPDATE = (
    "UPDATE links_linkclicks SET clicks = clicks + %s, last_clicked_at = CASE "
    "WHEN last_clicked_at IS NULL OR last_clicked_at < %s THEN %s ELSE last_clicked_at END "
    "WHERE link_id = %s"
)
COUNTER_INSERT = (
    "INSERT INTO links_linkclicks (link_id, clicks, last_clicked_at) "
    "SELECT id, %s, %s FROM links_link WHERE id = %s"
)
# After the counters in the same transaction, a link's counters row exists iff
# the link does (a limited link's was made by take_limited_click), so the
# narrow table answers "does it still exist?" instead of the wide one.
DAILY_UPSERT = (
    "INSERT INTO links_dailyclicks (link_id, day, count) "
    "SELECT link_id, %s, %s FROM links_linkclicks WHERE link_id = %s "
    "ON CONFLICT (link_id, day) DO UPDATE SET count = links_dailyclicks.count + excluded.count"
)


def _write_batch(batch: Tally) -> None:
    as_db_datetime = connection.ops.adapt_datetimefield_value
    # In key order, so the B-tree pages are visited once each, in sequence
    # (measured: about a third faster for batches spread over many links).
    counted = [
        (link_id, clicks, as_db_datetime(datetime.fromtimestamp(batch.last_clicked[link_id], UTC)))
        for link_id, clicks in sorted(batch.clicks.items())
    ]
    daily_rows = [
        (day.isoformat(), clicks, link_id)
        for link_id, day, clicks in sorted(
            (link_id, day, clicks)
            for day, of_day in batch.per_day.items()
            for link_id, clicks in of_day.items()
        )
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(COUNTERS_PRESENT, [json.dumps([link_id for link_id, _, _ in counted])])
            present = {link_id for (link_id,) in cursor.fetchall()}
            cursor.executemany(
                COUNTER_UPDATE, [(n, at, at, link_id) for link_id, n, at in counted if link_id in present]
            )
            cursor.executemany(
                COUNTER_INSERT, [(n, at, link_id) for link_id, n, at in counted if link_id not in present]
            )
        else:
            cursor.executemany(COUNTER_UPSERT, [(n, at, link_id) for link_id, n, at in counted])
        cursor.executemany(DAILY_UPSERT, daily_rows)


click_counter = ClickCounter()
atexit.register(click_counter.shutdown)
