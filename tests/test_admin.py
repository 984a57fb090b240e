import pytest
from django.contrib.auth import get_user_model

from links.models import Link

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "correct horse battery")
    client.force_login(user)
    return client


def test_login_page_renders_with_hashed_css(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"/static/admin/css/base." in response.content  # whitenoise's hashed names


def test_changelist_lists_links_and_searches(staff_client):
    Link.objects.create(slug="AbCdEf1", original_url="https://example.com/one", is_canonical=True)
    Link.objects.create(slug="ZyXwVu2", original_url="https://other.example/two", is_canonical=True)
    page = staff_client.get("/admin/links/link/")
    assert page.status_code == 200
    assert b"AbCdEf1" in page.content and b"ZyXwVu2" in page.content
    found = staff_client.get("/admin/links/link/", {"q": "other.example"})
    assert b"ZyXwVu2" in found.content and b"AbCdEf1" not in found.content
    by_slug = staff_client.get("/admin/links/link/", {"q": "AbCdEf1"})
    assert b"AbCdEf1" in by_slug.content and b"ZyXwVu2" not in by_slug.content


def test_change_page_shows_slug_read_only(staff_client):
    link = Link.objects.create(slug="RoSlug1", original_url="https://example.com/ro", is_canonical=True)
    page = staff_client.get(f"/admin/links/link/{link.pk}/change/")
    assert page.status_code == 200
    assert b'name="slug"' not in page.content
    assert b"RoSlug1" in page.content


def test_adding_a_link_in_the_admin_generates_a_slug(staff_client):
    response = staff_client.post(
        "/admin/links/link/add/", {"original_url": "https://example.com/from-admin", "is_active": "on"}
    )
    assert response.status_code == 302
    link = Link.objects.get(original_url="https://example.com/from-admin")
    assert len(link.slug) == 7


def test_superuser_can_be_created_from_environment(monkeypatch):
    from django.core.management import call_command

    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "envadmin")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long env password")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "envadmin@example.com")
    call_command("createsuperuser", "--noinput", verbosity=0)
    assert get_user_model().objects.get(username="envadmin").check_password("a long env password")


def test_changelist_shows_clicks_status_filters_and_tools(staff_client):
    from datetime import timedelta

    from django.utils import timezone

    Link.objects.create(slug="active1", original_url="https://example.com/a", clicks=42)
    Link.objects.create(
        slug="expired1", original_url="https://example.com/e", expires_at=timezone.now() - timedelta(days=1)
    )
    Link.objects.create(slug="disabled1", original_url="https://example.com/d", is_active=False)
    page = staff_client.get("/admin/links/link/").content.decode()
    assert "42" in page
    assert 'href="/active1+"' in page and 'href="/active1/qr.svg"' in page
    for status, expected in (("active", "active1"), ("expired", "expired1"), ("disabled", "disabled1")):
        filtered = staff_client.get("/admin/links/link/", {"status": status}).content.decode()
        others = {"active1", "expired1", "disabled1"} - {expected}
        assert f">{expected}<" in filtered
        assert not any(f">{other}<" in filtered for other in others), status


def test_disable_and_enable_actions(staff_client):
    link = Link.objects.create(slug="toggle1", original_url="https://example.com/t")
    staff_client.post("/admin/links/link/", {"action": "disable_links", "_selected_action": [link.pk]})
    link.refresh_from_db()
    assert link.is_active is False
    staff_client.post("/admin/links/link/", {"action": "enable_links", "_selected_action": [link.pk]})
    link.refresh_from_db()
    assert link.is_active is True


def test_api_keys_are_created_and_revoked_in_the_admin(staff_client):
    from links.models import APIKey

    response = staff_client.post("/admin/links/apikey/add/", {"name": "from admin"}, follow=True)
    assert response.status_code == 200
    key = APIKey.objects.get(name="from admin")
    message = next(str(m) for m in response.context["messages"])
    plain = message.split(": ", 1)[1].split(" ")[0]
    assert plain.startswith(key.prefix)
    assert staff_client.get("/api/links/", HTTP_AUTHORIZATION=f"Bearer {plain}").status_code == 200
    staff_client.post("/admin/links/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk]})
    assert staff_client.get("/api/links/", HTTP_AUTHORIZATION=f"Bearer {plain}").status_code == 401
