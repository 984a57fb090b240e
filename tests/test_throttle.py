"""The anonymous creation throttle holds exactly under concurrency, across two
uvicorn worker processes (DRF's cache-based history let 94 to 161 of 200 through),
with its window in the database and, with REDIS_URL, in a real Redis."""

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import pytest

from tests.conftest import running_site
from tests.servers import redis_server
from tests.workers import traced_request

LIMIT = 60
REQUESTS = 200


@pytest.fixture(scope="module", params=["database", "redis"])
def site(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"throttle-{request.param}")
    with ExitStack() as stack:
        extra = {"SHORTENER_ANON_CREATE_RATE": f"{LIMIT}/min"}
        if request.param == "redis":
            extra["REDIS_URL"] = stack.enter_context(redis_server(folder))
        site, site.process = stack.enter_context(running_site(folder / "site", workers=2, **extra))
        yield site


def create_all(site, count: int, **headers) -> list[httpx.Response]:
    def create(number: int) -> httpx.Response:
        payload = {"url": f"https://example.com/throttle/{(headers and 'keyed') or 'anon'}/{number}"}
        return httpx.post(site.base_url + "/", json=payload, headers=headers, timeout=60)

    with ThreadPoolExecutor(max_workers=50) as pool:
        return list(pool.map(create, range(count)))


def stored_links(site) -> int:
    out = site.manage("shell", "-c", "from links.models import Link; print(Link.objects.count())")
    return int(out.stdout.split()[-1])


def test_concurrent_anonymous_creations_get_exactly_the_limit_across_both_workers(site):
    def create(number: int):
        payload = {"url": f"https://example.com/throttle/traced/{number}"}
        return traced_request(site.process, site.base_url, "POST", "/", payload=payload)

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(create, range(REQUESTS)))
    assert len({pid for pid, *_ in answers}) == 2, "both workers must have taken creations"
    assert Counter(status for _, status, _, _ in answers) == {201: LIMIT, 429: REQUESTS - LIMIT}
    for _, status, headers, body in answers:
        if status == 429:
            assert json.loads(body)["error"].startswith("Request was throttled.")
            assert 0 < int(headers["retry-after"]) <= 60
    assert stored_links(site) == LIMIT


def test_requests_with_an_api_key_are_not_limited(site):
    key = site.manage("issue_api_key", "--name", "bulk").stdout.split()[-1]
    before = stored_links(site)
    responses = create_all(site, 80, Authorization=f"Bearer {key}")
    assert Counter(response.status_code for response in responses) == {201: 80}
    assert stored_links(site) == before + 80


def test_the_redis_window_is_exact_under_threads(tmp_path, settings):
    from links.services import take_rate_slot

    with redis_server(tmp_path) as url:
        settings.REDIS_URL = url
        with ThreadPoolExecutor(max_workers=50) as pool:
            waits = list(
                pool.map(lambda _: take_rate_slot(key="one-client", limit=LIMIT, period=60), range(200))
            )
        assert waits.count(None) == LIMIT
        assert all(0 < wait <= 60 for wait in waits if wait is not None)
        # Another client has a window of its own.
        assert take_rate_slot(key="another-client", limit=LIMIT, period=60) is None
