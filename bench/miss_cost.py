"""What one redirect-cache miss costs, in-process (no HTTP): the fast path's
read of the row (links.fastpath.SQLiteLinks.load's columns, alone as kept, with
the counters joined for every link, and with those of limited links only; the
kept load reads them with the links version, in one statement) and its decision
on the row (RedirectFastPath._answer, against the decision as it was before
2026-11-29: a Link model instance and its status from rules that built Q
objects on every call), interleaved in one run on a real SQLite file. Read the
times as ratios within one run.

    DJANGO_DEBUG=1 .venv/bin/python bench/miss_cost.py [--links 100000] [--database FILE]

`--database` reuses a migrated, seeded file (such as bench/flush_cost.py's
`--data` one) instead of seeding a new one.
"""

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.inprocess import setup_django

# The first try: the counters joined for every link.
WITH_JOIN = (
    "SELECT l.id, l.original_url, l.is_active, l.expires_at, l.max_clicks, COALESCE(c.clicks, 0) "
    "FROM links_link l LEFT JOIN links_linkclicks c ON c.link_id = l.id WHERE l.slug = ?"
)
# The second try: the counters read for a limited link only (its value was never
# used: a limited link goes to Django before its status is asked).
LIMITED_COUNTERS = (
    "SELECT id, original_url, is_active, expires_at, max_clicks, CASE WHEN max_clicks IS NULL THEN 0 "
    "ELSE COALESCE((SELECT c.clicks FROM links_linkclicks c WHERE c.link_id = links_link.id), 0) END "
    "FROM links_link WHERE slug = ?"
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--links", type=int, default=100_000)
    parser.add_argument("--database", type=Path, help="a migrated, seeded SQLite file to read")
    parser.add_argument("--lookups", type=int, default=100_000, help="misses per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="miss-cost-"))
    setup_django(database=args.database or data / "bench.sqlite3")
    from django.core.management import call_command
    from django.db.models import F, Q
    from django.utils import timezone

    from links import fastpath
    from links.fastpath import DELEGATE, NEVER, RedirectFastPath, SQLiteLinks
    from links.models import Link, LinkStatus

    if args.database is None:
        call_command("migrate", verbosity=0)
        print(f"seeding {args.links} links", file=sys.stderr)
        call_command("seed_links", "--count", str(args.links), "--quiet", verbosity=0)
    database = Path(os.environ["SQLITE_PATH"])
    with sqlite3.connect(database) as db:
        slugs = [slug for (slug,) in db.execute("SELECT slug FROM links_link")]

    def status_before(link) -> LinkStatus:
        """Link.status before 2026-11-29: the rules, Q objects included, built per call."""
        now = timezone.now()
        rules = (
            (LinkStatus.DISABLED, Q(is_active=False), lambda link: not link.is_active),
            (
                LinkStatus.EXPIRED,
                Q(expires_at__lte=now),
                lambda link: link.expires_at is not None and link.expires_at <= now,
            ),
            (
                LinkStatus.EXHAUSTED,
                Q(max_clicks__isnull=False, clicks__gte=F("max_clicks")),
                lambda link: link.max_clicks is not None and link.clicks >= link.max_clicks,
            ),
        )
        for status, _, applies in rules:
            if applies(link):
                return status
        return LinkStatus.ACTIVE

    def answer_before(row):
        """RedirectFastPath._answer before 2026-11-29 (a model instance; clicks,
        then one of its fields, is a property over the counters now: not passed)."""
        if row is None:
            return None
        link_id, url, is_active, expires_at, max_clicks = row[:5]
        link = Link(
            id=link_id, original_url=url, is_active=is_active, expires_at=expires_at, max_clicks=max_clicks
        )
        if status_before(link) != LinkStatus.ACTIVE or link.max_clicks is not None or not url.isascii():
            return DELEGATE
        valid_until = link.expires_at.timestamp() if link.expires_at is not None else NEVER
        return (link_id, url.encode("ascii"), valid_until)

    links = SQLiteLinks(database)
    reads = {
        "read the row, no counters (kept)": fastpath.LINK_QUERY,
        "read the row, counters joined for every link (first try)": WITH_JOIN,
        "read the row, counters of limited links only (second try)": LIMITED_COUNTERS,
    }
    decisions = {
        "decide, before (model + Q objects)": answer_before,
        "decide, now (LinkState)": RedirectFastPath._answer,
    }
    rng = random.Random(15)
    print(f"{len(slugs)} links, {args.lookups} misses per row")
    print("| variant | round | µs per miss |")
    print("| --- | ---: | ---: |")
    for round_ in range(1, args.rounds + 1):
        sample = [slugs[rng.randrange(len(slugs))] for _ in range(args.lookups)]
        rows = [links.load(slug)[1] for slug in sample]  # also warms the pages for every read below
        database_connection = links._database()
        for name, query in reads.items():
            started = time.perf_counter()
            for slug in sample:
                database_connection.execute(query, (slug,)).fetchone()
            elapsed = time.perf_counter() - started
            print(f"| {name} | {round_} | {elapsed / len(sample) * 1e6:.2f} |", flush=True)
        for name, decide in decisions.items():
            started = time.perf_counter()
            for row in rows:
                decide(row)
            elapsed = time.perf_counter() - started
            print(f"| {name} | {round_} | {elapsed / len(rows) * 1e6:.2f} |", flush=True)
    links.close()


if __name__ == "__main__":
    main()
