import os

from django.core.management.base import BaseCommand, CommandError

from links.backups import STOP_HINT, BackupError, restore_backup


class Command(BaseCommand):
    help = (
        "Replace the SQLite database with a backup: a file, an s3:// object, or 'latest' at "
        "--from DEST (default $BACKUP_DEST). Checks its SHA-256, its integrity and its migrations "
        f"first. Refuses while the app serves: {STOP_HINT}."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("source", help="a backup file, s3://bucket/prefix/<name>, or 'latest'")
        parser.add_argument(
            "--from",
            dest="from_destination",
            default=os.environ.get("BACKUP_DEST") or None,
            help="where 'latest' looks: a folder or s3://bucket/prefix (default: $BACKUP_DEST)",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="restore even while the app serves (its workers' caches are invalidated)",
        )

    def handle(self, *args, source: str, from_destination: str | None, force: bool, **options):
        try:
            result = restore_backup(source=source, from_destination=from_destination, force=force)
        except BackupError as error:
            raise CommandError(f"restore refused: {error}") from error
        self.stdout.write(
            f"restored {result.source} into {result.database_path}: {result.links} links "
            f"({result.seconds:.2f} s)"
        )
        if result.pending_migrations:
            self.stdout.write(
                "the backup predates migrations "
                f"{', '.join(result.pending_migrations)}: run 'python manage.py migrate' "
                "(docker compose -f docker-compose.prod.yml up runs it) before serving"
            )
