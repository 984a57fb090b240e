from django.contrib import admin
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from links import views

urlpatterns = [
    path("", views.HealthAndCreateView.as_view(), name="health-and-create"),
    path("admin/", admin.site.urls),
    path("api/links/", views.LinkListView.as_view(), name="api-link-list"),
    path("api/links/<str:slug>/", views.LinkDetailView.as_view(), name="api-link-detail"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^(?P<slug>[^/]+)\+$", views.LinkPreviewView.as_view(), name="preview"),
    re_path(r"^(?P<slug>[^/]+)/qr\.(?P<image_format>svg|png)$", views.LinkQRCodeView.as_view(), name="qr"),
    path("<str:slug>", views.LinkRedirectView.as_view(), name="redirect"),
]

handler404 = "links.views.json_not_found"
handler500 = "links.views.json_server_error"
