"""The redirect cache's policy when full, in-process (no HTTP): the fast path's
own `lookup()` on a real SQLite file of LINKS links, for a uniform and a Zipf
(s = 1.1) mix of slugs, with today's policy (drop the oldest-inserted 1/16, and
when full keep a link only at its second miss: links.fastpath.Doorkeeper) against
the earlier ones (keep every link read; before that, clear everything), interleaved
in one run. Hit rates do not depend on the machine (only, slightly, on the
string hashes' seed, by which the doorkeeper picks its slots); the times per lookup
do (read them as a ratio within the run).

    DJANGO_DEBUG=1 .venv/bin/python bench/eviction.py [--links 1000000] [--requests 2000000]
"""

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.inprocess import setup_django

data = Path(tempfile.mkdtemp(prefix="eviction-"))
setup_django(database=data / "bench.sqlite3")
from django.core.management import call_command  # noqa: E402

from bench.mixes import zipf_indices  # noqa: E402
from links.fastpath import Doorkeeper, RedirectFastPath  # noqa: E402


class AdmitsEveryKey(Doorkeeper):
    def admits(self, key: str) -> bool:
        return True


class KeepEveryMiss(RedirectFastPath):
    """The policy before the doorkeeper: a full cache kept every link read, its
    entries given the whole bound (no doorkeeper's table in it)."""

    def __init__(self, *, max_bytes: int, **kwargs):
        super().__init__(max_bytes=max_bytes, **kwargs)
        self._doorkeeper = AdmitsEveryKey(window=self._doorkeeper.window)
        self._entries_bound = max_bytes


class ClearWhenFull(KeepEveryMiss):
    """The policy before issue 15: a full cache was cleared entirely."""

    def _evict_oldest(self) -> None:
        self._file_under(self._version)


def measure(policy: type[RedirectFastPath], slugs: list[str], trace: list[int]) -> tuple[float, float]:
    """(hit rate, microseconds per lookup) over the trace, after a warm-up of its first half."""
    fast_path = policy.from_settings()
    loop = asyncio.new_event_loop()
    try:
        half = len(trace) // 2

        async def walk(indices):
            for index in indices:
                await fast_path.lookup(slugs[index])

        loop.run_until_complete(walk(trace[:half]))
        misses = 0
        load = fast_path.links.load

        def counted_load(slug):
            nonlocal misses
            misses += 1
            return load(slug)

        fast_path.links.load = counted_load
        started = time.perf_counter()
        loop.run_until_complete(walk(trace[half:]))
        elapsed = time.perf_counter() - started
        measured = len(trace) - half
        return 1 - misses / measured, elapsed / measured * 1e6
    finally:
        loop.close()
        fast_path.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--links", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=2_000_000, help="lookups per mix and policy")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    print(f"seeding {args.links} links", file=sys.stderr)
    call_command("seed_links", "--count", str(args.links), "--quiet", verbosity=0)
    with sqlite3.connect(data / "bench.sqlite3") as db:
        slugs = [slug for (slug,) in db.execute("SELECT slug FROM links_link ORDER BY id")]
    rng = random.Random(15)
    mixes = {
        "uniform": [rng.randrange(len(slugs)) for _ in range(args.requests)],
        "Zipf s=1.1": zipf_indices(len(slugs), args.requests, s=1.1, rng=rng),
    }
    print("| mix | policy | round | hit rate | µs per lookup |")
    print("| --- | --- | ---: | ---: | ---: |")
    for round_ in range(1, args.rounds + 1):
        for mix, trace in mixes.items():
            for name, policy in (
                ("clear when full (old)", ClearWhenFull),
                ("drop oldest 1/16, keep every miss", KeepEveryMiss),
                ("drop oldest 1/16, keep at the second miss", RedirectFastPath),
            ):
                hit_rate, micros = measure(policy, slugs, trace)
                print(f"| {mix} | {name} | {round_} | {hit_rate:.1%} | {micros:.2f} |", flush=True)


if __name__ == "__main__":
    main()
