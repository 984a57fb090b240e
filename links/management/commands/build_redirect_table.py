"""Build the redirect table of the SQLite database (links/redirect_table.py).

Workers run this themselves when the table is missing or out of date; by hand
it is needed only to have it ready before the first request."""

import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from links.backups import BackupError, refuse_root_on_the_apps_files
from links.fastpath import build_redirect_table, open_redirect_table, redirect_table_path
from links.redirect_table import BUILD_UNDER_WAY


class Command(BaseCommand):
    help = "Build the redirect table beside the SQLite database, unless it is up to date."

    def add_arguments(self, parser):
        parser.add_argument("--database", type=Path, help="the SQLite file (default: the site's)")
        parser.add_argument("--table", type=Path, help="the table's file (default: beside the database)")
        parser.add_argument(
            "--every-link",
            action="store_true",
            help="build unless the table holds every link, as after a bulk import (the workers "
            "rebuild it once more links than an eighth of it plus 1,000 are new since)",
        )

    def handle(self, *args, database: Path | None, table: Path | None, every_link: bool, **options):
        if database is None:
            if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
                raise CommandError("the redirect table is for a SQLite database")
            database = Path(settings.DATABASES["default"]["NAME"])
        try:
            refuse_root_on_the_apps_files(database)
        except BackupError as error:
            raise CommandError(str(error)) from error
        table = table or redirect_table_path(database)
        before = open_redirect_table(table)
        started = time.monotonic()
        built = build_redirect_table(database=database, path=table, every_link=every_link)
        if built is None:
            self.stdout.write("redirect table: another build is under way")
            sys.exit(BUILD_UNDER_WAY)
        done = "up to date" if before is not None and built.stamp == before.stamp else "built"
        self.stdout.write(
            f"redirect table {done}: {built.link_count} links at links version {built.version} "
            f"({time.monotonic() - started:.1f} s)"
        )
