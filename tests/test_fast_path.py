"""The redirect fast path and its cache, through uvicorn with two workers: a
change made by any kind of writer is seen by every worker at once (on
PostgreSQL: within the bound its design gives, below). Each request is traced
to the worker process that accepted its connection, so "every worker" is
shown, not assumed."""

import os
import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from links.fastpath import open_redirect_table, redirect_table_path
from links.redirect_table import DELEGATE, write_table
from tests.conftest import ON_POSTGRES, SETTLE_SECONDS, facts_of, running_site
from tests.project import BROWSER_USER_AGENT
from tests.workers import traced_request, workers

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


def statuses_by_worker(site, slug: str, method: str = "GET", host: str | None = None) -> dict[int, set[int]]:
    """Status codes each worker answered, once both answered PER_WORKER times."""
    seen: dict[int, list[int]] = {worker.pid: [] for worker in workers(site.process)}
    assert len(seen) == 2
    for _ in range(MAX_ATTEMPTS):
        pid, status, _headers, _body = traced_request(
            site.process, site.base_url, method, f"/{slug}", host=host
        )
        seen[pid].append(status)
        if all(len(statuses) >= PER_WORKER for statuses in seen.values()):
            return {pid: set(statuses) for pid, statuses in seen.items()}
    raise AssertionError(f"both workers did not answer {PER_WORKER} times each: {seen}")


def every_worker_answers(site, slug: str, status: int, method: str = "GET", host: str | None = None) -> None:
    """Every worker answers `status`, at once (SQLite), or in a round of requests
    that starts once SETTLE_SECONDS have passed (PostgreSQL)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        started = time.monotonic()
        answers = statuses_by_worker(site, slug, method, host)
        if all(statuses == {status} for statuses in answers.values()) or started >= deadline:
            break
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
    every_worker_answers(site, slug, 308)  # cached in both workers
    every_worker_answers(site, slug, 400, host="evil.example")
    response = httpx.get(f"{site.base_url}/{slug}", headers={"Host": "evil.example"})
    assert response.json() == {"error": "This site does not answer to that Host"}


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
    soon = datetime.now(UTC) + timedelta(seconds=3)
    assert api.patch(f"/api/links/{slug}/", json={"expires_at": soon.isoformat()}).status_code == 200
    # Both workers cache the link again, with its expiry, before it passes...
    every_worker_answers(site, slug, 308)
    assert datetime.now(UTC) < soon, "too slow to show the cached answer before the expiry"
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)
    # ...and the cached expiry is checked on every hit, with no further change.
    every_worker_answers(site, slug, 410)


def test_a_click_limit_set_later_is_exact(site, api):
    slug = new_link(site, "limit-later")
    every_worker_answers(site, slug, 308, method="HEAD")
    assert api.patch(f"/api/links/{slug}/", json={"max_clicks": 3}).status_code == 200
    browser = {"User-Agent": BROWSER_USER_AGENT}
    seen = [httpx.get(f"{site.base_url}/{slug}", headers=browser).status_code for _ in range(6)]
    assert seen == [308, 308, 308, 410, 410, 410]


def test_clicks_on_the_fast_path_are_counted_and_head_is_not(site):
    slug = new_link(site, "fast-clicks")
    # At least PER_WORKER HEADs on each worker, none of them to be counted.
    every_worker_answers(site, slug, 308, method="HEAD")
    gets = 30
    browser = {"User-Agent": BROWSER_USER_AGENT}
    for _ in range(gets):
        assert httpx.get(f"{site.base_url}/{slug}", headers=browser).status_code == 308
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        clicks = site.clicks(slug)
        if clicks >= gets:
            break
        time.sleep(0.2)
    # Exactly the GETs: had any HEAD been counted, this would be larger.
    time.sleep(1.5)  # one more flush interval, for any late HEAD count to land
    clicks = site.clicks(slug)
    assert clicks == gets


def locations_by_worker(site, slug: str) -> dict[int, set[str]]:
    """The Location each worker answered `slug` with (HEAD: no click counted)."""
    seen: dict[int, set[str]] = {worker.pid: set() for worker in workers(site.process)}
    for _ in range(MAX_ATTEMPTS):
        pid, _status, headers, _body = traced_request(site.process, site.base_url, "HEAD", f"/{slug}")
        seen[pid].add(headers.get("location", ""))
        if all(seen.values()):
            break
    return seen


@pytest.mark.skipif(ON_POSTGRES, reason="the redirect table is SQLite's")
def test_every_worker_reads_the_redirect_table_and_leaves_it_at_a_change(site):
    # A table in the real format whose Location for one link differs from the
    # database's: which answer each worker gives shows where it read it.
    database = site.data_dir / "shortener.sqlite3"
    slug = new_link(site, "from-the-table")  # never asked before: no worker has it cached
    [(link_id,)] = site.query("SELECT id FROM links_link WHERE slug = %s", (slug,))
    # Once the workers' first build (at start-up) is done, and with it the database's identity.
    deadline = time.monotonic() + 30
    while True:
        facts = facts_of(database)
        first = open_redirect_table(redirect_table_path(database))
        if first is not None and first.identity == facts.identity != 0:
            break
        assert time.monotonic() < deadline, "no table built at start-up"
        time.sleep(0.2)
    probe = database.with_name("probe.redirects")
    write_table(
        probe,
        version=facts.version,
        identity=facts.identity,
        max_link_id=facts.max_link_id,
        link_count=1,
        entries=[(slug.encode(), (link_id, b"https://from-the-table.example/", float("inf")))],
    )
    os.replace(probe, redirect_table_path(database))
    # Each worker's keeper maps a new table within a second; the first answer
    # is then the table's (an answer read from the database would be cached).
    time.sleep(3)
    seen = locations_by_worker(site, slug)
    assert all(locations == {"https://from-the-table.example/"} for locations in seen.values()), seen
    site.query("UPDATE links_link SET is_active = %s WHERE slug = %s", (False, slug))
    every_worker_answers(site, slug, 404)  # at once, on every worker
    # And the workers have it built again, as of the change.
    deadline = time.monotonic() + 60
    while (
        table := open_redirect_table(redirect_table_path(database))
    ) is None or table.version == facts.version:
        assert time.monotonic() < deadline, "no table built after the change"
        time.sleep(0.5)
    assert table.get(slug) is DELEGATE
