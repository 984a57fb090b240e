"""The site as uvicorn serves it: real sockets, worker processes, a real SQLite file."""

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import httpx
import pytest

from tests.conftest import running_site
from tests.project import BROWSER_USER_AGENT


def test_sixteen_simultaneous_creations_of_one_url_make_one_link(live_site):
    url = "https://example.com/concurrent-creation"
    barrier = Barrier(16)

    def create_once(_):
        with httpx.Client(base_url=live_site.base_url, timeout=30) as client:
            barrier.wait()
            return client.post("/", json={"url": url})

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(create_once, range(16)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 15 + [201]
    assert len({r.json()["short_slug"] for r in responses}) == 1
    assert live_site.query("SELECT COUNT(*) FROM links_link WHERE original_url = %s", (url,)) == [(1,)]


def test_many_different_urls_at_once_never_lock_the_database(live_site):
    def create_many(worker):
        with httpx.Client(base_url=live_site.base_url, timeout=30) as client:
            return [
                client.post("/", json={"url": f"https://example.com/w{worker}/{i}"}).status_code
                for i in range(25)
            ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = [s for batch in pool.map(create_many, range(8)) for s in batch]
    assert statuses == [201] * 200


def test_the_database_runs_in_wal_mode(live_site):
    if live_site.env.get("DATABASE_URL"):
        pytest.skip("SQLite's journal mode: this site runs on PostgreSQL")
    assert live_site.query("PRAGMA journal_mode") == [("wal",)]


def test_contract_over_http(live_site):
    with httpx.Client(base_url=live_site.base_url, timeout=10) as client:
        assert client.get("/").status_code == 200
        created = client.post("/", json={"url": "https://example.org/over-http"})
        assert created.status_code == 201
        body = created.json()
        assert body["short_url"] == f"{live_site.base_url}/{body['short_slug']}"
        redirect = client.get(f"/{body['short_slug']}")
        assert (redirect.status_code, redirect.headers["location"]) == (308, "https://example.org/over-http")
        missing = client.get("/zzzzzzz")
        assert (missing.status_code, missing.json()) == (404, {"error": "URL not found"})
        bad = client.post("/", json={"url": "nope"})
        assert (bad.status_code, bad.json()) == (400, {"error": "Invalid URL format"})


def test_forwarded_proto_is_ignored_from_an_untrusted_peer(live_site):
    # uvicorn trusts X-Forwarded-* only from --forwarded-allow-ips (default
    # 127.0.0.1, which is us here), so use a header it never trusts: Host
    # spoofing through X-Forwarded-Host.
    response = httpx.post(
        live_site.base_url + "/",
        json={"url": "https://example.org/xfh"},
        headers={"X-Forwarded-Host": "evil.example"},
    )
    assert "evil.example" not in response.json()["short_url"]


def stored_clicks(site, slug) -> tuple[int, int]:
    """(the link's clicks, sum of daily counts) as the database has them: the
    daily rows and the day the counters row keeps (models.LinkClicks)."""
    clicks = site.clicks(slug)
    [(daily,)] = site.query(
        "SELECT COALESCE((SELECT SUM(count) FROM links_dailyclicks d WHERE d.link_id = l.id), 0) "
        "+ COALESCE((SELECT latest_day_clicks FROM links_linkclicks c WHERE c.link_id = l.id), 0) "
        "FROM links_link l WHERE l.slug = %s",
        (slug,),
    )
    return clicks, int(daily)


def visit_concurrently(base_url: str, slug: str, *, visits: int, threads: int = 16) -> list[int]:
    def one_thread(count):
        browser = {"User-Agent": BROWSER_USER_AGENT}
        with httpx.Client(base_url=base_url, timeout=30, headers=browser) as client:
            return [client.get(f"/{slug}").status_code for _ in range(count)]

    per_thread = [visits // threads + (1 if i < visits % threads else 0) for i in range(threads)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [status for batch in pool.map(one_thread, per_thread) for status in batch]


def wait_for_clicks(site, slug, expected: int, timeout: float = 10) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = stored_clicks(site, slug)
        if counts == (expected, expected):
            return counts
        time.sleep(0.2)
    return stored_clicks(site, slug)


def test_concurrent_visits_are_counted_exactly_across_workers(live_site):
    slug = httpx.post(live_site.base_url + "/", json={"url": "https://example.com/many-visits"}).json()[
        "short_slug"
    ]
    statuses = visit_concurrently(live_site.base_url, slug, visits=600)
    assert statuses == [308] * 600
    # Batches reach the database within about a second of the visits.
    assert wait_for_clicks(live_site, slug, 600) == (600, 600)


def test_max_clicks_is_exact_under_concurrent_visits(live_site):
    slug = httpx.post(
        live_site.base_url + "/", json={"url": "https://example.com/limited", "max_clicks": 25}
    ).json()["short_slug"]
    statuses = visit_concurrently(live_site.base_url, slug, visits=200)
    assert statuses.count(308) == 25
    assert statuses.count(410) == 175
    assert wait_for_clicks(live_site, slug, 25) == (25, 25)


def test_a_graceful_stop_writes_every_pending_click(tmp_path):
    with running_site(tmp_path, workers=2) as (site, process):
        slug = httpx.post(site.base_url + "/", json={"url": "https://example.com/shutdown"}).json()[
            "short_slug"
        ]
        assert visit_concurrently(site.base_url, slug, visits=300) == [308] * 300
        # Stop at once: most clicks are still in memory, in two processes.
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert stored_clicks(site, slug) == (300, 300)
