import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command

from links.clicks import ROLLED_UP_TO
from links.fastpath import VERSION_POLL_SECONDS, TableFacts

# Shared with the benchmark harness; imported from here by most tests.
from tests.project import BROWSER_USER_AGENT, PROJECT_DIR, free_port  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def collected_static(django_db_blocker) -> None:
    """The manifest storage needs collectstatic, as in production."""
    with django_db_blocker.unblock():
        call_command("collectstatic", "--noinput", verbosity=0)


def create(client, payload, **extra):
    """POST / through Django's test client: a JSON body (a dict, or raw text as is)."""
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return client.post("/", body, content_type="application/json", **extra)


def wait_until_up(url: str, *, timeout: float = 30, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s")


@dataclass
class LiveSite:
    base_url: str
    data_dir: Path
    env: dict

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of `sql` (%s placeholders) on the site's own database, SQLite or PostgreSQL."""
        return query_database(self.env, sql, params)

    def clicks(self, slug: str) -> int:
        """The link's stored clicks (its links_linkclicks row; none yet is 0)."""
        [(clicks,)] = self.query(
            "SELECT COALESCE(SUM(c.clicks), 0) FROM links_link l "
            "LEFT JOIN links_linkclicks c ON c.link_id = l.id WHERE l.slug = %s",
            (slug,),
        )
        return int(clicks)

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=PROJECT_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )


def site_env(data_dir: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="live-test-secret",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        SHORTENER_DATA_DIR=str(data_dir),
        SQLITE_PATH=str(data_dir / "shortener.sqlite3"),
        SHORTENER_CLICK_FLUSH_SECONDS="1",
    )
    if env.get("DATABASE_URL", "").startswith("postgres"):
        # A database of the site's own on the same server, as a fresh SQLite file would be.
        env["DATABASE_URL"] = fresh_postgres_database(env["DATABASE_URL"])
    env.update(extra)
    return env


def fresh_postgres_database(url: str) -> str:
    import psycopg

    server, _, _name = url.rpartition("/")
    name = f"site_{secrets.token_hex(6)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def query_database(env: dict, sql: str, params: tuple = ()) -> list[tuple]:
    """`sql` on the database a site with this environment uses."""
    url = env.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as connection:
            cursor = connection.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    with sqlite3.connect(env["SQLITE_PATH"]) as connection:
        return connection.execute(sql.replace("%s", "?"), params).fetchall()


# How long a committed change may take to reach every worker. SQLite: none, a
# cached answer first looks whether the WAL index's header moved (and then asks
# PRAGMA data_version), a miss reads the version with the row unless nothing was
# committed since. PostgreSQL: the NOTIFY reaches each worker's
# listening thread asynchronously (typically well under a millisecond, longer on
# a loaded machine), and the version row is read every VERSION_POLL_SECONDS even
# if a notification is lost: that is the bound docs/scaling.md gives.
ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgres")


def copy_of_test_database(copy: Path, *, journal_mode: str = "wal") -> Path:
    """A copy of the SQLite test database, as committed, at `copy`."""
    from django.db import connection

    with closing(sqlite3.connect(connection.settings_dict["NAME"])) as source:
        with closing(sqlite3.connect(copy)) as target:
            source.backup(target)
            target.execute(f"PRAGMA journal_mode={journal_mode}")
    return copy


def disable_in(database: Path, slug: str) -> None:
    """Another connection disables `slug` in the SQLite file `database`, committed."""
    with closing(sqlite3.connect(database)) as writer, writer:
        writer.execute("UPDATE links_link SET is_active = 0 WHERE slug = ?", (slug,))


def facts_of(database: Path) -> TableFacts:
    """What the redirect table's keeper reads of the SQLite file `database`."""
    with closing(sqlite3.connect(database)) as reader:
        return TableFacts.read(reader.cursor())


# On SQLite a flush journals its clicks (links.clicks); PostgreSQL's writes the counters.
JOURNALS_CLICKS = pytest.mark.skipif(ON_POSTGRES, reason="the click journal is SQLite's")
JOURNAL_WAITING = (
    f"SELECT link_id, day_clicks FROM clicks.links_clickjournal WHERE id > ({ROLLED_UP_TO}) ORDER BY id"  # noqa: S608
)


@pytest.fixture
def empty_click_journal(db) -> None:
    """The journal's file emptied of what earlier tests left (SQLite): a test
    database's flush between tests empties the database's tables, not it."""
    from django.db import connection

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM clicks.links_clickjournal")


def journal_waiting() -> list[tuple[int, int]]:
    """The click journal's rows not rolled up yet (SQLite), as (link id, the
    day's clicks): rows up to the last one rolled up are done, whether or not
    their deletion (after the roll-up's commit) has run."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(JOURNAL_WAITING)
        return cursor.fetchall()


SETTLE_SECONDS = VERSION_POLL_SECONDS if ON_POSTGRES else 0.0

# As in production (docker/app.Dockerfile).
PRODUCTION_HTTP_PROTOCOL = "links.protocol:FastRedirectProtocol"


@contextmanager
def running_site(
    data_dir: Path, *, workers: int = 2, http: str = PRODUCTION_HTTP_PROTOCOL, **extra_env: str
) -> Iterator[tuple[LiveSite, subprocess.Popen]]:
    """The site served by uvicorn on a fresh SQLite file: separate worker
    processes, real sockets, nothing shared with the test process. `http` is
    uvicorn's --http: production's protocol unless a test compares another."""
    env = site_env(data_dir, **extra_env)
    site = LiveSite(base_url="", data_dir=data_dir, env=env)
    site.manage("migrate", "--noinput", "-v0")
    port = free_port()
    site.base_url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "shortener_site.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--http",
            http,
        ],
        cwd=PROJECT_DIR,
        env=env,
    )
    try:
        wait_until_up(site.base_url + "/", process=process)
        yield site, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def live_site(tmp_path_factory) -> Iterator[LiveSite]:
    with running_site(tmp_path_factory.mktemp("live-data")) as (site, _process):
        yield site


@pytest.fixture
def api_key(db) -> str:
    """A fresh management API key (the plain key, as issue_api_key prints it)."""
    from links.services import issue_api_key

    return issue_api_key(name="tests")[1]


@pytest.fixture
def api(client, api_key):
    """Django's test client, sending the API key."""
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"
    return client


@contextmanager
def failing_writes_to(table: str, when: str = "true", event: str = "UPDATE"):
    """A real database error inside the writer's transaction, as a full disk or a
    read-only file gives: every `event` (UPDATE, INSERT or DELETE) on `table` aborts."""
    from django.db import connection

    if connection.vendor == "postgresql":
        create = [
            "CREATE FUNCTION fail_on_purpose() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'database or disk is full'; END $$ LANGUAGE plpgsql",
            f"CREATE TRIGGER fail_on_purpose BEFORE {event} ON {table} FOR EACH ROW WHEN ({when}) "
            "EXECUTE FUNCTION fail_on_purpose()",
        ]
        drop = [f"DROP TRIGGER fail_on_purpose ON {table}", "DROP FUNCTION fail_on_purpose()"]
    else:
        # A table of an attached file (schema.table) takes the trigger in its schema.
        schema, _, name = table.rpartition(".")
        trigger = f"{schema}.fail_on_purpose" if schema else "fail_on_purpose"
        create = [
            f"CREATE TRIGGER {trigger} BEFORE {event} ON {name} WHEN {when} "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        ]
        drop = [f"DROP TRIGGER {trigger}"]
    with connection.cursor() as cursor:
        for statement in create:
            cursor.execute(statement)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for statement in drop:
                cursor.execute(statement)
