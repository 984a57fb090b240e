"""Custom slugs, limits, clicks, the management API, QR codes, preview, OpenAPI."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from links.clicks import click_counter
from links.models import APIKey, DailyClicks, Link, LinkClicks
from tests.project import BROWSER_USER_AGENT

pytestmark = pytest.mark.django_db


def create(client, payload, **extra):
    return client.post("/", json.dumps(payload), content_type="application/json", **extra)


def visit(client, slug, *, method="get", user_agent=BROWSER_USER_AGENT, **extra):
    return getattr(client, method)(f"/{slug}", HTTP_USER_AGENT=user_agent, **extra)


@pytest.fixture(autouse=True)
def no_leftover_clicks():
    click_counter.flush()
    yield
    click_counter.flush()


# --- custom slugs -----------------------------------------------------------


def test_custom_slug_is_created_and_followed(client):
    response = create(client, {"url": "https://example.com/custom", "slug": "my-Link_1"})
    assert response.status_code == 201
    assert response.json()["short_slug"] == "my-Link_1"
    assert visit(client, "my-Link_1")["Location"] == "https://example.com/custom"


def test_same_custom_slug_and_url_again_answers_200(client):
    create(client, {"url": "https://example.com/c2", "slug": "again"})
    again = create(client, {"url": "https://example.com/c2", "slug": "again"})
    assert (again.status_code, again.json()["short_slug"]) == (200, "again")


def test_custom_slug_taken_by_another_url_answers_409_json(client):
    create(client, {"url": "https://example.com/first", "slug": "taken"})
    response = create(client, {"url": "https://example.com/second", "slug": "taken"})
    assert response.status_code == 409
    assert response.json() == {"error": "The slug 'taken' is already taken by another URL"}


def test_custom_slugs_are_case_sensitive(client):
    assert create(client, {"url": "https://example.com/lower", "slug": "case"}).status_code == 201
    assert create(client, {"url": "https://example.com/upper", "slug": "CASE"}).status_code == 201


@pytest.mark.parametrize(
    "slug",
    [
        "ab",
        "x" * 65,
        "has space",
        "dot.ted",
        "slash/ed",
        "ümlaut",
        "admin",
        "API",
        "static",
        "healthz",
        12345,
        None,
        "",
    ],
)
def test_invalid_or_reserved_custom_slugs_answer_400_json(client, slug):
    response = create(client, {"url": "https://example.com/bad-slug", "slug": slug})
    assert response.status_code == 400
    assert response.json()["error"].startswith("slug: ")
    assert not Link.objects.exists()


def test_a_url_can_have_several_aliases_and_keeps_its_generated_link(client):
    generated = create(client, {"url": "https://example.com/multi"}).json()["short_slug"]
    create(client, {"url": "https://example.com/multi", "slug": "alias-one"})
    create(client, {"url": "https://example.com/multi", "slug": "alias-two"})
    again = create(client, {"url": "https://example.com/multi"})
    assert (again.status_code, again.json()["short_slug"]) == (200, generated)
    assert Link.objects.filter(original_url="https://example.com/multi").count() == 3


# --- expiry and click limits --------------------------------------------------


def test_expired_link_answers_410_json(client):
    create(
        client,
        {
            "url": "https://example.com/exp",
            "slug": "expiring",
            "expires_at": (timezone.now() + timedelta(hours=1)).isoformat(),
        },
    )
    assert visit(client, "expiring").status_code == 308
    Link.objects.filter(slug="expiring").update(expires_at=timezone.now() - timedelta(seconds=1))
    response = visit(client, "expiring")
    assert response.status_code == 410
    assert response.json() == {"error": "This link has expired"}


def test_a_browser_gets_a_small_page_for_a_gone_link(client):
    Link.objects.create(
        slug="gonepage", original_url="https://example.com/g", expires_at=timezone.now() - timedelta(days=1)
    )
    response = visit(client, "gonepage", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert response.status_code == 410
    assert response["Content-Type"].startswith("text/html")
    assert b"no longer available" in response.content


@pytest.mark.parametrize(
    "payload",
    [
        {"expires_at": "yesterday"},
        {"expires_at": "2001-01-01T00:00:00Z"},
        {"max_clicks": 0},
        {"max_clicks": -3},
        {"max_clicks": "many"},
    ],
)
def test_invalid_limits_answer_400_json(client, payload):
    response = create(client, {"url": "https://example.com/limits", **payload})
    assert response.status_code == 400
    assert response.json()["error"].split(":")[0] in ("expires_at", "max_clicks")


def test_max_clicks_two_gives_308_308_410(client):
    slug = create(client, {"url": "https://example.com/twice", "max_clicks": 2}).json()["short_slug"]
    statuses = [visit(client, slug).status_code for _ in range(3)]
    assert statuses == [308, 308, 410]
    assert visit(client, slug).json() == {"error": "This link has reached its click limit"}
    assert Link.objects.get(slug=slug).clicks == 2


def test_links_with_limits_are_never_shared(client):
    first = create(client, {"url": "https://example.com/shared?", "max_clicks": 1})
    second = create(client, {"url": "https://example.com/shared?", "max_clicks": 1})
    plain = create(client, {"url": "https://example.com/shared?"})
    assert [r.status_code for r in (first, second, plain)] == [201, 201, 201]
    assert len({r.json()["short_slug"] for r in (first, second, plain)}) == 3


# --- clicks -------------------------------------------------------------------


def test_clicks_are_counted_in_batches_with_daily_totals(client):
    slug = create(client, {"url": "https://example.com/counted"}).json()["short_slug"]
    for _ in range(5):
        visit(client, slug)
    link = Link.objects.get(slug=slug)
    assert link.clicks == 0  # nothing written inside the requests
    assert click_counter.flush() == 5
    link.refresh_from_db()
    assert link.clicks == 5
    assert link.last_clicked_at is not None
    assert link.clicks_per_day() == [(timezone.now().date(), 5)]


@pytest.mark.parametrize(
    ("method", "user_agent"),
    [
        ("head", BROWSER_USER_AGENT),
        ("get", "Googlebot/2.1 (+http://www.google.com/bot.html)"),
        ("get", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"),
        ("get", "facebookexternalhit/1.1"),
        ("get", "curl/8.5.0"),
        ("get", ""),
    ],
)
def test_head_requests_and_bots_are_redirected_but_not_counted(client, method, user_agent):
    slug = create(client, {"url": "https://example.com/not-counted"}).json()["short_slug"]
    assert visit(client, slug, method=method, user_agent=user_agent).status_code == 308
    click_counter.flush()
    assert Link.objects.get(slug=slug).clicks == 0


def test_the_bot_detector_reads_only_the_start_of_a_long_user_agent(client):
    # Its time grows faster than the text it reads: 8,000 characters held a worker for 10 s.
    slug = create(client, {"url": "https://example.com/long-agents"}).json()["short_slug"]
    for user_agent in (
        BROWSER_USER_AGENT + " " + "a" * 8000,  # a browser with a long tail: counted
        "Googlebot/2.1 " + "a" * 8000,  # a bot names itself at the start: not counted
        # A bot's name past what is read: not seen, counted.
        BROWSER_USER_AGENT + " " + "a" * 300 + " Googlebot/2.1",
    ):
        assert visit(client, slug, user_agent=user_agent).status_code == 308
    click_counter.flush()
    assert Link.objects.get(slug=slug).clicks == 2


def test_bots_do_not_use_up_limited_clicks(client):
    slug = create(client, {"url": "https://example.com/bot-limit", "max_clicks": 1}).json()["short_slug"]
    assert visit(client, slug, user_agent="Googlebot/2.1").status_code == 308
    assert visit(client, slug, method="head").status_code == 308
    assert visit(client, slug).status_code == 308
    assert visit(client, slug).status_code == 410


def test_clicks_of_a_deleted_link_are_dropped_without_error(client):
    slug = create(client, {"url": "https://example.com/deleted-later"}).json()["short_slug"]
    visit(client, slug)
    Link.objects.filter(slug=slug).delete()
    assert click_counter.flush() == 1
    assert not LinkClicks.objects.exists() and not DailyClicks.objects.exists()


# --- management API -------------------------------------------------------------


def test_issue_api_key_prints_the_key_last_and_stores_only_a_hash(api_key):
    stored = APIKey.objects.get(name="tests")
    assert api_key.startswith("shk_") and len(api_key) > 40
    assert api_key not in (stored.key_hash, stored.prefix)
    assert api_key.startswith(stored.prefix)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Authentication credentials were not provided."),
        ("Bearer shk_wrong", "Invalid or revoked API key"),
        ("Bearer", "Malformed Authorization header: use 'Bearer <key>'"),
        ("Bearer a b", "Malformed Authorization header: use 'Bearer <key>'"),
    ],
)
def test_management_api_needs_a_valid_key(client, header, message):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/api/links/", **extra)
    assert response.status_code == 401
    assert response.json() == {"error": message}
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_revoked_key_is_refused(client, api_key):
    APIKey.objects.update(revoked_at=timezone.now())
    response = client.get("/api/links/", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert (response.status_code, response.json()) == (401, {"error": "Invalid or revoked API key"})


def test_list_is_paginated_searchable_and_orderable(api):
    for i in range(55):
        link = Link.objects.create(slug=f"list{i:03d}", original_url=f"https://example.com/list/{i}")
        if i:  # list000 has no counters row: it orders as 0 clicks
            LinkClicks.objects.create(link=link, clicks=i)
    Link.objects.create(slug="findme", original_url="https://needle.example/x")
    page = api.get("/api/links/").json()
    assert page["count"] == 56
    assert len(page["results"]) == 50
    assert page["next"].endswith("/api/links/?page=2")
    assert page["previous"] is None
    assert page["results"][0]["slug"] == "findme"  # newest first
    found = api.get("/api/links/", {"search": "needle"}).json()
    assert [r["slug"] for r in found["results"]] == ["findme"]
    by_clicks = api.get("/api/links/", {"ordering": "-clicks"}).json()
    assert by_clicks["results"][0]["slug"] == "list054"


def test_detail_shows_statistics(api, client):
    slug = create(client, {"url": "https://example.com/stats"}).json()["short_slug"]
    for _ in range(3):
        visit(client, slug)
    click_counter.flush()
    # An earlier day, moved out of the counters row: both places, newest first.
    today = timezone.now().date()
    DailyClicks.objects.create(link=Link.objects.get(slug=slug), day=today - timedelta(days=3), count=6)
    detail = api.get(f"/api/links/{slug}/").json()
    assert detail["clicks"] == 3
    assert detail["last_clicked_at"] is not None
    assert detail["daily_clicks"] == [
        {"day": today.isoformat(), "count": 3},
        {"day": (today - timedelta(days=3)).isoformat(), "count": 6},
    ]
    assert detail["status"] == "active"
    assert detail["is_active"] is True
    assert detail["short_url"] == f"http://testserver/{slug}"
    assert {"expires_at", "max_clicks", "created_at", "original_url"} <= set(detail)


def test_patch_disables_and_changes_limits(api, client):
    slug = create(client, {"url": "https://example.com/patch", "slug": "patch-me"}).json()["short_slug"]
    response = api.patch(
        f"/api/links/{slug}/", json.dumps({"is_active": False}), content_type="application/json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "disabled"
    assert visit(client, slug).json() == {"error": "URL not found"}
    assert visit(client, slug).status_code == 404
    api.patch(
        f"/api/links/{slug}/",
        json.dumps({"is_active": True, "max_clicks": 1}),
        content_type="application/json",
    )
    assert [visit(client, slug).status_code for _ in range(2)] == [308, 410]
    expires = (timezone.now() + timedelta(days=2)).isoformat()
    changed = api.patch(
        f"/api/links/{slug}/",
        json.dumps({"max_clicks": None, "expires_at": expires}),
        content_type="application/json",
    ).json()
    assert changed["max_clicks"] is None and changed["expires_at"] is not None
    assert visit(client, slug).status_code == 308


def test_patch_cannot_change_the_url_or_slug(api, client):
    slug = create(client, {"url": "https://example.com/fixed"}).json()["short_slug"]
    api.patch(
        f"/api/links/{slug}/",
        json.dumps({"original_url": "https://evil.example/", "slug": "newslug"}),
        content_type="application/json",
    )
    link = Link.objects.get(slug=slug)
    assert link.original_url == "https://example.com/fixed"


def test_patch_rejects_bad_values_with_json(api, client):
    slug = create(client, {"url": "https://example.com/badpatch"}).json()["short_slug"]
    response = api.patch(
        f"/api/links/{slug}/", json.dumps({"max_clicks": 0}), content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "max_clicks: Ensure this value is greater than or equal to 1.",
        "fields": {"max_clicks": ["Ensure this value is greater than or equal to 1."]},
    }


def test_delete_answers_204_and_the_link_is_gone(api, client):
    slug = create(client, {"url": "https://example.com/delete"}).json()["short_slug"]
    assert api.delete(f"/api/links/{slug}/").status_code == 204
    assert visit(client, slug).status_code == 404
    missing = api.get(f"/api/links/{slug}/")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not found"})


# --- throttling and private instances -----------------------------------------------


@pytest.fixture
def creation_rate(settings):
    """Set the anonymous creation rate for one test, with fresh counters."""
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    original = SimpleRateThrottle.THROTTLE_RATES

    def set_rate(rate: str) -> None:
        SimpleRateThrottle.THROTTLE_RATES = {**original, "anon_create": rate}

    cache.clear()
    yield set_rate
    SimpleRateThrottle.THROTTLE_RATES = original
    cache.clear()


def test_anonymous_creation_is_throttled_with_json_429(client, creation_rate):
    creation_rate("3/min")
    statuses = [create(client, {"url": f"https://example.com/t/{i}"}).status_code for i in range(4)]
    assert statuses == [201, 201, 201, 429]
    limited = create(client, {"url": "https://example.com/t/again"})
    assert limited.json()["error"].startswith("Request was throttled")
    assert int(limited["Retry-After"]) > 0
    assert client.get("/").status_code == 200  # the health check is never throttled


def test_the_throttle_counts_per_client_address(client, creation_rate):
    creation_rate("2/min")
    for _ in range(2):
        create(client, {"url": "https://example.com/per-ip"}, REMOTE_ADDR="10.1.1.1")
    assert create(client, {"url": "https://example.com/per-ip"}, REMOTE_ADDR="10.1.1.1").status_code == 429
    # A forged X-Forwarded-For does not buy a fresh allowance.
    forged = create(
        client,
        {"url": "https://example.com/per-ip"},
        REMOTE_ADDR="10.1.1.1",
        HTTP_X_FORWARDED_FOR="192.0.2.1",
    )
    assert forged.status_code == 429
    assert create(client, {"url": "https://example.com/per-ip"}, REMOTE_ADDR="10.2.2.2").status_code == 200


def test_api_key_holders_are_not_throttled(client, creation_rate, api_key):
    creation_rate("2/min")
    statuses = [
        create(
            client, {"url": f"https://example.com/bulk/{i}"}, HTTP_AUTHORIZATION=f"Bearer {api_key}"
        ).status_code
        for i in range(10)
    ]
    assert statuses == [201] * 10


def test_a_private_instance_requires_a_key_to_create(client, settings, api_key):
    settings.REQUIRE_API_KEY_FOR_CREATE = True
    anonymous = create(client, {"url": "https://example.com/private"})
    assert anonymous.status_code == 401
    assert anonymous.json() == {"error": "Authentication credentials were not provided."}
    assert anonymous["WWW-Authenticate"] == "Bearer"
    keyed = create(client, {"url": "https://example.com/private"}, HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert keyed.status_code == 201
    assert client.get("/").status_code == 200


# --- QR codes and preview ------------------------------------------------------------


def test_qr_codes_in_svg_and_png(client):
    slug = create(client, {"url": "https://example.com/qr"}).json()["short_slug"]
    svg = client.get(f"/{slug}/qr.svg")
    assert svg.status_code == 200
    assert svg["Content-Type"] == "image/svg+xml"
    assert b"<svg" in svg.content
    png = client.get(f"/{slug}/qr.png")
    assert png["Content-Type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert client.get("/nosuchqr/qr.png").json() == {"error": "URL not found"}
    assert client.get(f"/{slug}/qr.gif").status_code == 404


def test_qr_code_encodes_the_short_url(client, settings):
    import io

    import segno

    settings.PUBLIC_BASE_URL = "https://sho.rt"
    slug = create(client, {"url": "https://example.com/qr-content"}).json()["short_slug"]
    served = client.get(f"/{slug}/qr.png").content
    expected = io.BytesIO()
    segno.make(f"https://sho.rt/{slug}", error="m").save(expected, kind="png", scale=8, border=2)
    assert served == expected.getvalue()
    other = io.BytesIO()
    segno.make(f"https://sho.rt/{slug}x", error="m").save(other, kind="png", scale=8, border=2)
    assert served != other.getvalue()


def test_preview_page_shows_the_destination(client):
    slug = create(client, {"url": "https://example.com/preview-target"}).json()["short_slug"]
    page = client.get(f"/{slug}+")
    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    text = page.content.decode()
    assert "https://example.com/preview-target" in text
    assert f'src="/{slug}/qr.svg"' in text
    assert f'href="/{slug}"' in text
    assert "Link.objects" not in text


def test_preview_page_escapes_markup_in_stored_urls(client):
    hostile = "https://example.com/?q=\"><script>alert('x')</script>&r='onmouseover='alert(1)"
    link = Link.objects.create(slug="hostile", original_url=hostile)
    page = client.get(f"/{link.slug}+").content.decode()
    assert "<script>alert" not in page
    assert "'onmouseover='" not in page
    assert "&lt;script&gt;" in page


def test_preview_of_unknown_link_is_404_json(client):
    assert client.get("/nothere+").json() == {"error": "URL not found"}


# --- OpenAPI ------------------------------------------------------------------------------


def test_openapi_schema_is_valid_and_covers_every_endpoint(client):
    from openapi_spec_validator import validate

    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    validate(schema)
    paths = schema["paths"]
    for path in [
        "/",
        "/{slug}",
        "/{slug}+",
        "/{slug}/qr.svg",
        "/{slug}/qr.png",
        "/api/links/",
        "/api/links/{slug}/",
    ]:
        assert path in paths, path
    assert set(paths["/"]) >= {"get", "post"}
    assert set(paths["/api/links/{slug}/"]) >= {"get", "patch", "delete"}
    assert "308" in paths["/{slug}"]["get"]["responses"]


def test_swagger_ui_is_served_without_any_cdn(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "swagger-ui" in html
    assert "cdn.jsdelivr.net" not in html and "unpkg.com" not in html
