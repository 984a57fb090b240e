"""backup_db and restore_db against real SQLite files and a real uvicorn with two workers."""

import gzip
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import PROJECT_DIR, running_site, site_env

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"}


def manage(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# These are SQLite's backups: SQLite even when the suite runs on PostgreSQL.
SQLITE = {"DATABASE_URL": ""}


def fresh_database(data_dir: Path, *, links: int = 0) -> dict:
    """A migrated SQLite database in `data_dir` (no server), and the environment naming it."""
    env = site_env(data_dir, **SQLITE)
    assert manage(env, "migrate", "--noinput", "-v0").returncode == 0
    if links:
        seeded = manage(env, "seed_links", "--count", str(links), "--quiet")
        assert seeded.returncode == 0, seeded.stderr
    return env


def slugs_and_urls(database: Path) -> dict[str, str]:
    connection = sqlite3.connect(database)
    try:
        return dict(connection.execute("SELECT slug, original_url FROM links_link"))
    finally:
        connection.close()


def backups_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("shortener-*.sqlite3.gz"))


def test_backup_under_load_restores_into_a_fresh_site_with_every_link_made_before_it(tmp_path):
    backups = tmp_path / "backups"
    before: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []

    with running_site(tmp_path / "old", workers=2, **SQLITE) as (site, _process):
        seeded = manage(site.env, "seed_links", "--count", "3000")
        assert seeded.returncode == 0, seeded.stderr
        before.update(slugs_and_urls(site.data_dir / "shortener.sqlite3"))
        made_at: dict[str, tuple[float, str]] = {}

        def create(worker: int) -> None:
            with httpx.Client(base_url=site.base_url, timeout=30) as client:
                n = 0
                while not stop.is_set():
                    url = f"https://example.com/under-load/{worker}/{n}"
                    response = client.post("/", json={"url": url})
                    if response.status_code != 201:
                        errors.append(f"POST {response.status_code} {response.text}")
                        return
                    with lock:
                        made_at[response.json()["short_slug"]] = (time.monotonic(), url)
                    n += 1

        def follow() -> None:
            slugs = list(before)
            with httpx.Client(base_url=site.base_url, timeout=30, headers=BROWSER) as client:
                i = 0
                while not stop.is_set():
                    response = client.get(f"/{slugs[i % len(slugs)]}")
                    if response.status_code != 308:
                        errors.append(f"GET {response.status_code}")
                        return
                    i += 7

        threads = [threading.Thread(target=create, args=(n,)) for n in range(2)]
        threads += [threading.Thread(target=follow) for _ in range(2)]
        for thread in threads:
            thread.start()

        def made_since(moment: float) -> int:
            with lock:
                return sum(1 for at, _url in made_at.values() if at > moment)

        def wait_for_links(moment: float) -> None:
            deadline = time.monotonic() + 60
            while made_since(moment) < 20 and not errors and time.monotonic() < deadline:
                time.sleep(0.05)

        try:
            wait_for_links(0)  # the load is under way
            backup_started = time.monotonic()
            backup = manage(site.env, "backup_db", str(backups))
            backup_finished = time.monotonic()
            wait_for_links(backup_finished)  # and it goes on after the backup
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert not errors, errors[:3]
        assert backup.returncode == 0, backup.stderr
        with lock:
            made_before = {slug: url for slug, (at, url) in made_at.items() if at < backup_started}
            made_after = {slug for slug, (at, _url) in made_at.items() if at > backup_finished}
        assert made_before and made_after, "links must have been made before and after the backup"
        before.update(made_before)

    (backup_file,) = backups_in(backups)
    assert f"backup written to {backup_file} (" in backup.stdout
    # The snapshot passes the integrity check on its own, outside the command too.
    raw = tmp_path / "snapshot.sqlite3"
    raw.write_bytes(gzip.decompress(backup_file.read_bytes()))
    connection = sqlite3.connect(raw)
    assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    connection.close()

    # A fresh site: migrate, restore, serve.
    new_env = fresh_database(tmp_path / "new")
    restored = manage(new_env, "restore_db", str(backup_file))
    assert restored.returncode == 0, restored.stderr
    assert f"restored {backup_file} into" in restored.stdout
    with running_site(tmp_path / "new", workers=2, **SQLITE) as (new_site, _process):
        with httpx.Client(base_url=new_site.base_url, timeout=30) as client:
            wrong = {}
            for slug, url in before.items():
                response = client.get(f"/{slug}")
                if (response.status_code, response.headers.get("location")) != (308, url):
                    wrong[slug] = response.status_code
            assert not wrong, f"{len(wrong)} of {len(before)} links not served: {list(wrong.items())[:5]}"
            # Links made after the backup had finished are not in it.
            assert {client.get(f"/{slug}").status_code for slug in made_after} == {404}


def test_restore_refuses_while_the_app_serves_and_forced_leaves_every_worker_correct(tmp_path):
    backups = tmp_path / "backups"
    with running_site(tmp_path / "site", workers=2, **SQLITE) as (site, _process):
        with httpx.Client(base_url=site.base_url, timeout=30) as client:
            kept = client.post("/", json={"url": "https://example.com/in-the-backup"}).json()["short_slug"]
            assert manage(site.env, "backup_db", str(backups)).returncode == 0
            # Made after the backup, only inserted (no link changed or deleted): then
            # visited, so that each worker caches it.
            late = client.post("/", json={"url": "https://example.com/after-the-backup"}).json()["short_slug"]
            for _ in range(40):
                with httpx.Client(base_url=site.base_url, timeout=30) as fresh_connection:
                    assert fresh_connection.get(f"/{late}").status_code == 308

            refused = manage(site.env, "restore_db", "latest", "--from", str(backups))
            assert refused.returncode == 1
            assert "the app is serving" in refused.stderr
            assert "docker compose -f docker-compose.prod.yml stop app" in refused.stderr
            assert "--force" in refused.stderr
            assert "Traceback" not in refused.stderr
            # Nothing was restored.
            assert client.get(f"/{late}").status_code == 308

            forced = manage(site.env, "restore_db", "latest", "--from", str(backups), "--force")
            assert forced.returncode == 0, forced.stderr
            # Every worker (new connections land on either) answers from the restored data.
            for _ in range(40):
                with httpx.Client(base_url=site.base_url, timeout=30) as fresh_connection:
                    gone = fresh_connection.get(f"/{late}")
                    assert gone.status_code == 404, "a worker still serves a link the restore removed"
                    there = fresh_connection.get(f"/{kept}")
                    assert there.headers["location"] == "https://example.com/in-the-backup"
    # Once the app has stopped, no --force is needed.
    unforced = manage(site.env, "restore_db", "latest", "--from", str(backups))
    assert unforced.returncode == 0, unforced.stderr


def test_a_backup_made_by_newer_code_is_refused(tmp_path):
    future_env = fresh_database(tmp_path / "future", links=10)
    connection = sqlite3.connect(tmp_path / "future" / "shortener.sqlite3")
    with connection:
        connection.execute(
            "INSERT INTO django_migrations (app, name, applied) "
            "VALUES ('links', '9999_from_the_future', '2030-01-01')"
        )
    connection.close()
    assert manage(future_env, "backup_db", str(tmp_path / "backups")).returncode == 0
    (backup_file,) = backups_in(tmp_path / "backups")

    env = fresh_database(tmp_path / "current", links=5)
    refused = manage(env, "restore_db", str(backup_file))
    assert refused.returncode == 1
    assert "made by a newer version of the site" in refused.stderr
    assert "links.9999_from_the_future" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(slugs_and_urls(tmp_path / "current" / "shortener.sqlite3")) == 5


@pytest.fixture
def one_backup(tmp_path):
    env = fresh_database(tmp_path / "source", links=20)
    made = manage(env, "backup_db", str(tmp_path / "backups"))
    assert made.returncode == 0, made.stderr
    (backup_file,) = backups_in(tmp_path / "backups")
    target_env = fresh_database(tmp_path / "target", links=3)
    return backup_file, target_env, tmp_path / "target" / "shortener.sqlite3"


def test_a_backup_with_changed_bytes_is_refused(one_backup):
    backup_file, env, database = one_backup
    data = bytearray(backup_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    backup_file.write_bytes(bytes(data))
    refused = manage(env, "restore_db", str(backup_file))
    assert refused.returncode == 1
    assert "does not match its checksum" in refused.stderr and "refusing it" in refused.stderr
    assert len(slugs_and_urls(database)) == 3


def test_a_backup_with_a_changed_checksum_is_refused(one_backup):
    backup_file, env, database = one_backup
    checksum = backup_file.with_name(backup_file.name + ".sha256")
    checksum.write_text("0" * 64 + "  " + backup_file.name + "\n")
    refused = manage(env, "restore_db", str(backup_file))
    assert refused.returncode == 1
    assert "does not match its checksum" in refused.stderr
    checksum.unlink()
    missing = manage(env, "restore_db", str(backup_file))
    assert missing.returncode == 1
    assert "has no checksum file beside it" in missing.stderr
    assert len(slugs_and_urls(database)) == 3


def test_the_sidecar_checksum_is_what_sha256sum_checks(one_backup):
    backup_file, _env, _database = one_backup
    result = subprocess.run(
        ["sha256sum", "-c", backup_file.name + ".sha256"],
        cwd=backup_file.parent,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and f"{backup_file.name}: OK" in result.stdout


def test_restore_replaces_the_database_and_its_wal(one_backup, tmp_path):
    backup_file, env, database = one_backup
    restored = manage(env, "restore_db", str(backup_file))
    assert restored.returncode == 0, restored.stderr
    assert slugs_and_urls(database) == slugs_and_urls(tmp_path / "source" / "shortener.sqlite3")
    assert "20 links" in restored.stdout
    connection = sqlite3.connect(database)
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    connection.close()


def test_keep_prunes_the_oldest_backups_in_a_folder(tmp_path):
    env = fresh_database(tmp_path / "site", links=5)
    folder = tmp_path / "backups"
    outputs = []
    for _ in range(4):
        made = manage(env, "backup_db", str(folder), "--keep", "2")
        assert made.returncode == 0, made.stderr
        outputs.append(made.stdout)
    kept = backups_in(folder)
    assert len(kept) == 2
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [p.name for p in kept] + [p.name + ".sha256" for p in kept]
    )
    # The newest two are the ones kept, and the command said what it pruned.
    assert all(str(p) in outputs[-1] or str(p) in outputs[-2] for p in kept)
    assert "pruned " in outputs[-1]


def test_backup_of_a_damaged_database_fails_and_writes_nothing(tmp_path):
    env = fresh_database(tmp_path / "site", links=2000)
    database = tmp_path / "site" / "shortener.sqlite3"
    connection = sqlite3.connect(database)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    with open(database, "r+b") as file:
        file.seek(-20 * 4096, 2)  # pages of the links table's indexes, near the end
        file.write(b"\xa5" * 4096 * 4)
    failed = manage(env, "backup_db", str(tmp_path / "backups"))
    assert failed.returncode == 1
    assert "backup failed:" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert backups_in(tmp_path / "backups") == []


def test_backup_db_on_postgresql_points_to_managed_snapshots_or_pg_dump(tmp_path):
    # Configured for PostgreSQL as a deployment is; refused before any connection.
    env = site_env(tmp_path, DATABASE_URL="postgres://shortener@127.0.0.1:1/shortener")
    for command in (["backup_db", str(tmp_path / "backups")], ["restore_db", "latest", "--from", "/nowhere"]):
        result = manage(env, *command)
        assert result.returncode == 1
        assert "the database is postgresql, not SQLite" in result.stderr
        assert "pg_dump and pg_restore" in result.stderr and "managed snapshots" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_missing_or_unknown_source_gives_a_clear_error(tmp_path):
    env = fresh_database(tmp_path / "site")
    for args, message in [
        (["restore_db", str(tmp_path / "nothing.sqlite3.gz")], "there is no backup file"),
        (["restore_db", "latest", "--from", str(tmp_path / "empty")], "there are no backups at"),
        (["restore_db", "latest"], "'latest' needs a place to look"),
        (["backup_db", "ftp://example.com/x"], "is neither a folder nor an s3:// URL"),
        (["backup_db", str(tmp_path / "b"), "--keep", "0"], "--keep must be at least 1"),
    ]:
        result = manage({**env, "BACKUP_DEST": ""}, *args)
        assert result.returncode == 1, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
