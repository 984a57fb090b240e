"""The redirect fast path and its cache, through uvicorn with two workers: a
change made by any kind of writer is seen by every worker at once. Each request
is traced to the worker process that accepted its connection, so "every
worker" is shown, not assumed."""

import re
import socket
import time
from datetime import UTC, datetime, timedelta

import httpx
import psutil
import pytest

from tests.conftest import running_site

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
# Each worker must answer at least this many requests of every check.
PER_WORKER = 4
MAX_ATTEMPTS = 400


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with running_site(tmp_path_factory.mktemp("fast-path"), workers=2) as (site, process):
        site.process = process
        yield site


@pytest.fixture(scope="module")
def api_key(site) -> str:
    return site.manage("issue_api_key", "--name", "fast-path").stdout.split()[-1]


@pytest.fixture
def api(site, api_key):
    with httpx.Client(base_url=site.base_url, headers={"Authorization": f"Bearer {api_key}"}) as client:
        yield client


def workers(site) -> list[psutil.Process]:
    # uvicorn's worker processes (not multiprocessing's resource tracker).
    children = psutil.Process(site.process.pid).children()
    return [child for child in children if "spawn_main" in " ".join(child.cmdline())]


def one_request(site, path: str, method: str) -> tuple[int, int]:
    """(worker pid, status) of one request on a fresh connection."""
    port = int(site.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        request = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: {BROWSER}\r\n\r\n"
        sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the response headers"
            response += chunk
        status = int(response.split(b" ", 2)[1])
        # The connection is still open (keep-alive): whose is it?
        client_port = sock.getsockname()[1]
        for worker in workers(site):
            for conn in worker.net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == client_port:
                    return worker.pid, status
    raise AssertionError("no worker holds the connection")


def statuses_by_worker(site, slug: str, method: str = "GET") -> dict[int, set[int]]:
    """Status codes each worker answered, once both answered PER_WORKER times."""
    seen: dict[int, list[int]] = {worker.pid: [] for worker in workers(site)}
    assert len(seen) == 2
    for _ in range(MAX_ATTEMPTS):
        pid, status = one_request(site, f"/{slug}", method)
        seen[pid].append(status)
        if all(len(statuses) >= PER_WORKER for statuses in seen.values()):
            return {pid: set(statuses) for pid, statuses in seen.items()}
    raise AssertionError(f"both workers did not answer {PER_WORKER} times each: {seen}")


def every_worker_answers(site, slug: str, status: int, method: str = "GET") -> None:
    answers = statuses_by_worker(site, slug, method)
    assert all(statuses == {status} for statuses in answers.values()), answers


def new_link(site, slug: str, **fields) -> str:
    payload = {"url": f"https://example.com/fast/{slug}", "slug": slug, **fields}
    response = httpx.post(site.base_url + "/", json=payload)
    assert response.status_code == 201, response.text
    return slug


def test_fast_redirect_has_the_contract_headers(site):
    slug = new_link(site, "headers")
    response = httpx.get(f"{site.base_url}/{slug}")
    assert response.status_code == 308
    assert response.headers["location"] == "https://example.com/fast/headers"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-length"] == "0"
    # Django's middleware would have added this: the fast path answered.
    assert "x-frame-options" not in response.headers
    head = httpx.head(f"{site.base_url}/{slug}")
    assert (head.status_code, head.headers["location"]) == (308, "https://example.com/fast/headers")
    missing = httpx.get(f"{site.base_url}/NoSuch42")
    assert (missing.status_code, missing.json()) == (404, {"error": "URL not found"})
    assert missing.headers["content-type"] == "application/json"


def test_a_host_django_refuses_is_refused_on_every_worker(site):
    slug = new_link(site, "host-check")
    for _ in range(10):
        response = httpx.get(f"{site.base_url}/{slug}", headers={"Host": "evil.example"})
        assert (response.status_code, response.json()) == (
            400,
            {"error": "This site does not answer to that Host"},
        )


def test_a_slug_asked_for_before_it_existed_works_once_created(site):
    every_worker_answers(site, "later-made", 404)
    new_link(site, "later-made")
    every_worker_answers(site, "later-made", 308)


def disable_with_the_api(site, api, slug):
    assert api.patch(f"/api/links/{slug}/", json={"is_active": False}).status_code == 200


def disable_in_the_admin(site, api, slug):
    site.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        "User.objects.filter(username='ops').exists() or "
        "User.objects.create_superuser('ops', 'ops@example.com', 'admin-password-for-tests')",
    )
    [(link_id,)] = site.query("SELECT id FROM links_link WHERE slug = %s", (slug,))
    with httpx.Client(base_url=site.base_url, follow_redirects=True) as admin:
        login = admin.get("/admin/login/")
        admin.post(
            "/admin/login/",
            data={
                "username": "ops",
                "password": "admin-password-for-tests",
                "csrfmiddlewaretoken": csrf_token(login.text),
                "next": "/admin/",
            },
        )
        changelist = admin.get("/admin/links/link/")
        assert changelist.status_code == 200, "not logged in to the admin"
        done = admin.post(
            "/admin/links/link/",
            data={
                "action": "disable_links",
                "_selected_action": [str(link_id)],
                "csrfmiddlewaretoken": csrf_token(changelist.text),
            },
        )
        assert "1 link(s) disabled." in done.text


def csrf_token(page: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def disable_with_queryset_update(site, api, slug):
    site.manage(
        "shell",
        "-c",
        f"from links.models import Link; Link.objects.filter(slug='{slug}').update(is_active=False)",
    )


def disable_with_bulk_update(site, api, slug):
    site.manage(
        "shell",
        "-c",
        "from links.models import Link; "
        f"links = list(Link.objects.filter(slug='{slug}')); links[0].is_active = False; "
        "Link.objects.bulk_update(links, ['is_active'])",
    )


def disable_with_save_in_another_process(site, api, slug):
    site.manage(
        "shell",
        "-c",
        f"from links.models import Link; link = Link.objects.get(slug='{slug}'); "
        "link.is_active = False; link.save()",
    )


def disable_with_raw_sql(site, api, slug):
    site.query("UPDATE links_link SET is_active = %s WHERE slug = %s", (False, slug))


def delete_with_the_api(site, api, slug):
    assert api.delete(f"/api/links/{slug}/").status_code == 204


@pytest.mark.parametrize(
    "writer",
    [
        disable_with_the_api,
        disable_in_the_admin,
        disable_with_queryset_update,
        disable_with_bulk_update,
        disable_with_save_in_another_process,
        disable_with_raw_sql,
        delete_with_the_api,
    ],
)
def test_every_writer_stops_the_redirect_on_every_worker(site, api, writer):
    slug = new_link(site, writer.__name__.replace("_", "-"))
    every_worker_answers(site, slug, 308)  # cached in both workers
    writer(site, api, slug)
    every_worker_answers(site, slug, 404)


def test_enabling_again_is_seen_by_every_worker(site, api):
    slug = new_link(site, "re-enable")
    every_worker_answers(site, slug, 308)
    disable_with_the_api(site, api, slug)
    every_worker_answers(site, slug, 404)
    assert api.patch(f"/api/links/{slug}/", json={"is_active": True}).status_code == 200
    every_worker_answers(site, slug, 308)


def test_expiry_set_later_is_enforced_on_every_worker(site, api):
    slug = new_link(site, "expire-later")
    every_worker_answers(site, slug, 308)
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    assert api.patch(f"/api/links/{slug}/", json={"expires_at": soon}).status_code == 200
    time.sleep(1.2)
    # The cached expiry is checked on every hit, with no further change.
    every_worker_answers(site, slug, 410)


def test_a_click_limit_set_later_is_exact(site, api):
    slug = new_link(site, "limit-later")
    every_worker_answers(site, slug, 308, method="HEAD")
    assert api.patch(f"/api/links/{slug}/", json={"max_clicks": 3}).status_code == 200
    seen = [
        httpx.get(f"{site.base_url}/{slug}", headers={"User-Agent": BROWSER}).status_code for _ in range(6)
    ]
    assert seen == [308, 308, 308, 410, 410, 410]


def test_clicks_on_the_fast_path_are_counted_and_head_is_not(site):
    slug = new_link(site, "fast-clicks")
    # At least PER_WORKER HEADs on each worker, none of them to be counted.
    every_worker_answers(site, slug, 308, method="HEAD")
    gets = 30
    for _ in range(gets):
        assert httpx.get(f"{site.base_url}/{slug}", headers={"User-Agent": BROWSER}).status_code == 308
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        [(clicks,)] = site.query("SELECT clicks FROM links_link WHERE slug = %s", (slug,))
        if clicks >= gets:
            break
        time.sleep(0.2)
    # Exactly the GETs: had any HEAD been counted, this would be larger.
    time.sleep(1.5)  # one more flush interval, for any late HEAD count to land
    [(clicks,)] = site.query("SELECT clicks FROM links_link WHERE slug = %s", (slug,))
    assert clicks == gets
