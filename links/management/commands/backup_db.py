from django.core.management.base import BaseCommand, CommandError

from links.backups import BackupError, create_backup


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"


class Command(BaseCommand):
    help = (
        "Take a consistent snapshot of the SQLite database while the site serves, check it, "
        "gzip it and store it with its SHA-256 in DEST: a folder or s3://bucket/prefix."
    )
    # The checks would load the database backend; a PostgreSQL site must get
    # this command's own explanation, not an import error.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("dest", help="a folder, or s3://bucket/prefix")
        parser.add_argument("--keep", type=int, help="then delete all but the newest N backups at DEST")

    def handle(self, *args, dest: str, keep: int | None, **options):
        try:
            result = create_backup(destination=dest, keep=keep)
        except BackupError as error:
            raise CommandError(f"backup failed: {error}") from error
        for location in result.pruned:
            self.stdout.write(f"pruned {location}")
        self.stdout.write(
            f"backup written to {result.location} ({human_size(result.size)} gzipped, database "
            f"{human_size(result.database_size)}, sha256 {result.sha256}, {result.seconds:.2f} s)"
        )
