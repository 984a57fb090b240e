"""Issue 9 through the real production stack (nginx -> two uvicorn workers ->
SQLite on a volume): the throttle holds behind nginx, spoofed hosts make
nothing, every edge error is JSON, and the container's health follows the
database."""

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.stack import Stack, require_engine

pytestmark = pytest.mark.stack

LIMIT = 60
APP_THROTTLED = "Request was throttled."


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_engine()
    stack = Stack.copy_of_project(tmp_path_factory.mktemp("trust"), name="trust")
    stack.write_env(
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        PUBLIC_BASE_URL=stack.base_url,
        SHORTENER_ANON_CREATE_RATE=f"{LIMIT}/min",
        WEB_CONCURRENCY="2",
    )
    try:
        stack.up()
        yield stack
    finally:
        stack.down(volumes=True)


def app_python(stack, code: str) -> str:
    return stack.compose("exec", "-T", "app", "python", "-c", code).stdout


def stored_links(stack) -> int:
    code = (
        "import sqlite3; db = sqlite3.connect('/data/shortener.sqlite3'); "
        "print(db.execute('SELECT COUNT(*) FROM links_link').fetchone()[0])"
    )
    return int(app_python(stack, code).split()[-1])


def test_the_app_throttle_holds_behind_nginx(stack):
    """Paced so that nginx (40 at once, then 10 a second) lets more than the
    app's limit through: the app's own counter must stop them."""

    def create(number: int) -> httpx.Response:
        time.sleep(number / 16)  # about 16 a second, over 12 seconds
        return httpx.post(
            f"{stack.base_url}/", json={"url": f"https://example.com/paced/{number}"}, timeout=30
        )

    with ThreadPoolExecutor(max_workers=40) as pool:
        responses = list(pool.map(create, range(200)))
    statuses = Counter(response.status_code for response in responses)
    assert statuses[201] == LIMIT, statuses
    assert set(statuses) == {201, 429}, statuses
    by_app = [r for r in responses if r.status_code == 429 and r.json()["error"].startswith(APP_THROTTLED)]
    assert by_app, "nginx refused everything beyond the limit: the app's throttle was not exercised"
    for response in responses:
        if response.status_code == 429:
            assert response.headers["content-type"] == "application/json"
            assert int(response.headers["retry-after"]) > 0
    assert stored_links(stack) == LIMIT


def test_a_spoofed_host_creates_nothing_and_follows_nothing(stack):
    before = stored_links(stack)
    spoofed = httpx.post(
        f"{stack.base_url}/", json={"url": "https://example.com/spoof"}, headers={"Host": "evil.example"}
    )
    assert (spoofed.status_code, spoofed.json()) == (400, {"error": "This site does not answer to that Host"})
    redirect = httpx.get(f"{stack.base_url}/anything", headers={"Host": "evil.example"})
    assert (redirect.status_code, redirect.json()) == (
        400,
        {"error": "This site does not answer to that Host"},
    )
    assert stored_links(stack) == before


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("FOO", "/", None, 405),
        ("TRACE", "/abc", None, 405),
        ("POST", "/abc+", b"{}", 405),
        ("DELETE", "/abc/qr.png", None, 405),
        ("POST", "/", b'{"url": "' + b"a" * 20_000 + b'"}', 413),
        ("GET", "/a/b/c", None, 404),
    ],
)
def test_edge_and_app_errors_are_json(stack, method, path, body, status):
    response = httpx.request(
        method, f"{stack.base_url}{path}", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"}


def health(stack) -> str:
    return stack.container("app")["State"]["Health"]["Status"]


def wait_for_health(stack, wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if health(stack) == wanted:
            return
        time.sleep(1)
    raise AssertionError(f"app health stayed {health(stack)!r}, expected {wanted!r}")


def test_the_container_turns_unhealthy_while_the_database_cannot_be_written(stack):
    """A real SQLite failure on every write (as a full disk or a read-only
    volume gives), made inside the app's own container."""
    database = "sqlite3.connect('/data/shortener.sqlite3', isolation_level=None)"
    fail = (
        "CREATE TRIGGER fail_on_purpose BEFORE UPDATE ON links_linktableversion "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )
    app_python(stack, f"import sqlite3; {database}.execute({json.dumps(fail)})")
    try:
        wait_for_health(stack, "unhealthy")
        # The contract's health answer stays 200; the failure shows where it should.
        assert httpx.get(f"{stack.base_url}/").json() == {"status": "ok"}
        assert httpx.get(f"{stack.base_url}/healthz").status_code == 503
    finally:
        app_python(stack, f"import sqlite3; {database}.execute('DROP TRIGGER fail_on_purpose')")
    wait_for_health(stack, "healthy")
