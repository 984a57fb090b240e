"""The redirect fast path and its cache, through uvicorn with two workers:
every change to a link is seen by every worker at once."""

import sqlite3
from datetime import UTC, datetime, timedelta

import httpx
import pytest

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
# Enough requests that both workers answer some of them (connections are
# spread over the worker processes by the kernel).
ROUNDS = 40


@pytest.fixture(scope="module")
def api_key(live_site) -> str:
    return live_site.manage("issue_api_key", "--name", "fast-path").stdout.split()[-1]


@pytest.fixture
def api(live_site, api_key):
    with httpx.Client(base_url=live_site.base_url, headers={"Authorization": f"Bearer {api_key}"}) as client:
        yield client


def statuses(live_site, slug: str, method: str = "GET") -> set[int]:
    """Status codes of ROUNDS requests on fresh connections (spread over the workers)."""
    seen = set()
    for _ in range(ROUNDS):
        with httpx.Client(base_url=live_site.base_url, headers={"User-Agent": BROWSER}) as client:
            seen.add(client.request(method, f"/{slug}").status_code)
    return seen


def new_link(live_site, **fields) -> str:
    payload = {"url": "https://example.com/fast/" + fields.pop("path", "x"), **fields}
    response = httpx.post(live_site.base_url + "/", json=payload)
    assert response.status_code == 201, response.text
    return response.json()["short_slug"]


def test_fast_redirect_has_the_contract_headers(live_site):
    slug = new_link(live_site, path="headers")
    response = httpx.get(f"{live_site.base_url}/{slug}")
    assert response.status_code == 308
    assert response.headers["location"] == "https://example.com/fast/headers"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-length"] == "0"
    # Django's middleware would have added this: the fast path answered.
    assert "x-frame-options" not in response.headers
    head = httpx.head(f"{live_site.base_url}/{slug}")
    assert (head.status_code, head.headers["location"]) == (308, "https://example.com/fast/headers")
    missing = httpx.get(f"{live_site.base_url}/NoSuch42")
    assert (missing.status_code, missing.json()) == (404, {"error": "URL not found"})
    assert missing.headers["content-type"] == "application/json"


def test_a_slug_asked_for_before_it_existed_works_once_created(live_site):
    assert statuses(live_site, "later-made") == {404}
    new_link(live_site, path="later", slug="later-made")
    assert statuses(live_site, "later-made") == {308}


def test_disabling_is_seen_by_every_worker_at_once(live_site, api):
    slug = new_link(live_site, path="disable")
    assert statuses(live_site, slug) == {308}  # cached in both workers
    api.patch(f"/api/links/{slug}/", json={"is_active": False})
    assert statuses(live_site, slug) == {404}
    api.patch(f"/api/links/{slug}/", json={"is_active": True})
    assert statuses(live_site, slug) == {308}


def test_expiry_set_later_is_enforced(live_site, api):
    slug = new_link(live_site, path="expire")
    assert statuses(live_site, slug) == {308}
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    api.patch(f"/api/links/{slug}/", json={"expires_at": soon})
    import time

    time.sleep(1.2)
    # The cached expiry is checked on every hit, with no further change.
    assert statuses(live_site, slug) == {410}


def test_a_click_limit_set_later_is_exact(live_site, api):
    slug = new_link(live_site, path="limit-later")
    assert statuses(live_site, slug, "HEAD") == {308}
    api.patch(f"/api/links/{slug}/", json={"max_clicks": 3})
    seen = [
        httpx.get(f"{live_site.base_url}/{slug}", headers={"User-Agent": BROWSER}).status_code
        for _ in range(6)
    ]
    assert seen == [308, 308, 308, 410, 410, 410]


def test_deleting_is_seen_by_every_worker(live_site, api):
    slug = new_link(live_site, path="delete")
    assert statuses(live_site, slug) == {308}
    assert api.delete(f"/api/links/{slug}/").status_code == 204
    assert statuses(live_site, slug) == {404}


def test_an_edit_from_another_process_invalidates(live_site):
    slug = new_link(live_site, path="shell-edit")
    assert statuses(live_site, slug) == {308}
    live_site.manage(
        "shell",
        "-c",
        f"from links.models import Link; l = Link.objects.get(slug='{slug}'); l.is_active = False; l.save()",
    )
    assert statuses(live_site, slug) == {404}


def test_clicks_on_the_fast_path_are_counted(live_site):
    slug = new_link(live_site, path="fast-clicks")
    assert statuses(live_site, slug) == {308}  # ROUNDS counted visits
    assert statuses(live_site, slug, "HEAD") == {308}  # not counted
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with sqlite3.connect(live_site.data_dir / "shortener.sqlite3") as db:
            (clicks,) = db.execute("SELECT clicks FROM links_link WHERE slug = ?", (slug,)).fetchone()
        if clicks == ROUNDS:
            break
        time.sleep(0.2)
    assert clicks == ROUNDS
