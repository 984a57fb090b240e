"""What one click flush costs, in-process (no HTTP), on a real SQLite file of
LINKS links seeded by `manage.py seed_links`: a batch of BATCH clicks (a second
of a busy worker's redirects) over uniformly random links and over a Zipf mix
(s = 1.1), written by each variant of the flush SQL in turn, interleaved in one
run, each on its own copy of the seeded file. Every flush is timed whole:
statements, commit and the WAL checkpoint the commit may run; a thread beside
the flush notes the longest it was kept waiting for the interpreter lock (what
a worker's event loop suffers). Read the times as ratios within one run.

    DJANGO_DEBUG=1 .venv/bin/python bench/flush_cost.py [--links 1000000] [--batch 8000]

`--data DIR` keeps the seeded file in DIR and reuses it next time (seeding
1,000,000 links takes minutes).
"""

import argparse
import json
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.inprocess import setup_django


def site_pragmas() -> list[str]:
    """The PRAGMAs of the site's own connections (shortener_site/settings.py)."""
    from django.conf import settings

    init_command = settings.DATABASES["default"]["OPTIONS"]["init_command"]
    return [pragma for pragma in init_command.split(";") if pragma.strip()]


# The flush before issue 15's session of 2026-11-29: increments on the wide link rows.
WIDE_LINK_UPDATE = (
    "UPDATE links_link SET clicks = clicks + ?, last_clicked_at = CASE "
    "WHEN last_clicked_at IS NULL OR last_clicked_at < ? THEN ? ELSE last_clicked_at END "
    "WHERE id = ?"
)
WIDE_DAILY_UPSERT = (
    "INSERT INTO links_dailyclicks (link_id, day, count) "
    "SELECT id, ?, ? FROM links_link WHERE id = ? "
    "ON CONFLICT (link_id, day) DO UPDATE SET count = links_dailyclicks.count + excluded.count"
)
# The wide rows as they were before migration 0003 (every row rewritten with the columns).
WIDE_COLUMNS = (
    "ALTER TABLE links_link ADD COLUMN clicks bigint NOT NULL DEFAULT 0",
    "ALTER TABLE links_link ADD COLUMN last_clicked_at datetime NULL",
    "UPDATE links_link SET clicks = 0, last_clicked_at = NULL",
)
# Every link clicked before: the counters table at its largest.
EVERY_LINK_COUNTED = ("INSERT INTO links_linkclicks (link_id, clicks) SELECT id, 0 FROM links_link",)
# The first try, dropped: the counters table with Django's own "bigint" key (a
# key index beside the rowid table) and one upsert per link, which reads the
# wide row of every link to skip deleted ones.
BIGINT_KEY = (
    "DROP TABLE links_linkclicks",
    'CREATE TABLE "links_linkclicks" ("link_id" bigint NOT NULL PRIMARY KEY REFERENCES "links_link" ("id") '
    'DEFERRABLE INITIALLY DEFERRED, "clicks" bigint unsigned NOT NULL CHECK ("clicks" >= 0), '
    '"last_clicked_at" datetime NULL)',
)


def batch_rows(link_ids: list[int], *, at: datetime) -> tuple[list[tuple], list[tuple]]:
    """The flush's parameters for these clicks, in link-id order (as links.clicks sorts them)."""
    clicks: dict[int, int] = {}
    for link_id in link_ids:
        clicks[link_id] = clicks.get(link_id, 0) + 1
    stamp = at.replace(tzinfo=None).isoformat(sep=" ")
    ordered = sorted(clicks.items())
    counters = [(n, stamp, link_id) for link_id, n in ordered]
    daily = [(at.date().isoformat(), n, link_id) for link_id, n in ordered]
    return counters, daily


def flush_wide(db, counters, daily):
    db.executemany(WIDE_LINK_UPDATE, [(n, stamp, stamp, link_id) for n, stamp, link_id in counters])
    db.executemany(WIDE_DAILY_UPSERT, daily)


def flush_wide_rows_only(db, counters, daily):
    db.executemany(WIDE_LINK_UPDATE, [(n, stamp, stamp, link_id) for n, stamp, link_id in counters])


def flush_wide_daily_only(db, counters, daily):
    db.executemany(WIDE_DAILY_UPSERT, daily)


# The flush from migration 0004 to 0005: which links have a counters row (one
# statement), an insert of the others' first rows, an UPDATE for every other row.
COUNTERS_PRESENT_BEFORE_0005 = (
    "SELECT link_id FROM links_linkclicks WHERE link_id IN (SELECT value FROM json_each(?))"
)
COUNTER_INSERT_BEFORE_0005 = (
    "INSERT INTO links_linkclicks (link_id, clicks, last_clicked_at, latest_day, latest_day_clicks) "
    "SELECT id, ?, ?, ?, ? FROM links_link WHERE id = ?"
)
COUNTER_UPDATE_BEFORE_0005 = (
    "UPDATE links_linkclicks SET clicks = clicks + ?, last_clicked_at = CASE "
    "WHEN last_clicked_at IS NULL OR last_clicked_at < ? THEN ? ELSE last_clicked_at END, "
    "latest_day_clicks = CASE WHEN latest_day = ? THEN latest_day_clicks + ? ELSE ? END, "
    "latest_day = ? WHERE link_id = ?"
)


def flush_counters_keeping_the_day(db, counters, daily):
    """The flush of migration 0004 (before the journal), for a batch of one
    day: the day's clicks kept in the counters row."""
    (day,) = {day for day, _, _ in daily}
    ids = json.dumps([link_id for _, _, link_id in counters])
    present = {link_id for (link_id,) in db.execute(COUNTERS_PRESENT_BEFORE_0005, (ids,))}
    db.executemany(
        COUNTER_INSERT_BEFORE_0005,
        [(n, at, day, n, link_id) for n, at, link_id in counters if link_id not in present],
    )
    db.executemany(
        COUNTER_UPDATE_BEFORE_0005,
        [(n, at, at, day, n, n, day, link_id) for n, at, link_id in counters if link_id in present],
    )


def journal_append(db, counters, daily):
    """links.clicks' own flush on SQLite (migrations 0005 and 0006): the batch
    appended to the journal's file, in one transaction of its own."""
    # Imported here: links.clicks reads the settings, and seeded_file() sets their environment first.
    from links.clicks import append_to_journal

    (day,) = {day for day, _, _ in daily}
    append_to_journal(db, [(n, at, day, n, link_id) for n, at, link_id in counters])


def journal_append_and_roll_up(db, counters, daily):
    """The journal append and, at once, its roll-up into the counters (what
    SHORTENER_CLICK_ROLLUP_SECONDS=0 does; by default a roll-up takes ten
    seconds of flushes at a time, its rows grouped by link)."""
    from links.clicks import DELETE_ROLLED_UP, JOURNAL_LAST_ROW, MARK_ROLLED_UP, ROLL_UP_DAY, ROLLED_UP_TO

    journal_append(db, counters, daily)
    (last_row,) = db.execute(JOURNAL_LAST_ROW).fetchone()
    (day,) = {day for day, _, _ in daily}
    db.execute("BEGIN IMMEDIATE")
    (rolled_up_to,) = db.execute(ROLLED_UP_TO).fetchone()
    db.execute(ROLL_UP_DAY.replace("%s", "?"), (rolled_up_to, last_row, day))
    db.execute(MARK_ROLLED_UP.replace("%s", "?"), (last_row,))
    db.execute("COMMIT")
    db.execute(DELETE_ROLLED_UP.replace("%s", "?"), (last_row,))


# Flushes that commit as links.clicks does (time_flushes puts the others in a transaction).
COMMITS_ITSELF = (journal_append, journal_append_and_roll_up)


# The flush before migration 0004: the counters rows, and the day's clicks in a
# DailyClicks row of their own (the narrow table says whether the link exists).
COUNTER_UPDATE_BEFORE_0004 = (
    "UPDATE links_linkclicks SET clicks = clicks + ?, last_clicked_at = CASE "
    "WHEN last_clicked_at IS NULL OR last_clicked_at < ? THEN ? ELSE last_clicked_at END "
    "WHERE link_id = ?"
)
COUNTER_INSERT_BEFORE_0004 = (
    "INSERT INTO links_linkclicks (link_id, clicks, last_clicked_at) "
    "SELECT id, ?, ? FROM links_link WHERE id = ?"
)
DAILY_UPSERT = (
    "INSERT INTO links_dailyclicks (link_id, day, count) "
    "SELECT link_id, ?, ? FROM links_linkclicks WHERE link_id = ? "
    "ON CONFLICT (link_id, day) DO UPDATE SET count = links_dailyclicks.count + excluded.count"
)


def flush_counters_and_daily_rows(db, counters, daily):
    ids = json.dumps([link_id for _, _, link_id in counters])
    present = {link_id for (link_id,) in db.execute(COUNTERS_PRESENT_BEFORE_0005, (ids,))}
    updates = [(n, at, at, link_id) for n, at, link_id in counters if link_id in present]
    db.executemany(COUNTER_UPDATE_BEFORE_0004, updates)
    db.executemany(COUNTER_INSERT_BEFORE_0004, [c for c in counters if c[2] not in present])
    db.executemany(DAILY_UPSERT, daily)


# Tried and dropped (docs/performance.md, 2026-11-29 afternoon): the batch as one
# JSON array per statement, walked by SQLite, so that the flush's thread binds no
# row under the interpreter lock. Neither faster nor a shorter stall.
COUNTERS_UPDATE_FROM_BATCH = (
    "UPDATE links_linkclicks SET clicks = links_linkclicks.clicks + batch.clicks, "
    "last_clicked_at = CASE WHEN links_linkclicks.last_clicked_at IS NULL "
    "OR links_linkclicks.last_clicked_at < batch.at THEN batch.at ELSE links_linkclicks.last_clicked_at END "
    "FROM (SELECT value ->> 0 AS link_id, value ->> 1 AS clicks, value ->> 2 AS at "
    "FROM json_each(?)) AS batch "
    "WHERE links_linkclicks.link_id = batch.link_id"
)
COUNTERS_INSERT_FROM_BATCH = (
    "INSERT INTO links_linkclicks (link_id, clicks, last_clicked_at) "
    "SELECT batch.link_id, batch.clicks, batch.at "
    "FROM (SELECT value ->> 0 AS link_id, value ->> 1 AS clicks, value ->> 2 AS at "
    "FROM json_each(?)) AS batch "
    "JOIN links_link ON links_link.id = batch.link_id "
    "WHERE NOT EXISTS (SELECT 1 FROM links_linkclicks WHERE links_linkclicks.link_id = batch.link_id)"
)
DAILY_UPSERT_FROM_BATCH = (
    "INSERT INTO links_dailyclicks (link_id, day, count) "
    "SELECT batch.link_id, batch.day, batch.count "
    "FROM (SELECT value ->> 0 AS link_id, value ->> 1 AS day, value ->> 2 AS count "
    "FROM json_each(?)) AS batch "
    "JOIN links_linkclicks ON links_linkclicks.link_id = batch.link_id "
    # "WHERE true": SQLite's parser needs a WHERE before ON CONFLICT after a join.
    "WHERE true ON CONFLICT (link_id, day) DO UPDATE SET count = links_dailyclicks.count + excluded.count"
)


def flush_counters_json_batch(db, counters, daily):
    counted = json.dumps([(link_id, n, at) for n, at, link_id in counters])
    db.execute(COUNTERS_UPDATE_FROM_BATCH, (counted,))
    db.execute(COUNTERS_INSERT_FROM_BATCH, (counted,))
    db.execute(DAILY_UPSERT_FROM_BATCH, (json.dumps([(link_id, day, n) for day, n, link_id in daily]),))


# PostgreSQL's statement before migration 0004.
COUNTER_UPSERT_BEFORE_0004 = (
    "INSERT INTO links_linkclicks (link_id, clicks, last_clicked_at) "
    "SELECT id, ?, ? FROM links_link WHERE id = ? "
    "ON CONFLICT (link_id) DO UPDATE SET clicks = links_linkclicks.clicks + excluded.clicks, "
    "last_clicked_at = CASE WHEN links_linkclicks.last_clicked_at IS NULL "
    "OR links_linkclicks.last_clicked_at < excluded.last_clicked_at "
    "THEN excluded.last_clicked_at ELSE links_linkclicks.last_clicked_at END"
)


def flush_counters_upsert(db, counters, daily):
    """The first try: links.clicks' upsert (PostgreSQL's statement) on SQLite."""
    db.executemany(COUNTER_UPSERT_BEFORE_0004, counters)
    db.executemany(DAILY_UPSERT, daily)


# name -> (base file: setup statements run once on the seeded file, PRAGMAs after the site's, flush)
VARIANTS = {
    "wide rows + daily (before)": (WIDE_COLUMNS, (), flush_wide),
    "  of which the link rows": (WIDE_COLUMNS, (), flush_wide_rows_only),
    "  of which the daily rows": (WIDE_COLUMNS, (), flush_wide_daily_only),
    "journal append (kept)": ((), (), journal_append),
    "journal append + its roll-up, every link has a row": (
        EVERY_LINK_COUNTED,
        (),
        journal_append_and_roll_up,
    ),
    "journal append + its roll-up, first clicks": ((), (), journal_append_and_roll_up),
    "counters keep the day (before 0005), every link has a row": (
        EVERY_LINK_COUNTED,
        (),
        flush_counters_keeping_the_day,
    ),
    "counters keep the day (before 0005), first clicks": ((), (), flush_counters_keeping_the_day),
    "counters + daily rows (before 0004), every link has a row": (
        EVERY_LINK_COUNTED,
        (),
        flush_counters_and_daily_rows,
    ),
    "counters + daily rows (before 0004), first clicks": ((), (), flush_counters_and_daily_rows),
    "counters, JSON batch (dropped), every link has a row": (
        EVERY_LINK_COUNTED,
        (),
        flush_counters_json_batch,
    ),
    "counters, JSON batch (dropped), first clicks": ((), (), flush_counters_json_batch),
    "counters, bigint key + upsert (dropped), every link has a row": (
        BIGINT_KEY + EVERY_LINK_COUNTED,
        (),
        flush_counters_upsert,
    ),
}


def seeded_file(data: Path, links: int) -> Path:
    """A migrated SQLite file with `links` links from `manage.py seed_links`,
    made once per DIR and schema (the latest migration names it)."""
    # The flush variants import links.clicks, which reads the settings.
    setup_django(database=data / "seeding.sqlite3")
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    [(_app, latest)] = [node for node in MigrationLoader(connection).graph.leaf_nodes() if node[0] == "links"]
    seeded = data / f"seeded-{links}-{latest}.sqlite3"
    if seeded.exists():
        return seeded
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"seeding {links} links", file=sys.stderr)
    started = time.perf_counter()
    call_command("seed_links", "--count", str(links), "--quiet", verbosity=0)
    connection.close()
    with sqlite3.connect(data / "seeding.sqlite3") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(f"seeded in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    (data / "seeding.sqlite3").rename(seeded)
    return seeded


def base_file(seeded: Path, setup: tuple[str, ...]) -> Path:
    """The seeded file with `setup` run on it, made once per DIR."""
    if not setup:
        return seeded
    base = seeded.with_name(f"{seeded.stem}-{zlib.crc32(repr(setup).encode()):08x}.sqlite3")
    if not base.exists():
        made = base.with_suffix(".making")
        shutil.copyfile(seeded, made)
        with sqlite3.connect(made) as db:
            for statement in setup:
                db.execute(statement)
        with sqlite3.connect(made) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        made.rename(base)
        for suffix in ("-wal", "-shm"):
            Path(f"{made}{suffix}").unlink(missing_ok=True)
    return base


def prepare(seeded: Path, work: Path, name: str) -> sqlite3.Connection:
    """The variant's copy of the file, with a journal file of its own attached
    as the site's connections have it (links.clicks.attach_journal)."""
    from links.clicks import attach_journal_file

    setup, pragmas, _flush = VARIANTS[name]
    path, journal = work / "variant.sqlite3", work / "variant-clicks.sqlite3"
    for file in (path, journal):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{file}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(base_file(seeded, setup), path)
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in (*site_pragmas(), *pragmas):
        db.execute(pragma)
    attach_journal_file(db, journal)
    return db


class StallMeter:
    """A thread that asks to run every millisecond, as a worker's event loop
    does while redirects arrive: the longest it waited past its millisecond is
    how long a flush on another thread kept the interpreter lock from it."""

    def __init__(self):
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            started = time.perf_counter()
            time.sleep(0.001)
            self.longest = max(self.longest, time.perf_counter() - started - 0.001)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def time_flushes(db, flush, batches) -> tuple[list[float], float]:
    """Milliseconds per flush, each in its own IMMEDIATE transaction (as Django's)
    unless it makes its own (the journal's, as links.clicks does), and the
    longest stall (ms) of a thread beside them."""
    in_a_transaction = flush not in COMMITS_ITSELF
    times = []
    with StallMeter() as stalls:
        for counters, daily in batches:
            started = time.perf_counter()
            if in_a_transaction:
                db.execute("BEGIN IMMEDIATE")
            flush(db, counters, daily)
            if in_a_transaction:
                db.execute("COMMIT")
            times.append((time.perf_counter() - started) * 1000)
    return times, stalls.longest * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--links", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=8_000, help="clicks per flush")
    parser.add_argument("--flushes", type=int, default=12, help="timed flushes per variant and mix")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions")
    parser.add_argument("--data", type=Path, help="keep (and reuse) the seeded file here")
    parser.add_argument("--only", action="append", help="run only variants whose name contains this")
    args = parser.parse_args()
    data = args.data or Path(tempfile.mkdtemp(prefix="flush-cost-"))
    data.mkdir(parents=True, exist_ok=True)
    seeded = seeded_file(data, args.links)
    with sqlite3.connect(seeded) as db:
        (first, last) = db.execute("SELECT min(id), max(id) FROM links_link").fetchone()
    from bench.mixes import zipf_indices

    rng = random.Random(15)
    draws = args.batch * args.flushes
    mixes = {
        "uniform": [rng.randint(first, last) for _ in range(draws)],
        "Zipf s=1.1": [first + i for i in zipf_indices(last - first + 1, draws, s=1.1, rng=rng)],
    }
    start = datetime(2026, 11, 29, 12, tzinfo=UTC)
    names = [n for n in VARIANTS if not args.only or any(o in n for o in args.only)]
    work = data / "work"
    work.mkdir(exist_ok=True)
    print(f"{args.links} links, {args.batch} clicks a flush, {args.flushes} flushes a row")
    print("| mix | variant | round | median ms | mean ms | longest stall ms | links in a batch |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for round_ in range(1, args.rounds + 1):
        for mix, trace in mixes.items():
            batches = [
                batch_rows(trace[i : i + args.batch], at=start + timedelta(seconds=i // args.batch))
                for i in range(0, draws, args.batch)
            ]
            distinct = statistics.mean(len(counters) for counters, _ in batches)
            for name in names:
                db = prepare(seeded, work, name)
                try:
                    times, longest_stall = time_flushes(db, VARIANTS[name][2], batches)
                finally:
                    db.close()
                print(
                    f"| {mix} | {name} | {round_} | {statistics.median(times):.1f} | "
                    f"{statistics.mean(times):.1f} | {longest_stall:.1f} | {distinct:.0f} |",
                    flush=True,
                )
    if not args.data:
        shutil.rmtree(data)


if __name__ == "__main__":
    main()
