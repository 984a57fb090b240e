"""The anonymous creation throttle holds exactly under concurrency, across two
uvicorn worker processes (DRF's cache-based history let 94 to 161 of 200 through)."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import running_site

LIMIT = 60
REQUESTS = 200


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    rate = f"{LIMIT}/min"
    with running_site(tmp_path_factory.mktemp("throttle"), workers=2, SHORTENER_ANON_CREATE_RATE=rate) as (
        site,
        _process,
    ):
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


def test_concurrent_anonymous_creations_get_exactly_the_limit(site):
    responses = create_all(site, REQUESTS)
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: LIMIT, 429: REQUESTS - LIMIT}
    for response in responses:
        if response.status_code == 429:
            assert response.json()["error"].startswith("Request was throttled.")
            assert 0 < int(response.headers["Retry-After"]) <= 60
    assert stored_links(site) == LIMIT


def test_requests_with_an_api_key_are_not_limited(site):
    key = site.manage("issue_api_key", "--name", "bulk").stdout.split()[-1]
    before = stored_links(site)
    responses = create_all(site, 80, Authorization=f"Bearer {key}")
    assert Counter(response.status_code for response in responses) == {201: 80}
    assert stored_links(site) == before + 80
