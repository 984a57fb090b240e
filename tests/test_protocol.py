"""links.protocol: uvicorn's HTTP protocol answering the fast path in place.

Two ways of showing it. Through real sockets, the site under the production
protocol answers byte for byte what uvicorn's own protocol answers on the same
database (the Date header aside), for every kind of request the fast path
meets, one by one and pipelined on one connection. In-process, an observer
between uvicorn and the site's application shows which requests were answered
in place (never reaching the application) and that their clicks are counted.
"""

import asyncio
import json
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime

import httpx
import pytest
import uvicorn

from links.asgi import ShortenerApplication
from links.clicks import click_counter
from links.fastpath import RedirectFastPath
from links.models import Link, LinkTableVersion
from links.protocol import FastRedirectProtocol
from links.services import shorten_url
from tests.conftest import ON_POSTGRES, PRODUCTION_HTTP_PROTOCOL, SETTLE_SECONDS, running_site
from tests.project import BROWSER_USER_AGENT, PROJECT_DIR, free_port, read_answer

DATE_HEADER = re.compile(rb"\r\ndate: [^\r]*", re.IGNORECASE)


@contextmanager
def connection_to(base_url: str) -> Iterator[socket.socket]:
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        yield sock


def exchange(base_url: str, requests: list[bytes]) -> bytes:
    """Send `requests` in one write on one connection (pipelined when more
    than one); the last asks the server to close. All the bytes it answered."""
    with connection_to(base_url) as sock:
        sock.sendall(b"".join(requests))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return DATE_HEADER.sub(b"", received)


def request(
    method: str, path: str, *, host: str = "127.0.0.1", close: bool = False, extra: str = ""
) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        f"User-Agent: {BROWSER_USER_AGENT}",
        *extra.splitlines(),
    ]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """The production protocol and uvicorn's own, serving one database."""
    data = tmp_path_factory.mktemp("protocol")
    with running_site(data, workers=1) as (fast, _):
        # One database: the same SQLite file (the same folder), or on PostgreSQL the first site's.
        shared = {"DATABASE_URL": fast.env["DATABASE_URL"]} if "DATABASE_URL" in fast.env else {}
        with running_site(data, workers=1, http="httptools", **shared) as (plain, _):
            yield fast, plain


@pytest.fixture(scope="module")
def slugs(sites) -> dict[str, str]:
    fast, _plain = sites
    made = {}
    for name, fields in {"plain": {}, "limited": {"max_clicks": 100}, "expired": {}}.items():
        response = httpx.post(
            fast.base_url + "/", json={"url": f"https://example.com/protocol/{name}", **fields}
        )
        assert response.status_code == 201, response.text
        made[name] = response.json()["short_slug"]
    # The API takes only future expiries.
    fast.query("UPDATE links_link SET expires_at = '2000-01-01 00:00:00' WHERE slug = %s", (made["expired"],))
    return made


CASES = {
    "redirect": lambda s: [request("GET", f"/{s['plain']}", close=True)],
    "redirect to HEAD": lambda s: [request("HEAD", f"/{s['plain']}", close=True)],
    "unknown slug, JSON": lambda s: [request("GET", "/no-such-link", close=True)],
    "unknown slug, a browser's page": lambda s: [
        request("GET", "/no-such-link", close=True, extra="Accept: text/html,application/xhtml+xml")
    ],
    "a Host the site does not serve": lambda s: [
        request("GET", f"/{s['plain']}", host="evil.example", close=True)
    ],
    "a limited link (Django's)": lambda s: [request("GET", f"/{s['limited']}", close=True)],
    "an expired link (Django's)": lambda s: [request("GET", f"/{s['expired']}", close=True)],
    "a reserved path": lambda s: [request("GET", "/healthz", close=True)],
    "Expect: 100-continue": lambda s: [
        request("GET", f"/{s['plain']}", close=True, extra="Expect: 100-continue")
    ],
    "HTTP/1.0, no keep-alive": lambda s: [f"GET /{s['plain']} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode()],
    # Queued behind Django's answer, then drained one after another.
    "2,000 pipelined behind a request of Django's": lambda s: [
        request("GET", "/healthz"),
        *[request("GET", f"/{s['plain']}")] * 2000,
        request("GET", "/no-such-link", close=True),
    ],
    "pipelined on one connection": lambda s: [
        request("GET", f"/{s['plain']}"),
        request("GET", "/no-such-link"),
        request("GET", f"/{s['limited']}"),
        request("HEAD", f"/{s['plain']}"),
        request("GET", f"/{s['plain']}", close=True),
    ],
}


@pytest.mark.parametrize("case", CASES)
def test_the_production_protocol_answers_the_same_bytes_as_uvicorns_own(sites, slugs, case):
    fast, plain = sites
    requests = CASES[case](slugs)
    answered = exchange(fast.base_url, requests)
    assert answered == exchange(plain.base_url, requests)
    # Each request answered once, in order, and nothing more.
    assert answered.count(b"HTTP/1.1 ") == len(requests)


def test_answers_carry_uvicorns_date_header(sites, slugs):
    fast, _plain = sites
    response = httpx.get(f"{fast.base_url}/{slugs['plain']}", headers={"User-Agent": BROWSER_USER_AGENT})
    assert response.status_code == 308
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", response.headers["date"])


def test_the_date_header_follows_the_clock(sites, slugs):
    # The protocol keeps uvicorn's default headers as bytes until uvicorn
    # replaces them (once a second): a stale copy would repeat an old Date.
    fast, _plain = sites
    dates = []
    for pause in (2.5, 0):
        response = httpx.get(f"{fast.base_url}/{slugs['plain']}", headers={"User-Agent": BROWSER_USER_AGENT})
        assert response.status_code == 308
        dates.append(parsedate_to_datetime(response.headers["date"]).timestamp())
        assert abs(dates[-1] - time.time()) <= 2
        time.sleep(pause)
    assert dates[1] - dates[0] >= 2


def test_a_keep_alive_connection_sees_a_disabled_link_at_once(sites, slugs):
    fast, _plain = sites
    slug = httpx.post(fast.base_url + "/", json={"url": "https://example.com/protocol/disabled"}).json()[
        "short_slug"
    ]
    with httpx.Client(base_url=fast.base_url) as client:
        assert client.get(f"/{slug}").status_code == 308
        fast.query("UPDATE links_link SET is_active = FALSE WHERE slug = %s", (slug,))
        # The same connection: on SQLite the very next request; on PostgreSQL
        # within the bound its notifications give.
        deadline = time.monotonic() + SETTLE_SECONDS
        while (status := client.get(f"/{slug}").status_code) == 308 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == 404


KEEP_ALIVE_SECONDS = 1


PROTOCOLS = {"production": PRODUCTION_HTTP_PROTOCOL, "uvicorns": "httptools"}


@pytest.fixture(scope="module", params=list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def short_keep_alive(request, tmp_path_factory):
    """A site whose connections may stay idle KEEP_ALIVE_SECONDS, under the
    production protocol (which keeps that timeout its own way) and uvicorn's
    own: the same rule. The site and a slug."""
    data = tmp_path_factory.mktemp("keep-alive")
    with running_site(
        data, workers=1, http=request.param, UVICORN_TIMEOUT_KEEP_ALIVE=str(KEEP_ALIVE_SECONDS)
    ) as (site, _):
        made = httpx.post(site.base_url + "/", json={"url": "https://example.com/protocol/keep-alive"})
        yield site, made.json()["short_slug"]


def redirects_in_turn(sock: socket.socket, slug: str, *, count: int, pause: float) -> float:
    """`count` redirects on one connection, each followed by `pause` seconds of
    nothing: when the last was answered."""
    for _ in range(count):
        sock.sendall(request("GET", f"/{slug}"))
        assert read_answer(sock)[0] == 308
        answered = time.monotonic()
        time.sleep(pause)
    return answered


def assert_closed_a_timeout_after(sock: socket.socket, answered: float) -> None:
    """The server closes the connection KEEP_ALIVE_SECONDS after `answered`."""
    assert sock.recv(65536) == b""
    idle = time.monotonic() - answered
    assert KEEP_ALIVE_SECONDS - 0.2 <= idle <= KEEP_ALIVE_SECONDS + 1.5


@pytest.mark.parametrize("path", ["redirect", "/healthz"], ids=["answered-in-place", "djangos"])
def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(short_keep_alive, path):
    site, slug = short_keep_alive
    with connection_to(site.base_url) as sock:
        sock.sendall(request("GET", f"/{slug}" if path == "redirect" else path))
        assert read_answer(sock)[0] in (308, 200)
        assert_closed_a_timeout_after(sock, time.monotonic())


def test_the_timeout_counts_from_the_last_answer(short_keep_alive):
    # A second answer within the timeout moves the deadline: the connection is
    # closed a timeout after that answer, not after the first.
    site, slug = short_keep_alive
    with connection_to(site.base_url) as sock:
        answered = redirects_in_turn(sock, slug, count=2, pause=KEEP_ALIVE_SECONDS * 0.6)
        assert_closed_a_timeout_after(sock, answered)


def test_a_connection_answered_more_often_than_the_timeout_stays_open(short_keep_alive):
    # Each answer moves the deadline: three seconds of requests half a second
    # apart on one connection, never idle for the timeout.
    site, slug = short_keep_alive
    with connection_to(site.base_url) as sock:
        redirects_in_turn(sock, slug, count=6, pause=KEEP_ALIVE_SECONDS / 2)
        sock.sendall(request("GET", f"/{slug}", close=True))
        assert read_answer(sock)[0] == 308


def test_a_request_sent_slowly_is_not_cut_by_the_keep_alive_timeout(short_keep_alive):
    # The timeout is for a connection idle between requests: once a request's
    # first bytes arrive, it is answered however long the rest takes.
    site, slug = short_keep_alive
    with connection_to(site.base_url) as sock:
        sock.sendall(request("GET", f"/{slug}"))
        assert read_answer(sock)[0] == 308
        second = request("GET", f"/{slug}", close=True)
        sock.sendall(second[:20])
        time.sleep(KEEP_ALIVE_SECONDS * 2)
        sock.sendall(second[20:])
        assert read_answer(sock)[0] == 308


@pytest.mark.skipif(ON_POSTGRES, reason="holds SQLite's write lock to make Django's answer slow")
def test_a_slow_answer_pipelined_behind_a_redirect_outlasts_the_keep_alive_timeout(tmp_path):
    """A redirect answered in place arms uvicorn's keep-alive timer; a request
    pipelined behind it, answered by Django after that timeout, still gets its
    answer (the timer closed the connection under it)."""
    with running_site(tmp_path, workers=1, UVICORN_TIMEOUT_KEEP_ALIVE="1") as (site, _):
        slug = httpx.post(site.base_url + "/", json={"url": "https://example.com/protocol/timer"}).json()[
            "short_slug"
        ]
        body = json.dumps({"url": "https://example.com/protocol/after-the-timer"})
        creation = (
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
        ).encode()
        writer = sqlite3.connect(site.env["SQLITE_PATH"], isolation_level=None, check_same_thread=False)
        writer.execute("BEGIN IMMEDIATE")  # Django's insert waits for it (its busy timeout is 20 s)
        commit = threading.Timer(2.5, writer.execute, ["COMMIT"])
        commit.start()
        answered = exchange(site.base_url, [request("GET", f"/{slug}"), creation])
        commit.join()
        writer.close()
    assert answered.startswith(b"HTTP/1.1 308 ")
    assert b"HTTP/1.1 201 Created" in answered


@pytest.mark.skipif(ON_POSTGRES, reason="writes a date SQLite stores as text and PostgreSQL would refuse")
@pytest.mark.parametrize("expiry", ["31/12/2099", 4102444800], ids=["malformed-text", "a-number"])
def test_a_row_the_fast_path_cannot_read_is_answered_by_django_either_way(sites, slugs, expiry):
    """A row the fast path cannot read (a date written around the model) is
    Django's to answer, as through uvicorn's own protocol, for the right
    request, pipelined too (it was uvicorn's plain-text 500)."""
    fast, plain = sites
    slug = f"corrupt-{type(expiry).__name__}"
    fast.query(
        "INSERT INTO links_link (slug, original_url, is_canonical, created_at, is_active, expires_at) "
        "VALUES (%s, 'https://example.com/corrupt', 0, '2026-01-01 00:00:00', 1, %s)",
        (slug, expiry),
    )
    for requests in (
        [request("GET", f"/{slug}", close=True)],
        [request("GET", "/healthz"), request("GET", f"/{slug}", close=True)],
    ):
        answered = exchange(fast.base_url, requests)
        assert answered == exchange(plain.base_url, requests)
        assert answered.count(b"HTTP/1.1 ") == len(requests)
        corrupt = answered[answered.rindex(b"HTTP/1.1 ") :]
        # Django's security middleware sets this header; the fast path does not.
        assert b"cross-origin-opener-policy" in corrupt
        assert b"text/plain" not in corrupt


def test_the_image_serves_with_the_protocol_the_tests_run():
    dockerfile = (PROJECT_DIR / "docker" / "app.Dockerfile").read_text()
    assert f'"--http", "{PRODUCTION_HTTP_PROTOCOL}"' in dockerfile


def test_nginx_closes_an_idle_pooled_connection_before_the_app_does():
    # Otherwise the app may close one just as nginx sends a request on it, and
    # nginx does not retry a POST elsewhere: a 502 (seen once in CI, uvicorn's
    # default 5 s against nginx's 60 s).
    dockerfile = (PROJECT_DIR / "docker" / "app.Dockerfile").read_text()
    [app_seconds] = re.findall(r'"--timeout-keep-alive", "(\d+)"', dockerfile)
    for upstream in ("app-socket.conf", "app-replicas.conf"):
        config = (PROJECT_DIR / "nginx" / upstream).read_text()
        [nginx_seconds] = re.findall(r"keepalive_timeout (\d+)s;", config)
        assert int(nginx_seconds) < int(app_seconds), upstream


class RequestsSeen:
    """What uvicorn is given to serve: the site's application behind an
    observer that notes each HTTP request reaching it the ASGI way. uvicorn's
    own middleware keeps its application as `.app`, and so does this."""

    def __init__(self, app):
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


@contextmanager
def serving(app) -> Iterator[str]:
    """uvicorn with the production protocol, in this process, on a thread."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free_port(),
        http=FastRedirectProtocol,
        lifespan="off",
        # As in production: with uvicorn's access log on, every request would
        # go the ASGI way so that none is missing from it.
        access_log=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_plain_redirects_are_answered_in_place_and_counted():
    from shortener_site.asgi import django_application

    LinkTableVersion.objects.get_or_create(pk=1)
    link, _ = shorten_url(url="https://example.com/in-place", slug="in-place")
    fast_path = RedirectFastPath.from_settings()
    seen = RequestsSeen(ShortenerApplication(django_application, fast_path=fast_path))
    click_counter.flush()
    try:
        with serving(seen) as base_url, httpx.Client(base_url=base_url) as client:
            browser = {"User-Agent": BROWSER_USER_AGENT}
            answers = [client.get("/in-place", headers=browser) for _ in range(3)]
            unknown = client.get("/no-such-link")
            healthz = client.get("/healthz")
    finally:
        asyncio.run(asyncio.to_thread(fast_path.close))
    assert [(a.status_code, a.headers["location"]) for a in answers] == [
        (308, "https://example.com/in-place")
    ] * 3
    assert unknown.status_code == 404 and unknown.json() == {"error": "URL not found"}
    assert healthz.status_code == 200
    if fast_path.links.blocking:
        # PostgreSQL: a miss is read in a thread, so it goes the ASGI way (the
        # first redirect, and an unknown slug, never cached); a hit does not.
        assert seen.paths == ["/in-place", "/no-such-link", "/healthz"]
    else:
        # SQLite is read in place: only Django's request reached the application.
        assert seen.paths == ["/healthz"]
    click_counter.flush()
    assert Link.objects.get(pk=link.pk).clicks == 3
