"""Backups of the SQLite database, and restores from them.

A backup is a consistent snapshot taken with SQLite's online backup API while
the site serves traffic (never a file copy: a copy of the main file misses
what is still in the WAL), checked with `PRAGMA integrity_check`, gzipped,
named by UTC time, with its SHA-256 stored beside it: a `<name>.sha256` file
(`sha256sum -c` reads it) in a folder, object metadata on S3.

A restore verifies the checksum and the integrity check, refuses a backup
whose migrations are newer than the code, and writes the backup into the live
database through the same backup API: SQLite replaces every page in one write
transaction, so the `-wal`/`-shm` files stay consistent and any open connection
sees either the old or the new database. It then bumps the link table version
above any value seen before, so every worker's redirect cache is dropped.

While the app serves, each worker holds a shared lock on `<database>.serving`
(links.asgi's lifespan); a restore takes that lock exclusively, so it refuses
to run while a worker is up, and an app starting meanwhile waits for it.
"""

import fcntl
import gzip
import hashlib
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

NAME_PREFIX = "shortener-"
NAME_SUFFIX = ".sqlite3.gz"
NAME_TIME_FORMAT = "%Y%m%dT%H%M%S"
# shortener-20261129T085430.123Z.sqlite3.gz: sorting the names sorts by time.
NAME_PATTERN = re.compile(r"^shortener-(\d{8}T\d{6})\.(\d{3})Z\.sqlite3\.gz$")
CHECKSUM_SUFFIX = ".sha256"
S3_CHECKSUM_KEY = "sha256"
SERVING_SUFFIX = ".serving"
logger = logging.getLogger(__name__)

STOP_HINT = "stop the app first (docker compose -f docker-compose.prod.yml stop app), or pass --force"


class BackupError(Exception):
    """A failure to report in one sentence, without a traceback."""


@dataclass(frozen=True)
class BackupEntry:
    name: str
    taken_at: datetime
    location: str


@dataclass(frozen=True)
class BackupResult:
    location: str
    size: int
    database_size: int
    sha256: str
    seconds: float
    pruned: list[str]


@dataclass(frozen=True)
class RestoreResult:
    source: str
    database_path: Path
    links: int
    seconds: float
    pending_migrations: list[str]


def backup_name(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{NAME_PREFIX}{moment.strftime(NAME_TIME_FORMAT)}.{moment.microsecond // 1000:03d}Z{NAME_SUFFIX}"


def parse_backup_name(name: str) -> datetime | None:
    match = NAME_PATTERN.match(name)
    if match is None:
        return None
    seconds = datetime.strptime(match.group(1), NAME_TIME_FORMAT).replace(tzinfo=UTC)
    return seconds.replace(microsecond=int(match.group(2)) * 1000)


def parse_interval(text: str) -> float:
    """Seconds in "6h", "30m", "45s", "1d" or a plain number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if match is None or float(match.group(1)) <= 0:
        raise BackupError(f"invalid interval {text!r}: use a positive number with s, m, h or d, e.g. 6h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


# --- the database --------------------------------------------------------------------------


def sqlite_database_path() -> Path:
    """The live database file; a clear refusal for any other database engine."""
    database = settings.DATABASES["default"]
    if "sqlite3" not in database["ENGINE"]:
        raise BackupError(
            f"the database is {database['ENGINE'].rsplit('.', 1)[-1]}, not SQLite: use the provider's "
            "managed snapshots (e.g. Amazon RDS automated backups) or pg_dump and pg_restore; "
            "backup_db and restore_db are for SQLite"
        )
    return Path(database["NAME"])


def refuse_root_on_the_apps_files(database_path: Path) -> None:
    """Root writing the app's database would leave root-owned -wal/-shm files
    that the app cannot open: run as the folder's owner instead."""
    folder = database_path.parent
    if os.geteuid() != 0 or not folder.exists() or folder.stat().st_uid == 0:
        return
    raise BackupError(
        f"running as root, but {folder} belongs to uid {folder.stat().st_uid}: run as that user "
        "(in the stack: docker compose -f docker-compose.prod.yml run --rm --no-deps backup "
        "python manage.py ..., not exec)"
    )


def integrity_problem(path: Path) -> str | None:
    """What `PRAGMA integrity_check` finds wrong with the file, or None."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        return str(error)
    return None if rows == ["ok"] else "; ".join(rows[:5])


def snapshot(*, database_path: Path, into: Path) -> None:
    """A consistent copy of the live database in `into`, while others write.

    One backup step copies every page inside a single read transaction: in WAL
    mode writers go on meanwhile, and the copy is the database as of one commit.
    """
    if not database_path.exists():
        raise BackupError(f"there is no database at {database_path}")
    source = sqlite3.connect(f"file:{database_path}?mode=ro", uri=True, timeout=20)
    target = sqlite3.connect(into)
    try:
        source.backup(target)
        # A self-contained file: no -wal beside it.
        target.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as error:
        raise BackupError(f"the snapshot of {database_path} failed: {error}") from error
    finally:
        target.close()
        source.close()
    problem = integrity_problem(into)
    if problem is not None:
        raise BackupError(f"the snapshot of {database_path} fails the integrity check: {problem}")


def applied_migrations(path: Path) -> set[tuple[str, str]]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return set(connection.execute("SELECT app, name FROM django_migrations"))
    except sqlite3.Error as error:
        raise BackupError(
            f"the backup is not a database of this site (no migration table: {error})"
        ) from error
    finally:
        connection.close()


def known_migrations() -> set[tuple[str, str]]:
    from django.db.migrations.loader import MigrationLoader

    return set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)


def link_table_version(path: Path) -> int:
    """The link table version in the database at `path`, 0 before it exists."""
    if not path.exists():
        return 0
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=20)
    try:
        row = connection.execute("SELECT version FROM links_linktableversion WHERE id = 1").fetchone()
    except sqlite3.Error:
        return 0
    finally:
        connection.close()
    return row[0] if row else 0


def has_table(path: Path, table: str) -> bool:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=20)
    try:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return connection.execute(query, (table,)).fetchone() is not None
    finally:
        connection.close()


def count_links(path: Path) -> int:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=20)
    try:
        return connection.execute("SELECT count(*) FROM links_link").fetchone()[0]
    except sqlite3.Error as error:
        raise BackupError(f"the backup is not a database of this site (no links table: {error})") from error
    finally:
        connection.close()


# --- "the app is serving" -----------------------------------------------------------------


def serving_marker_path(database_path: Path) -> Path:
    return database_path.with_name(database_path.name + SERVING_SUFFIX)


def _open_marker(database_path: Path) -> int:
    return os.open(serving_marker_path(database_path), os.O_RDONLY | os.O_CREAT, 0o644)


def hold_serving_marker() -> int | None:
    """Called by each worker at startup: a shared lock held while it serves.

    The kernel drops it when the process ends, however it ends, so a crashed
    app never looks like a serving one. Blocks while a restore runs.
    """
    try:
        database_path = sqlite_database_path()
    except BackupError:
        return None
    try:
        descriptor = _open_marker(database_path)
    except OSError as error:
        # Serving matters more than the marker: restore_db just cannot see this worker.
        logger.warning("cannot create %s: %s", serving_marker_path(database_path), error)
        return None
    fcntl.flock(descriptor, fcntl.LOCK_SH)
    return descriptor


def release_serving_marker(descriptor: int | None) -> None:
    if descriptor is not None:
        os.close(descriptor)


@contextmanager
def no_app_serving(*, database_path: Path, force: bool) -> Iterator[None]:
    """Refuses (unless forced) while a worker holds the marker; holds it
    exclusively meanwhile, so no app starts serving halfway through."""
    database_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = _open_marker(database_path)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not force:
                raise BackupError(f"the app is serving from {database_path}: {STOP_HINT}") from None
        yield
    finally:
        os.close(descriptor)


# --- where backups go -----------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FolderDestination:
    def __init__(self, folder: Path):
        self.folder = folder

    def __str__(self) -> str:
        return str(self.folder)

    def location(self, name: str) -> str:
        return str(self.folder / name)

    def entries(self) -> list[BackupEntry]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.iterdir():
            taken_at = parse_backup_name(path.name)
            if taken_at is not None:
                found.append(BackupEntry(name=path.name, taken_at=taken_at, location=str(path)))
        return sorted(found, key=lambda entry: entry.name)

    def put(self, *, local: Path, name: str, sha256: str) -> None:
        checksum = self.folder / (name + CHECKSUM_SUFFIX)
        partial = self.folder / (name + ".partial")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # The checksum first, the backup last under its final name (an atomic
            # rename): a listed backup is always complete and checkable.
            checksum.write_text(f"{sha256}  {name}\n")
            shutil.copyfile(local, partial)
            with open(partial, "rb") as file:
                os.fsync(file.fileno())
            os.replace(partial, self.folder / name)
        except BaseException as error:
            # A full disk or a stop signal leaves no half-written files behind.
            for leftover in (partial, checksum):
                try:
                    leftover.unlink(missing_ok=True)
                except OSError:
                    pass
            if isinstance(error, OSError):
                raise BackupError(f"cannot write the backup to {self.folder}: {error}") from error
            raise

    def fetch(self, *, name: str, into: Path) -> str:
        path = self.folder / name
        checksum_file = self.folder / (name + CHECKSUM_SUFFIX)
        if not path.is_file():
            raise BackupError(f"there is no backup file {path}")
        if not checksum_file.is_file():
            raise BackupError(f"{path} has no checksum file beside it ({checksum_file.name})")
        shutil.copyfile(path, into)
        words = checksum_file.read_text().split()
        return words[0] if words else ""

    def delete(self, name: str) -> None:
        for path in (self.folder / name, self.folder / (name + CHECKSUM_SUFFIX)):
            path.unlink(missing_ok=True)


class S3Destination:
    def __init__(self, bucket: str, prefix: str):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def client(self):
        if self._client is None:
            import boto3

            # Which credentials and endpoint it found is not news in a backup's output.
            logging.getLogger("botocore").setLevel(logging.WARNING)
            # The standard chain: instance profile on EC2, ~/.aws or AWS_* variables
            # elsewhere; AWS_ENDPOINT_URL is honoured by boto3 itself.
            self._client = boto3.client("s3")
        return self._client

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def location(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.key(name)}"

    def entries(self) -> list[BackupEntry]:
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key("")):
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                taken_at = parse_backup_name(name)
                if taken_at is not None and item["Key"] == self.key(name):
                    found.append(BackupEntry(name=name, taken_at=taken_at, location=self.location(name)))
        return sorted(found, key=lambda entry: entry.name)

    def put(self, *, local: Path, name: str, sha256: str) -> None:
        self.client.upload_file(
            str(local),
            self.bucket,
            self.key(name),
            ExtraArgs={"Metadata": {S3_CHECKSUM_KEY: sha256}, "ContentType": "application/gzip"},
        )

    def fetch(self, *, name: str, into: Path) -> str:
        key = self.key(name)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise BackupError(f"there is no backup object {self.location(name)}") from error
            raise
        self.client.download_file(self.bucket, key, str(into))
        return head.get("Metadata", {}).get(S3_CHECKSUM_KEY, "")

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(name))


def destination_for(text: str) -> FolderDestination | S3Destination:
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://") :].partition("/")
        if not bucket:
            raise BackupError(f"{text!r} names no bucket: use s3://bucket/prefix")
        return S3Destination(bucket, prefix)
    if "://" in text:
        raise BackupError(f"{text!r} is neither a folder nor an s3:// URL")
    return FolderDestination(Path(text))


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """boto3's failures as one sentence (no credentials, access denied, no bucket)."""
    try:
        yield
    except BackupError:
        raise
    except Exception as error:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(error, ClientError):
            details = error.response.get("Error", {})
            raise BackupError(
                f"{action}: AWS refused: {details.get('Code', '?')}: {details.get('Message', error)}"
            ) from error
        if isinstance(error, (BotoCoreError, Boto3Error)):
            raise BackupError(f"{action}: {error}") from error
        raise


# --- backup and restore ---------------------------------------------------------------------


def prune(destination, *, keep: int) -> list[str]:
    """Delete all but the newest `keep` backups at the destination."""
    entries = destination.entries()
    doomed = entries[: max(len(entries) - keep, 0)]
    for entry in doomed:
        destination.delete(entry.name)
    return [entry.location for entry in doomed]


def create_backup(*, destination: str, keep: int | None = None) -> BackupResult:
    if keep is not None and keep < 1:
        raise BackupError("--keep must be at least 1 (the backup just taken)")
    database_path = sqlite_database_path()
    refuse_root_on_the_apps_files(database_path)
    target = destination_for(destination)
    started = time.monotonic()
    name = backup_name(datetime.now(UTC))
    with tempfile.TemporaryDirectory(prefix="shortener-backup-") as work:
        raw = Path(work) / "snapshot.sqlite3"
        snapshot(database_path=database_path, into=raw)
        compressed = Path(work) / name
        with open(raw, "rb") as source, gzip.open(compressed, "wb", compresslevel=6) as gzipped:
            shutil.copyfileobj(source, gzipped, 1 << 20)
        sha256 = sha256_of(compressed)
        with aws_errors(f"cannot upload the backup to {target}"):
            target.put(local=compressed, name=name, sha256=sha256)
            pruned = prune(target, keep=keep) if keep is not None else []
        return BackupResult(
            location=target.location(name),
            size=compressed.stat().st_size,
            database_size=raw.stat().st_size,
            sha256=sha256,
            seconds=time.monotonic() - started,
            pruned=pruned,
        )


def newest_backup(destination: str) -> BackupEntry | None:
    target = destination_for(destination)
    with aws_errors(f"cannot list the backups at {target}"):
        entries = target.entries()
    return entries[-1] if entries else None


def _locate(source: str, *, from_destination: str | None) -> tuple[FolderDestination | S3Destination, str]:
    if source == "latest":
        if not from_destination:
            raise BackupError("'latest' needs a place to look: pass --from DEST or set BACKUP_DEST")
        target = destination_for(from_destination)
        with aws_errors(f"cannot list the backups at {target}"):
            entries = target.entries()
        if not entries:
            raise BackupError(f"there are no backups at {target}")
        return target, entries[-1].name
    if source.startswith("s3://"):
        bucket, _, key = source[len("s3://") :].partition("/")
        if not key:
            raise BackupError(f"{source!r} names no object: use s3://bucket/prefix/<backup name>")
        prefix, _, name = key.rpartition("/")
        return S3Destination(bucket, prefix), name
    path = Path(source)
    return FolderDestination(path.parent), path.name


def restore_backup(*, source: str, from_destination: str | None = None, force: bool = False) -> RestoreResult:
    from links.services import mark_links_changed

    database_path = sqlite_database_path()
    refuse_root_on_the_apps_files(database_path)
    started = time.monotonic()
    with no_app_serving(database_path=database_path, force=force):
        origin, name = _locate(source, from_destination=from_destination)
        location = origin.location(name)
        with tempfile.TemporaryDirectory(prefix="shortener-restore-") as work:
            compressed = Path(work) / "backup.gz"
            with aws_errors(f"cannot download {location}"):
                expected = origin.fetch(name=name, into=compressed)
            actual = sha256_of(compressed)
            if not expected:
                raise BackupError(f"{location} carries no SHA-256 checksum: refusing an unverifiable backup")
            if actual != expected.lower():
                raise BackupError(
                    f"{location} does not match its checksum (SHA-256 {actual}, expected {expected}): "
                    "it was changed or damaged; refusing it"
                )
            raw = Path(work) / "backup.sqlite3"
            try:
                with gzip.open(compressed, "rb") as gzipped, open(raw, "wb") as out:
                    shutil.copyfileobj(gzipped, out, 1 << 20)
            except (OSError, EOFError) as error:
                raise BackupError(f"{location} is not a readable gzip file: {error}") from error
            problem = integrity_problem(raw)
            if problem is not None:
                raise BackupError(f"{location} fails the integrity check: {problem}")
            in_backup = applied_migrations(raw)
            known = known_migrations()
            unknown = sorted(f"{app}.{migration}" for app, migration in in_backup - known)
            if unknown:
                raise BackupError(
                    f"{location} was made by a newer version of the site (migrations this code does not "
                    f"have: {', '.join(unknown)}): deploy that version first, then restore"
                )
            links = count_links(raw)
            version_before = link_table_version(database_path)
            _write_into_live_database(raw=raw, database_path=database_path)
        if has_table(database_path, "links_linktableversion"):
            # Workers' caches were filled from the old data, whose version number
            # the restored data may carry too: move past both.
            mark_links_changed(above=version_before)
    pending = sorted(f"{app}.{migration}" for app, migration in known - in_backup)
    return RestoreResult(
        source=location,
        database_path=database_path,
        links=links,
        seconds=time.monotonic() - started,
        pending_migrations=pending,
    )


def _write_into_live_database(*, raw: Path, database_path: Path) -> None:
    """Every page of `raw` into the live database, in one write transaction."""
    source = sqlite3.connect(f"file:{raw}?mode=ro", uri=True)
    target = sqlite3.connect(database_path, timeout=20)
    try:
        target.execute("PRAGMA journal_mode=WAL")
        source.backup(target)
        # The restored pages are in the WAL; move them into the main file now.
        target.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as error:
        raise BackupError(f"writing the backup into {database_path} failed: {error}") from error
    finally:
        target.close()
        source.close()
