"""Django set up in this process on a SQLite file of the measurement's own, for
the in-process benchmarks (eviction.py, lookup_cost.py, flush_cost.py,
miss_cost.py: no HTTP, no stack). Call it before importing anything that reads
the settings."""

import os
from pathlib import Path


def setup_django(*, database: Path) -> None:
    """Settings from shortener_site with the database at `database` and the data
    folder beside it, then django.setup()."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shortener_site.settings")
    os.environ["SHORTENER_DATA_DIR"] = str(database.parent)
    os.environ["SQLITE_PATH"] = str(database)
    import django

    django.setup()
