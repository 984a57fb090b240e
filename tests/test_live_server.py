"""The site as uvicorn serves it: real sockets, worker processes, a real SQLite file."""

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import httpx


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
    with sqlite3.connect(live_site.data_dir / "shortener.sqlite3") as db:
        (count,) = db.execute("SELECT COUNT(*) FROM links_link WHERE original_url = ?", (url,)).fetchone()
    assert count == 1


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
    with sqlite3.connect(live_site.data_dir / "shortener.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


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
