"""The optional Litestream profile, through `docker compose`, against moto's S3 running
in the stack's own network: replicate, destroy the database volume, restore, and
the links are back."""

import subprocess
import time

import httpx
import pytest

from tests.stack import Stack, require_engine

pytestmark = pytest.mark.stack

BUCKET = "litestream-test"
# The stack's services that use the database volume, and nginx; moto (S3) stays up.
SERVICES = ("nginx", "app", "backup", "litestream")
WITH_LITESTREAM = ("-f", "tests/litestream/docker-compose.moto.yml", "--profile", "litestream")
CREATE_BUCKET = (
    "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:5000', region_name='us-east-1', "
    f"aws_access_key_id='testing', aws_secret_access_key='testing').create_bucket(Bucket='{BUCKET}')"
)
# How many links the replica holds now: restored, in the running Litestream
# container, to a scratch file, and counted there.
COUNT_REPLICATED_LINKS = (
    "sh",
    "-c",
    "rm -f /tmp/probe.sqlite3* "
    "&& litestream restore -o /tmp/probe.sqlite3 /data/shortener.sqlite3 >/dev/null "
    "&& python -c \"import sqlite3; print(sqlite3.connect('/tmp/probe.sqlite3')"
    ".execute('SELECT count(*) FROM links_link').fetchone()[0])\"",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_engine()
    stack = Stack.copy_of_project(tmp_path_factory.mktemp("litestream"), name="litestream")
    stack.write_env(LITESTREAM_BUCKET=BUCKET, LITESTREAM_PATH="shortener/litestream")
    try:
        stack.compose(*WITH_LITESTREAM, "up", "-d", "--build", "--wait")
        # Litestream retries until the bucket exists.
        deadline = time.monotonic() + 60
        while stack.compose("exec", "-T", "moto", "python", "-c", CREATE_BUCKET, check=False).returncode:
            assert time.monotonic() < deadline, "moto did not start"
            time.sleep(1)
        yield stack
    finally:
        stack.compose(*WITH_LITESTREAM, "down", "--remove-orphans", "-v", check=False)


def replicated_links(stack) -> int | None:
    """How many links the replica holds (None: nothing restorable yet)."""
    probe = stack.compose(*WITH_LITESTREAM, "exec", "-T", "litestream", *COUNT_REPLICATED_LINKS, check=False)
    return int(probe.stdout) if probe.returncode == 0 else None


# Builds three more images than the other stacks (moto's among them).
@pytest.mark.timeout(900)
def test_replicate_destroy_the_volume_restore_and_the_links_are_back(stack):
    made = {}
    with httpx.Client(base_url=stack.base_url, timeout=15) as client:
        for n in range(25):
            url = f"https://example.com/replicated/{n}"
            response = client.post("/", json={"url": url})
            assert response.status_code == 201, response.text
            made[response.json()["short_slug"]] = url
    # Litestream ships changes about every second once the bucket answers (it backs
    # off while the bucket is missing, so the first shipment may take longer). Wait
    # until the replica holds every link; then everything but S3 stops.
    deadline = time.monotonic() + 120
    while (replicated := replicated_links(stack)) != len(made):
        assert time.monotonic() < deadline, f"the replica holds {replicated} of the {len(made)} links"
        time.sleep(1)
    stack.compose(*WITH_LITESTREAM, "stop", *SERVICES)
    log = stack.compose(*WITH_LITESTREAM, "logs", "--no-color", "litestream").stdout
    assert "replicating to" in log and BUCKET in log

    # The volume is gone, as with a lost disk.
    stack.compose(*WITH_LITESTREAM, "rm", "-f", *SERVICES, "migrate")
    volume = f"{stack.project}_sqlite-data"
    subprocess.run(["docker", "volume", "rm", volume], capture_output=True, text=True, check=True)

    # docs/deploy-ec2.md: restore from the replica into the empty volume, then start.
    restored = stack.compose(
        *WITH_LITESTREAM, "run", "--rm", "--no-deps", "litestream", "restore", "/data/shortener.sqlite3"
    )
    assert "Error" not in restored.stdout + restored.stderr
    stack.compose(*WITH_LITESTREAM, "up", "-d", "--wait", *SERVICES)

    with httpx.Client(base_url=stack.base_url, timeout=15) as client:
        for slug, url in made.items():
            response = client.get(f"/{slug}")
            assert (response.status_code, response.headers.get("location")) == (308, url), slug
