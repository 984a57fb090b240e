from django.contrib import admin
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from links import errors, views

urlpatterns = [
    path("", views.HealthAndCreateView.as_view(), name="health-and-create"),
    path("admin/", admin.site.urls),
    # The shorten page's form (GET / shows it to browsers). Two segments: never a slug.
    path("links/new", views.ShortenPageView.as_view(), name="shorten-page"),
    path("api/links/", views.LinkListView.as_view(), name="api-link-list"),
    path("api/links/<str:slug>/", views.LinkDetailView.as_view(), name="api-link-detail"),
    path("api/schema/", views.third_party_api_view(SpectacularAPIView.as_view()), name="api-schema"),
    path(
        "api/docs/",
        views.third_party_api_view(SpectacularSwaggerView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    re_path(r"^(?P<slug>[^/]+)\+$", views.LinkPreviewView.as_view(), name="preview"),
    re_path(r"^(?P<slug>[^/]+)/qr\.(?P<image_format>svg|png)$", views.LinkQRCodeView.as_view(), name="qr"),
    path("healthz", views.DatabaseHealthView.as_view(), name="healthz"),
    path("<str:slug>", views.LinkRedirectView.as_view(), name="redirect"),
    # Everything else: the JSON 404 as a view, so that DEBUG's technical 404
    # page (which lists every URL pattern) is never served either.
    re_path(r"^", errors.json_not_found),
]

handler400 = "links.errors.json_bad_request"
handler403 = "links.errors.json_permission_denied"
handler404 = "links.errors.json_not_found"
handler500 = "links.errors.json_server_error"
