"""Click counting off the request path.

1. A redirect only adds to an in-memory tally (`ClickCounter.record`).
2. About once a second a background thread appends the tally to the
   `ClickLog` table: one row per link and day, in one transaction. The table
   has no index but its key, so a flush writes a few sequential pages however
   many different links it touches.
3. Every `COMPACT_INTERVAL_SECONDS` (and whenever exact figures are read: the
   management API, the admin) `compact_clicks` moves the log into
   `Link.clicks`, `Link.last_clicked_at` and `DailyClicks` with three
   set-based statements, so a link clicked a thousand times is updated once.

A graceful stop (SIGTERM, `docker compose stop`/`down`: ASGI lifespan
shutdown, or interpreter exit) flushes and compacts what is left. What a crash
can lose: the clicks of at most the last flush interval (about a second) of the
crashed worker process (SIGKILL, out-of-memory kill, power loss); what already
reached the log is kept.

Links with `max_clicks` are the exception: their click is taken in the
database inside the request (see `services.take_limited_click`), because the
limit must hold exactly across worker processes; only their per-day tally goes
through the log.
"""

import atexit
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)


@dataclass
class PendingClicks:
    # Clicks to add to Link.clicks (not those the database already took).
    clicks: int = 0
    last_clicked_at: datetime | None = None
    # Every click, by UTC day, for DailyClicks.
    per_day: Counter = field(default_factory=Counter)

    def merge(self, other: "PendingClicks") -> None:
        self.clicks += other.clicks
        if other.last_clicked_at and (
            self.last_clicked_at is None or other.last_clicked_at > self.last_clicked_at
        ):
            self.last_clicked_at = other.last_clicked_at
        self.per_day.update(other.per_day)


class ClickCounter:
    def __init__(self, *, interval: float | None = None, compact_interval: float | None = None):
        self.interval = interval or settings.CLICK_FLUSH_SECONDS
        self.compact_interval = compact_interval or settings.CLICK_COMPACT_SECONDS
        self._pending: dict[int, PendingClicks] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_compaction = time.monotonic()

    def record(self, link_id: int, *, at: datetime | None = None, already_counted: bool = False) -> None:
        """Count one click of `link_id`. With `already_counted` (a limited link whose
        click the database took), only the per-day tally is added."""
        at = at or timezone.now()
        with self._lock:
            pending = self._pending.get(link_id)
            if pending is None:
                pending = self._pending[link_id] = PendingClicks()
            if not already_counted:
                pending.clicks += 1
                pending.last_clicked_at = at
            pending.per_day[at.date()] += 1
        self._ensure_flusher()

    @property
    def pending_count(self) -> int:
        with self._lock:
            return sum(sum(p.per_day.values()) for p in self._pending.values())

    def flush(self) -> int:
        """Append the tally to the click log; returns the clicks written. On a
        database error the tally is kept for the next attempt."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return 0
            try:
                _append_to_log(batch)
            except Exception:
                logger.exception("click flush failed; keeping %d links' clicks for the next try", len(batch))
                with self._lock:
                    for link_id, pending in batch.items():
                        self._pending.setdefault(link_id, PendingClicks()).merge(pending)
                return 0
            return sum(sum(p.per_day.values()) for p in batch.values())

    def settle(self) -> None:
        """Flush this process's tally and compact the log: every click counted so
        far (by this process, and by others up to their last flush) is in Link
        and DailyClicks."""
        self.flush()
        compact_clicks()

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
                if time.monotonic() - self._last_compaction >= self.compact_interval:
                    self._last_compaction = time.monotonic()
                    try:
                        compact_clicks()
                    except Exception:
                        logger.exception("click log compaction failed; the log is kept for the next try")
        finally:
            # This thread's own database connection.
            connection.close()

    def shutdown(self) -> None:
        """Stop the background thread, write what is left and compact. A process
        that counted no click (a management command, say) touches nothing."""
        if self._thread is None or self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self.settle()
        except Exception:
            # At exit there is no one to raise to: say what was lost.
            logger.exception("could not write %d pending clicks at shutdown", self.pending_count)


def _append_to_log(batch: dict[int, PendingClicks]) -> None:
    as_db_datetime = connection.ops.adapt_datetimefield_value
    rows = []
    for link_id, pending in batch.items():
        # Link.clicks and last_clicked_at ride on the row of the latest day.
        latest_day = max(pending.per_day)
        for day, count in pending.per_day.items():
            is_latest = day == latest_day
            rows.append(
                (
                    link_id,
                    day.isoformat(),
                    count,
                    pending.clicks if is_latest else 0,
                    as_db_datetime(pending.last_clicked_at) if is_latest and pending.clicks else None,
                )
            )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO links_clicklog (link_id, day, clicks, link_clicks, last_clicked_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            rows,
        )


def compact_clicks() -> int:
    """Move the click log into Link and DailyClicks; returns the log rows moved.
    Safe to run from several processes at once: each takes the rows that
    exist when its write transaction starts."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT MAX(id), COUNT(*) FROM links_clicklog")
        top, rows = cursor.fetchone()
        if top is None:
            return 0
        # Increments, not absolute values: other worker processes write too.
        cursor.execute(
            "UPDATE links_link SET clicks = links_link.clicks + log.link_clicks, "
            "last_clicked_at = CASE WHEN log.last IS NOT NULL AND (links_link.last_clicked_at IS NULL "
            "OR links_link.last_clicked_at < log.last) THEN log.last ELSE links_link.last_clicked_at END "
            "FROM (SELECT link_id, SUM(link_clicks) AS link_clicks, MAX(last_clicked_at) AS last "
            "      FROM links_clicklog WHERE id <= %s GROUP BY link_id) AS log "
            "WHERE links_link.id = log.link_id",
            [top],
        )
        # The join skips links deleted since their clicks were counted.
        cursor.execute(
            "INSERT INTO links_dailyclicks (link_id, day, count) "
            "SELECT log.link_id, log.day, SUM(log.clicks) FROM links_clicklog AS log "
            "JOIN links_link ON links_link.id = log.link_id WHERE log.id <= %s "
            "GROUP BY log.link_id, log.day "
            "ON CONFLICT (link_id, day) DO UPDATE SET count = count + excluded.count",
            [top],
        )
        cursor.execute("DELETE FROM links_clicklog WHERE id <= %s", [top])
    return rows


click_counter = ClickCounter()
atexit.register(click_counter.shutdown)
