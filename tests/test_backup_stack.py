"""Backups in the production stack, through `docker compose`: the scheduled backup
service, and the documented restore (docs/deploy-ec2.md, "Backups"): stop the app,
restore in a one-off container on the same volume, start the app.
Tests run in file order and share one stack."""

import gzip
import hashlib
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.stack import Stack, require_engine

pytestmark = pytest.mark.stack

# The documented command (docs/deploy-ec2.md, "Restoring").
RESTORE = ("run", "--rm", "--no-deps", "backup", "python", "manage.py", "restore_db", "latest")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_engine()
    stack = Stack.copy_of_project(tmp_path_factory.mktemp("backup-stack"), name="backup")
    # A short interval, so the test sees the schedule at work.
    stack.write_env(BACKUP_INTERVAL="3s", BACKUP_KEEP="3")
    try:
        stack.up()
        yield stack
    finally:
        stack.down(volumes=True)


@pytest.fixture(scope="module")
def host_backups(stack) -> Path:
    # The default BACKUP_HOST_DIR: beside the project folder, outside the Docker volume.
    return stack.directory.parent / "shortener-backups"


def backups_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("shortener-*.sqlite3.gz"))


def health(stack: Stack, service: str) -> str:
    return stack.container(service)["State"]["Health"]["Status"]


def wait_for(condition, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def slugs_in_backup(path: Path, tmp_path: Path) -> set[str]:
    raw = tmp_path / "check.sqlite3"
    raw.write_bytes(gzip.decompress(path.read_bytes()))
    connection = sqlite3.connect(raw)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return {row[0] for row in connection.execute("SELECT slug FROM links_link")}
    finally:
        connection.close()


@pytest.fixture(scope="module")
def links(stack) -> dict[str, str]:
    made = {}
    with httpx.Client(base_url=stack.base_url, timeout=15) as client:
        for n in range(20):
            url = f"https://example.com/backed-up/{n}"
            response = client.post("/", json={"url": url})
            assert response.status_code == 201, response.text
            made[response.json()["short_slug"]] = url
    return made


def test_the_backup_service_takes_backups_on_schedule_into_the_host_folder(
    stack, host_backups, links, tmp_path
):
    assert health(stack, "backup") == "healthy"
    links_made = time.time()

    def a_backup_with_the_links():
        for path in backups_in(host_backups):
            if path.stat().st_mtime > links_made + 0.5 and set(links) <= slugs_in_backup(path, tmp_path):
                return path
        return None

    wait_for(a_backup_with_the_links, timeout=60, what="a scheduled backup holding the new links")
    # Several intervals later, the oldest have been pruned to BACKUP_KEEP.
    time.sleep(8)
    kept = backups_in(host_backups)
    assert len(kept) == 3
    for path in kept:
        assert (
            (path.parent / (path.name + ".sha256"))
            .read_text()
            .startswith(hashlib.sha256(path.read_bytes()).hexdigest())
        )
    log = stack.logs("backup")
    assert "backup written to /backups/shortener-" in log
    assert "pruned /backups/shortener-" in log
    # Backups run as the app's user: nothing in the volume belongs to root.
    foreign = stack.compose("exec", "-T", "app", "find", "/data", "!", "-user", "app").stdout.strip()
    assert foreign == ""
    # `exec` runs as root, past the entrypoint: refused, it would leave root's files there.
    as_root = stack.compose(
        "exec", "-T", "backup", "python", "manage.py", "backup_db", "/backups", check=False
    )
    assert as_root.returncode == 1
    assert "running as root, but /data belongs to uid 10001" in as_root.stderr
    assert "run --rm --no-deps backup" in as_root.stderr


def test_restore_is_refused_while_the_app_serves(stack, links):
    # Without --rm: the container engine of CI loses the exit status of `run --rm`
    # (Docker keeps it); the status is what is checked here.
    refused = stack.compose(*(arg for arg in RESTORE if arg != "--rm"), check=False)
    labels = [f"label=com.docker.compose.project={stack.project}", "label=com.docker.compose.oneoff=True"]
    one_off = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", labels[0], "--filter", labels[1]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    subprocess.run(["docker", "rm", *one_off], capture_output=True, check=True)
    assert refused.returncode == 1
    output = refused.stdout + refused.stderr
    assert "the app is serving from /data/shortener.sqlite3" in output
    assert "docker compose -f docker-compose.prod.yml stop app" in output


def test_the_documented_restore_procedure(stack, host_backups, links):
    stack.compose("stop", "backup")
    # "A backup now" (docs/deploy-ec2.md), as written.
    before = set(backups_in(host_backups))
    now = stack.compose("run", "--rm", "--no-deps", "backup", "python", "manage.py", "backup_db", "/backups")
    (newest,) = set(backups_in(host_backups)) - before
    assert f"backup written to /backups/{newest.name} (" in now.stdout
    with httpx.Client(base_url=stack.base_url, timeout=15) as client:
        late = client.post("/", json={"url": "https://example.com/after-the-last-backup"}).json()[
            "short_slug"
        ]
        assert client.get(f"/{late}").status_code == 308

    # docs/deploy-ec2.md, "Restoring": stop the app, restore, start.
    stack.compose("stop", "app")
    restored = stack.compose(*RESTORE)
    assert f"restored /backups/{newest.name} into /data/shortener.sqlite3" in restored.stdout
    stack.compose("up", "-d", "--wait")

    with httpx.Client(base_url=stack.base_url, timeout=15) as client:
        for slug, url in links.items():
            response = client.get(f"/{slug}")
            assert (response.status_code, response.headers["location"]) == (308, url)
        assert client.get(f"/{late}").status_code == 404
    assert health(stack, "backup") == "healthy"


def test_a_failing_backup_shows_in_the_logs_and_the_health(stack):
    # S3 that cannot be reached: every backup fails.
    stack.write_env(
        BACKUP_DEST="s3://shortener-backups/unreachable",
        BACKUP_INTERVAL="3s",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    stack.compose("up", "-d", "--no-deps", "backup")
    wait_for(
        lambda: health(stack, "backup") == "unhealthy",
        timeout=120,
        what="the backup service to turn unhealthy",
    )
    log = stack.logs("backup")
    assert "backup failed: cannot list the backups at s3://shortener-backups/unreachable" in log
    last_check = stack.container("backup")["State"]["Health"]["Log"][-1]
    assert "unhealthy: backup failed" in last_check["Output"]
