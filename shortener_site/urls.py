from django.contrib import admin
from django.urls import path

from links import views

urlpatterns = [
    path("", views.HealthAndCreateView.as_view(), name="health-and-create"),
    path("admin/", admin.site.urls),
    path("<str:slug>", views.LinkRedirectView.as_view(), name="redirect"),
]

handler404 = "links.views.json_not_found"
handler500 = "links.views.json_server_error"
