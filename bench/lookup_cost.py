"""Cost of one redirect-cache hit in the fast path, in-process (no HTTP): the
check every cache hit makes (has the WAL index's header moved since the version
was read?), against a plain dictionary hit, the PRAGMA data_version question
that every hit asked before it, and the os.stat() of the earlier generation file.

    DJANGO_DEBUG=1 .venv/bin/python bench/lookup_cost.py
"""

import asyncio
import os
import sqlite3
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.inprocess import setup_django

data = Path(tempfile.mkdtemp(prefix="lookup-cost-"))
setup_django(database=data / "bench.sqlite3")
from django.core.management import call_command  # noqa: E402

from links.fastpath import RedirectFastPath  # noqa: E402

call_command("migrate", verbosity=0)
call_command("seed_links", "--count", "1000", "--quiet", verbosity=0)
with sqlite3.connect(data / "bench.sqlite3") as db:
    slugs = [slug for (slug,) in db.execute("SELECT slug FROM links_link")]
fast_path = RedirectFastPath.from_settings()
for slug in slugs:
    asyncio.run(fast_path.lookup(slug))
generation_file = data / "generation"
generation_file.write_text("0")

rounds = 200_000
slug = slugs[0]
pragma = fast_path.links._database().cursor()
assert fast_path.links._wal_index is not None, "not watching the WAL index: a hit would ask the pragma"
cache = fast_path._cache
results = {
    "dictionary hit only": timeit.timeit(lambda: cache[slug], number=rounds),
    "os.stat of a file (the old check)": timeit.timeit(lambda: os.stat(generation_file), number=rounds),
    "PRAGMA data_version (what every hit asked before)": timeit.timeit(
        lambda: pragma.execute("PRAGMA data_version").fetchone(), number=rounds
    ),
    # What lookup() does on a hit, without the coroutine around it.
    "WAL index check + dictionary hit (a hit now)": timeit.timeit(
        lambda: (fast_path.links.version(), cache[slug]), number=rounds
    ),
}
for name, seconds in results.items():
    print(f"{name:50} {seconds / rounds * 1e9:8.0f} ns")
