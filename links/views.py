import io

import segno
from django.conf import settings
from django.http import HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import filters, generics, serializers, status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from links import selectors
from links.authentication import APIKeyAuthentication
from links.clicks import click_counter
from links.exceptions import CLICK_LIMIT_REACHED, LINK_EXPIRED, URL_NOT_FOUND
from links.models import APIKey, Link
from links.serializers import (
    INVALID_URL,
    CreateLinkSerializer,
    ErrorSerializer,
    LinkDetailSerializer,
    LinkSerializer,
    LinkSummarySerializer,
)
from links.services import SlugTaken, delete_link, shorten_url, take_limited_click, update_link
from links.throttling import AnonymousLinkCreationThrottle
from links.visitors import is_counted_visit


class JsonErrorResponse(JsonResponse):
    def __init__(self, message: str, *, status: int, **kwargs):
        super().__init__({"error": message}, status=status, **kwargs)


def describe_errors(errors: dict) -> str:
    """One clear sentence for a failed creation request. Any problem with the
    URL keeps the contract's exact text."""
    if "url" in errors:
        return INVALID_URL
    field, messages = next(iter(errors.items()))
    message = messages[0] if isinstance(messages, list) else messages
    return f"{field}: {message}" if field != "non_field_errors" else str(message)


class CreateLinkPermission(BasePermission):
    """Anyone may create links unless SHORTENER_REQUIRE_API_KEY (a private instance)."""

    def has_permission(self, request, view):
        if request.method == "POST" and settings.REQUIRE_API_KEY_FOR_CREATE:
            return isinstance(request.auth, APIKey)
        return True


class HealthAndCreateView(APIView):
    """`GET /` is the health check; `POST /` shortens a URL."""

    authentication_classes = [APIKeyAuthentication]
    permission_classes = [CreateLinkPermission]

    def get_throttles(self):
        return [AnonymousLinkCreationThrottle()] if self.request.method == "POST" else []

    @extend_schema(
        summary="Health check",
        responses={200: inline_serializer("Health", {"status": serializers.CharField()})},
        auth=[],
    )
    def get(self, request):
        return Response({"status": "ok"})

    @extend_schema(
        summary="Shorten a URL",
        request=CreateLinkSerializer,
        responses={
            201: OpenApiResponse(LinkSerializer, "A new link"),
            200: OpenApiResponse(LinkSerializer, "The URL already had this link"),
            400: OpenApiResponse(ErrorSerializer, 'Invalid input, e.g. {"error": "Invalid URL format"}'),
            401: OpenApiResponse(ErrorSerializer, "Wrong API key, or none where one is required"),
            409: OpenApiResponse(ErrorSerializer, "The custom slug is taken by another URL"),
            429: OpenApiResponse(ErrorSerializer, "Too many links created from this address"),
        },
        auth=[{}, {"BearerAPIKey": []}],
    )
    def post(self, request):
        if not isinstance(request.data, dict):
            return Response({"error": "The body must be a JSON object"}, status=400)
        serializer = CreateLinkSerializer(data=request.data, context={"request": request})
        if not serializer.is_valid():
            return Response({"error": describe_errors(serializer.errors)}, status=400)
        try:
            link, created = shorten_url(**serializer.validated_data)
        except SlugTaken as taken:
            return Response(
                {"error": f"The slug '{taken}' is already taken by another URL"},
                status=status.HTTP_409_CONFLICT,
            )
        body = LinkSerializer(link, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ManagementAPIMixin:
    authentication_classes = [APIKeyAuthentication]
    permission_classes = [IsAuthenticated]
    lookup_field = "slug"


@extend_schema_view(get=extend_schema(summary="List links"))
class LinkListView(ManagementAPIMixin, generics.ListAPIView):
    """Links, newest first; `?search=` on slug and URL, `?ordering=` by created_at or clicks."""

    queryset = Link.objects.all()
    serializer_class = LinkSummarySerializer
    filter_backends = [filters.SearchFilter, filters.OrderingFilter]
    search_fields = ["slug", "original_url"]
    ordering_fields = ["created_at", "clicks"]
    ordering = ["-created_at"]


@extend_schema_view(
    get=extend_schema(summary="A link with its statistics"),
    patch=extend_schema(summary="Enable, disable, or change a link's limits"),
    delete=extend_schema(summary="Delete a link"),
)
class LinkDetailView(ManagementAPIMixin, generics.RetrieveUpdateDestroyAPIView):
    queryset = Link.objects.prefetch_related("daily_clicks")
    serializer_class = LinkDetailSerializer
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def perform_update(self, serializer):
        update_link(link=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        delete_link(link=instance)


class LinkUnavailable(Exception):
    """The link exists but may not be followed now."""

    def __init__(self, *, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def followable_link(slug: str):
    """The link behind `slug` if it may be followed now; raises LinkUnavailable."""
    link = selectors.get_link(slug=slug)
    # A disabled link is as good as gone for visitors: 404, like an unknown one.
    if link is None or not link.is_active:
        raise LinkUnavailable(status=404, message=URL_NOT_FOUND)
    if link.is_expired:
        raise LinkUnavailable(status=410, message=LINK_EXPIRED)
    if link.is_exhausted:
        raise LinkUnavailable(status=410, message=CLICK_LIMIT_REACHED)
    return link


def unavailable_response(request, error: LinkUnavailable):
    """JSON for API clients; a small page for a browser that asks for HTML."""
    if error.status == 410 and "text/html" in request.headers.get("Accept", ""):
        return render(request, "links/gone.html", {"message": error.message}, status=410)
    return JsonErrorResponse(error.message, status=error.status)


# Nothing here changes state; exempt so a stray POST gets the JSON 405,
# not an HTML CSRF failure page.
@method_decorator(csrf_exempt, name="dispatch")
class LinkRedirectView(View):
    """`GET /<slug>`: a 308 to the original URL, counting the click."""

    http_method_names = ["get", "head", "options"]

    def get(self, request, slug: str):
        try:
            link = followable_link(slug)
        except LinkUnavailable as error:
            return unavailable_response(request, error)
        counted = is_counted_visit(method=request.method, user_agent=request.headers.get("User-Agent", ""))
        if counted and link.max_clicks is not None:
            if not take_limited_click(link_id=link.pk):
                return unavailable_response(request, LinkUnavailable(status=410, message=CLICK_LIMIT_REACHED))
            click_counter.record(link.pk, already_counted=True)
        elif counted:
            click_counter.record(link.pk)
        response = HttpResponsePermanentRedirect(link.original_url, preserve_request=True)
        # Browsers cache a bare 308 forever; then edits, expiry and click
        # counts would never see the visitor again.
        response["Cache-Control"] = "no-store"
        return response

    def http_method_not_allowed(self, request, *args, **kwargs):
        allowed = ", ".join(m.upper() for m in self._allowed_methods())
        return JsonErrorResponse("Method not allowed", status=405, headers={"Allow": allowed})


class LinkPreviewView(View):
    """`GET /<slug>+`: where a link goes, before going there."""

    def get(self, request, slug: str):
        try:
            link = followable_link(slug)
        except LinkUnavailable as error:
            return unavailable_response(request, error)
        context = {"link": link, "short_url": selectors.build_short_url(slug=link.slug, request=request)}
        return render(request, "links/preview.html", context)


class LinkQRCodeView(View):
    """`GET /<slug>/qr.svg` and `/<slug>/qr.png`: the short URL as a QR code."""

    content_types = {"svg": "image/svg+xml", "png": "image/png"}

    def get(self, request, slug: str, image_format: str):
        link = selectors.get_link(slug=slug)
        if link is None:
            return JsonErrorResponse(URL_NOT_FOUND, status=404)
        short_url = selectors.build_short_url(slug=link.slug, request=request)
        buffer = io.BytesIO()
        segno.make(short_url, error="m").save(buffer, kind=image_format, scale=8, border=2)
        response = HttpResponse(buffer.getvalue(), content_type=self.content_types[image_format])
        response["Cache-Control"] = "public, max-age=86400"
        return response


def json_not_found(request, exception=None):
    return JsonErrorResponse("Not found", status=404)


def json_server_error(request):
    return JsonErrorResponse("Internal server error", status=500)
