"""The real production stack: images built from docker/, nginx in front, SQLite on a
named volume. Tests run in file order; later ones restart and recreate containers."""

import re
import subprocess
import time
from datetime import datetime

import httpx
import pytest

from tests.stack import ScaleStack, Stack, require_engine

pytestmark = pytest.mark.stack

INVALID = {"error": "Invalid URL format"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_engine()
    stack = Stack.copy_of_project(tmp_path_factory.mktemp("stack"), name="main")
    try:
        stack.up()
        yield stack
    finally:
        stack.down(volumes=True)


@pytest.fixture
def http(stack):
    with httpx.Client(base_url=stack.base_url, timeout=15) as client:
        yield client


def started(container: dict) -> datetime:
    return datetime.fromisoformat(container["State"]["StartedAt"][:26].rstrip("Z"))


def finished(container: dict) -> datetime:
    return datetime.fromisoformat(container["State"]["FinishedAt"][:26].rstrip("Z"))


def test_migration_ran_to_completion_before_the_app_started(stack):
    migrate = stack.container("migrate")
    assert migrate["State"]["Status"] == "exited"
    assert migrate["State"]["ExitCode"] == 0
    assert migrate["Config"]["Entrypoint"] == ["python", "manage.py", "migrate", "--noinput"]
    assert not migrate["Config"]["Cmd"]
    app = stack.container("app")
    assert started(app) >= finished(migrate)
    assert "Applying links.0001_initial... OK" in stack.logs("migrate")


def test_the_contract_holds_through_nginx(http, stack):
    assert http.get("/").status_code == 200
    created = http.post("/", json={"url": "https://example.com/through-nginx"})
    assert created.status_code == 201
    body = created.json()
    assert body["short_url"] == f"{stack.base_url}/{body['short_slug']}"
    again = http.post("/", json={"url": "https://example.com/through-nginx"})
    assert (again.status_code, again.json()) == (200, body)
    redirect = http.get(f"/{body['short_slug']}")
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "https://example.com/through-nginx"
    head = http.head(f"/{body['short_slug']}")
    assert (head.status_code, head.headers["location"]) == (308, "https://example.com/through-nginx")
    missing = http.get("/NoSuch9")
    assert (missing.status_code, missing.json()) == (404, {"error": "URL not found"})


def test_the_app_listens_only_on_its_socket_which_nginx_shares(stack):
    # No port and no address: nothing to resolve or go stale when the app is recreated.
    assert "Uvicorn running on unix socket /run/shortener/app.sock" in stack.logs("app")
    probe = (
        "import socket, sys\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 8000), timeout=2)\n"
        "except ConnectionRefusedError:\n"
        "    sys.exit(0)\n"
        "sys.exit('something listens on 127.0.0.1:8000')\n"
    )
    stack.compose("exec", "-T", "app", "python", "-c", probe)
    mounts = {mount["Destination"]: mount.get("Name") for mount in stack.container("nginx")["Mounts"]}
    app_mounts = {mount["Destination"]: mount.get("Name") for mount in stack.container("app")["Mounts"]}
    assert mounts["/run/shortener"] == app_mounts["/run/shortener"] == f"{stack.project}_app-socket"


@pytest.mark.parametrize(
    "payload",
    [
        {"url": "javascript:alert(1)"},
        {"url": "ftp://example.com/"},
        {"url": "https://exa mple.com"},
        {"url": "https://example.com/" + "x" * 2100},
        {"url": 7},
        {},
    ],
)
def test_bad_input_through_nginx_gets_the_contract_error(http, payload):
    response = http.post("/", json=payload)
    assert (response.status_code, response.json()) == (400, INVALID)


def test_a_loop_through_nginx_gets_the_contract_error_and_the_reason(http):
    response = http.post("/", json={"url": "http://127.0.0.1/loop"})
    reason = "The URL points back to this site: a short link to it would loop."
    assert (response.status_code, response.json()) == (400, {**INVALID, "detail": reason})


def test_malformed_json_and_oversized_bodies_get_json_errors(http):
    malformed = http.post("/", content=b'{"url": ', headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and "error" in malformed.json()
    huge = http.post(
        "/", content=b'{"url": "' + b"a" * 40_000 + b'"}', headers={"Content-Type": "application/json"}
    )
    assert huge.status_code == 413


def test_internationalized_url_through_nginx(http):
    body = http.post("/", json={"url": "https://例え.jp/パス?q=値"}).json()
    redirect = http.get(f"/{body['short_slug']}")
    assert redirect.headers["location"] == "https://xn--r8jz45g.jp/%E3%83%91%E3%82%B9?q=%E5%80%A4"


def test_nginx_hides_its_version_and_compresses_json(http):
    response = http.get("/", headers={"Accept-Encoding": "gzip"})
    assert response.headers["server"] == "nginx"
    long_url = "https://example.com/" + "compressible/" * 40
    http.post("/", json={"url": long_url})
    # nginx compresses 200s (not 201s): ask for the existing link.
    found = http.post("/", json={"url": long_url}, headers={"Accept-Encoding": "gzip"})
    assert found.status_code == 200
    assert found.headers.get("content-encoding") == "gzip"
    assert found.json()["original_url"] == long_url


def test_admin_login_and_its_css_come_through_nginx(http):
    login = http.get("/admin/login/")
    assert login.status_code == 200
    stylesheets = re.findall(r'href="(/static/[^"]+\.css)"', login.text)
    assert stylesheets
    for href in stylesheets:
        css = http.get(href, headers={"Accept-Encoding": "gzip"})
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")


def test_the_app_runs_as_a_non_root_user(stack):
    uid = stack.compose("exec", "-T", "app", "id", "-u").stdout.strip()
    assert uid != "0"
    image = stack.container("app")["Config"]
    assert image["User"] == "app"


def test_no_secret_is_baked_into_the_images(stack):
    for service in ("app", "migrate"):
        image_id = stack.container(service)["Image"]
        inspect = subprocess.run(
            ["docker", "image", "inspect", image_id], capture_output=True, text=True, check=True
        ).stdout
        history = subprocess.run(
            ["docker", "history", "--no-trunc", image_id], capture_output=True, text=True, check=True
        ).stdout
        assert stack.secret_key not in inspect and stack.secret_key not in history
        assert "DJANGO_SECRET_KEY" not in inspect and "DJANGO_SECRET_KEY" not in history
    files = stack.compose("exec", "-T", "app", "sh", "-c", "ls -a /app; ls /data").stdout
    assert ".env" not in files.split()
    assert ".git" not in files.split()


def test_recreated_app_with_public_base_url_and_a_throttle_behind_the_edge(stack):
    with httpx.Client(base_url=stack.base_url, timeout=15) as http:
        slug = http.post("/", json={"url": "https://example.com/before-recreate"}).json()["short_slug"]
        stack.write_env(PUBLIC_BASE_URL="https://sho.rt", SHORTENER_ANON_CREATE_RATE="3/min")
        try:
            stack.up("app")
            # The throttle's windows live in the database: start from zero.
            stack.compose(
                "exec",
                "-T",
                "app",
                "python",
                "manage.py",
                "shell",
                "-c",
                "from links.models import RateLimitBucket; RateLimitBucket.objects.all().delete()",
            )
            # nginx kept running; the recreated app is reached at once, no 502.
            recreated = http.post("/", json={"url": "https://example.com/after-recreate"})
            assert recreated.status_code == 201
            assert recreated.json()["short_url"] == f"https://sho.rt/{recreated.json()['short_slug']}"
            assert http.get(f"/{slug}").status_code == 308
            # The app throttles by the address nginx saw: a client's own
            # X-Forwarded-For (overwritten at the edge) buys no fresh allowance.
            statuses = [
                http.post(
                    "/",
                    json={"url": f"https://example.com/spoof/{i}"},
                    headers={"X-Forwarded-For": f"203.0.113.{i}"},
                ).status_code
                for i in range(3)
            ]
            assert statuses == [201, 201, 429]
            throttled = http.post("/", json={"url": "https://example.com/spoof/x"})
            assert throttled.json()["error"].startswith("Request was throttled")
            assert "retry-after" in throttled.headers
        finally:
            stack.write_env()
            stack.up("app")


def test_nginx_answers_json_when_the_app_is_down(stack, http):
    stack.compose("stop", "app")
    try:
        response = http.get("/")
        # Refused (502) or, with the stopped container's address unanswered, timed out (504).
        assert response.status_code in (502, 504)
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"] in (
            "The app is not reachable, try again shortly",
            "The app took too long to answer",
        )
    finally:
        stack.up("app")
    assert http.get("/").status_code == 200


def test_data_survives_a_killed_app_and_a_full_down_up(stack, http):
    slug = http.post("/", json={"url": "https://example.com/durable"}).json()["short_slug"]
    stack.compose("kill", "app")
    stack.up()
    assert http.get(f"/{slug}").headers["location"] == "https://example.com/durable"
    stack.compose("down")
    stack.up()
    redirect = http.get(f"/{slug}")
    assert (redirect.status_code, redirect.headers["location"]) == (308, "https://example.com/durable")


def test_link_creation_is_rate_limited_with_a_json_429(http):
    statuses = []
    bodies = []
    for i in range(80):
        response = http.post("/", json={"url": f"https://example.com/burst/{i}"})
        statuses.append(response.status_code)
        if response.status_code == 429:
            bodies.append((response.json(), response.headers.get("retry-after")))
    # A burst of at least 20 goes through; a flood is cut off with JSON.
    assert statuses[:20] == [201] * 20
    assert 429 in statuses
    assert bodies[0][0] == {"error": "Too many requests, slow down"}
    assert bodies[0][1] is not None
    time.sleep(2)
    # Reads are never limited.
    assert all(http.get("/").status_code == 200 for _ in range(50))


def test_a_failing_migration_keeps_the_app_from_starting(tmp_path):
    require_engine()
    broken = Stack.copy_of_project(tmp_path, name="broken")
    migrations = broken.directory / "links/migrations"
    latest = max(path.stem for path in migrations.glob("0*.py"))
    (migrations / "0999_broken.py").write_text(
        "from django.db import migrations\n\n\n"
        "def fail(apps, schema_editor):\n"
        "    raise RuntimeError('deliberately broken migration')\n\n\n"
        "class Migration(migrations.Migration):\n"
        f"    dependencies = [('links', '{latest}')]\n"
        "    operations = [migrations.RunPython(fail)]\n"
    )
    try:
        result = broken.up(check=False)
        assert result.returncode != 0
        migrate = broken.container("migrate")
        assert migrate["State"]["ExitCode"] != 0
        assert "deliberately broken migration" in broken.logs("migrate")
        app = broken.container("app")
        assert app["State"]["Status"] in ("created", "configured")
        assert not app["State"]["Running"]
        assert app["State"]["StartedAt"].startswith("0001") or app["State"].get("Pid", 0) == 0
    finally:
        broken.down(volumes=True)


def project_resources(project: str) -> list[str]:
    """The containers, networks and volumes the engine holds for a compose project."""
    label = f"label=com.docker.compose.project={project}"
    found = []
    for kind in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
        listing = subprocess.run(["docker", *kind, "-q", "--filter", label], capture_output=True, text=True)
        assert listing.returncode == 0, listing.stderr
        found += listing.stdout.split()
    return found


def test_a_stack_starts_empty_where_an_interrupted_run_left_its_volumes(tmp_path):
    # A run killed before its teardown leaves the project's containers and named volumes
    # behind; the next run under the same project name must not inherit them (CI once
    # met a certificate from another pebble that way).
    require_engine()
    interrupted = Stack.copy_of_project(tmp_path / "interrupted", name="leftover")
    try:
        interrupted.up()
        created = httpx.post(f"{interrupted.base_url}/", json={"url": "https://example.com/left-behind"})
        assert created.status_code == 201, created.text
        slug = created.json()["short_slug"]
        # No teardown: the run "dies" here, and the next one starts.
        fresh = Stack.copy_of_project(tmp_path / "fresh", name="leftover")
        fresh.up()
        with httpx.Client(base_url=fresh.base_url, timeout=15) as http:
            assert http.get("/").status_code == 200
            assert http.get(f"/{slug}").status_code == 404
        assert project_resources(fresh.project)
        # The same for a stack whose compose files cannot be read yet (the scale stack's
        # need passwords its .env is given only after the copy).
        ScaleStack.copy_of_project(tmp_path / "scale", name="leftover")
        assert project_resources(fresh.project) == []
    finally:
        interrupted.down(volumes=True)
