import io
import math

import segno
from django.conf import settings
from django.contrib.auth import get_user
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError
from django.http import HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
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
from rest_framework.exceptions import ParseError
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from links import selectors
from links.authentication import APIKeyAuthentication
from links.clicks import click_counter
from links.errors import Conflict, LinkUnavailable, error_response, message_for
from links.models import APIKey, Link, LinkStatus
from links.negotiation import prefers_html
from links.pages import visitor_error_page
from links.serializers import (
    CreateLinkSerializer,
    ErrorSerializer,
    LinkDetailSerializer,
    LinkSerializer,
    LinkSummarySerializer,
)
from links.services import (
    SlugTaken,
    check_database_writable,
    delete_link,
    shorten_url,
    take_limited_click,
    update_link,
)
from links.throttling import AnonymousLinkCreationThrottle
from links.visitors import is_counted_visit

ERROR_MEANINGS = {
    400: 'Invalid input: {"error": "<sentence>", "fields": {"<field>": ["<problem>"]}}',
    401: "Missing, wrong or revoked API key",
    404: "No such link, or no such page of results",
    413: "The request body is too large",
    415: "The body is not JSON",
    429: "Too many links created from this address",
    503: "The database is unavailable; nothing was changed, try again shortly",
}


def documented_errors(*codes: int) -> dict:
    return {code: OpenApiResponse(ErrorSerializer, ERROR_MEANINGS[code]) for code in codes}


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
        # A person in a browser gets the shorten page; every other client
        # (curl's */*, JSON clients, load balancers) the contract's health answer.
        if prefers_html(request.headers.get("Accept")):
            response = shorten_page(request._request)
        else:
            response = Response({"status": "ok"})
        patch_vary_headers(response, ["Accept"])
        return response

    @extend_schema(
        summary="Shorten a URL",
        request=CreateLinkSerializer,
        responses={
            201: OpenApiResponse(LinkSerializer, "A new link"),
            200: OpenApiResponse(LinkSerializer, "The URL already had this link"),
            400: OpenApiResponse(
                ErrorSerializer,
                'Invalid input, e.g. {"error": "Invalid URL format"}; a refused URL may add "detail"',
            ),
            401: OpenApiResponse(ErrorSerializer, "Wrong API key, or none where one is required"),
            409: OpenApiResponse(ErrorSerializer, "The custom slug is taken by another URL"),
            **documented_errors(413, 415, 429, 503),
        },
        auth=[{}, {"BearerAPIKey": []}],
    )
    def post(self, request):
        if not isinstance(request.data, dict):
            raise ParseError("The body must be a JSON object")
        serializer = CreateLinkSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        try:
            link, created = shorten_url(**serializer.validated_data)
        except SlugTaken as taken:
            raise Conflict(f"The slug '{taken}' is already taken by another URL") from None
        body = LinkSerializer(link, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ManagementAPIMixin:
    authentication_classes = [APIKeyAuthentication]
    permission_classes = [IsAuthenticated]
    lookup_field = "slug"


@extend_schema_view(
    get=extend_schema(
        summary="List links", responses={200: LinkSummarySerializer, **documented_errors(401, 404)}
    )
)
class LinkListView(ManagementAPIMixin, generics.ListAPIView):
    """Links, newest first; `?search=` on slug and URL, `?ordering=` by created_at or clicks."""

    queryset = Link.objects.all()
    serializer_class = LinkSummarySerializer
    filter_backends = [filters.SearchFilter, filters.OrderingFilter]
    search_fields = ["slug", "original_url"]
    ordering_fields = ["created_at", "clicks"]
    ordering = ["-created_at"]


@extend_schema_view(
    get=extend_schema(
        summary="A link with its statistics",
        responses={200: LinkDetailSerializer, **documented_errors(401, 404)},
    ),
    patch=extend_schema(
        summary="Enable, disable, or change a link's limits",
        responses={200: LinkDetailSerializer, **documented_errors(400, 401, 404, 413, 415, 503)},
    ),
    delete=extend_schema(
        summary="Delete a link",
        responses={204: OpenApiResponse(description="Deleted"), **documented_errors(401, 404, 503)},
    ),
)
class LinkDetailView(ManagementAPIMixin, generics.RetrieveUpdateDestroyAPIView):
    queryset = Link.objects.all()
    serializer_class = LinkDetailSerializer
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def perform_update(self, serializer):
        update_link(link=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        delete_link(link=instance)


def unavailable_response(request, error: LinkUnavailable):
    """JSON for API clients; a small page for a browser that prefers HTML
    (the fast path answers unknown slugs by the same rule, with the same page)."""
    if prefers_html(request.headers.get("Accept")):
        return visitor_error_page(status=error.status, message=error.message)
    return error_response(error.message, status=error.status)


# The shorten page: GET / for browsers, and its form's POST /links/new.

SHORTEN_FORM_FIELDS = ("url", "slug", "expires_at", "max_clicks")


def may_create_from_page(request) -> bool:
    """Anyone may, as with POST /, except on a private instance
    (SHORTENER_REQUIRE_API_KEY), where only the admin's staff may: a browser
    sends no API key."""
    if not settings.REQUIRE_API_KEY_FOR_CREATE:
        return True
    # From the session: DRF's views set request.user to their own (API) user.
    user = get_user(request)
    return user.is_active and user.is_staff


def shorten_page(request, *, status: int = 200, **context) -> HttpResponse:
    base_url = selectors.public_base_url(request=request)
    context.setdefault("values", {})
    context.setdefault("errors", {})
    link = context.get("link")
    if link is not None:
        context["short_url"] = selectors.build_short_url(slug=link.slug, request=request)
    context.update(form_offered=may_create_from_page(request), base_url=base_url)
    return render(request, "links/home.html", context, status=status)


class ShortenPageView(View):
    """The form of the shorten page: the same permission, throttle, validation
    (CreateLinkSerializer) and service as `POST /`, in the same order, with
    Django's CSRF protection (a form, unlike the JSON API, can be posted by
    another site); every outcome answers the page, with the error in it."""

    http_method_names = ["get", "head", "post"]

    def get(self, request):
        return shorten_page(request)

    def http_method_not_allowed(self, request, *args, **kwargs):
        return error_response(message_for(405), status=405, headers={"Allow": "GET, HEAD, POST"})

    def post(self, request):
        values = {name: request.POST.get(name, "") for name in SHORTEN_FORM_FIELDS}
        if not may_create_from_page(request):
            return shorten_page(
                request, status=403, error="This instance creates links only with an API key."
            )
        throttle = AnonymousLinkCreationThrottle()
        # DRF's Request gives the throttle what it reads (auth, client address).
        if not throttle.allow_request(Request(request), self):
            seconds = math.ceil(throttle.wait())
            error = f"Too many links created from this address: try again in {seconds} seconds."
            response = shorten_page(request, status=429, values=values, error=error)
            response["Retry-After"] = str(seconds)
            return response
        # An empty optional field is not sent, as a JSON client would leave it out.
        data = {name: value for name, value in values.items() if value != ""}
        serializer = CreateLinkSerializer(data=data, context={"request": request})
        if not serializer.is_valid():
            return self.refused(request, values, status=400, errors=serializer.errors)
        try:
            link, created = shorten_url(**serializer.validated_data)
        except SlugTaken as taken:
            message = f"The alias '{taken}' is already taken by another URL; choose another."
            return self.refused(request, values, status=409, errors={"slug": [message]})
        except DjangoValidationError as refusal:
            errors = {
                "url" if name == "original_url" else name: messages
                for name, messages in refusal.message_dict.items()
            }
            return self.refused(request, values, status=400, errors=errors)
        except DatabaseError:
            return self.refused(
                request,
                values,
                status=503,
                errors={},
                error="The database is unavailable: try again shortly.",
            )
        return shorten_page(request, status=201 if created else 200, link=link, created=created)

    @staticmethod
    def refused(request, values: dict, *, status: int, errors: dict, error: str = "") -> HttpResponse:
        errors = {name: [str(message) for message in messages] for name, messages in errors.items()}
        if not error:
            error = "The link was not created: " + " ".join(
                message for messages in errors.values() for message in messages
            )
        return shorten_page(request, status=status, values=values, errors=errors, error=error)


# Nothing here changes state; exempt so a stray POST gets the JSON 405,
# not an HTML CSRF failure page.
@method_decorator(csrf_exempt, name="dispatch")
class VisitorView(View):
    """A read-only page of a link, for anyone: GET and HEAD, JSON errors."""

    http_method_names = ["get", "head", "options"]

    def dispatch(self, request, *args, **kwargs):
        try:
            return super().dispatch(request, *args, **kwargs)
        except LinkUnavailable as error:
            return unavailable_response(request, error)

    def http_method_not_allowed(self, request, *args, **kwargs):
        allowed = ", ".join(m.upper() for m in self._allowed_methods())
        return error_response(message_for(405), status=405, headers={"Allow": allowed})


class LinkRedirectView(VisitorView):
    """`GET /<slug>`: a 308 to the original URL, counting the click."""

    def get(self, request, slug: str):
        link = selectors.get_followable_link(slug=slug)
        counted = is_counted_visit(method=request.method, user_agent=request.headers.get("User-Agent", ""))
        if counted and link.max_clicks is not None:
            if not take_limited_click(link_id=link.pk):
                raise LinkUnavailable.for_status(LinkStatus.EXHAUSTED)
            click_counter.record(link.pk, already_counted=True)
        elif counted:
            click_counter.record(link.pk)
        response = HttpResponsePermanentRedirect(link.original_url, preserve_request=True)
        # Browsers cache a bare 308 forever; then edits, expiry and click
        # counts would never see the visitor again.
        response["Cache-Control"] = "no-store"
        return response


class LinkPreviewView(VisitorView):
    """`GET /<slug>+`: where a link goes, before going there."""

    def get(self, request, slug: str):
        link = selectors.get_followable_link(slug=slug)
        context = {"link": link, "short_url": selectors.build_short_url(slug=link.slug, request=request)}
        return render(request, "links/preview.html", context)


class LinkQRCodeView(VisitorView):
    """`GET /<slug>/qr.svg` and `/<slug>/qr.png`: the short URL as a QR code,
    for exactly the links the redirect would follow."""

    content_types = {"svg": "image/svg+xml", "png": "image/png"}

    def get(self, request, slug: str, image_format: str):
        link = selectors.get_followable_link(slug=slug)
        short_url = selectors.build_short_url(slug=link.slug, request=request)
        buffer = io.BytesIO()
        segno.make(short_url, error="m").save(buffer, kind=image_format, scale=8, border=2)
        response = HttpResponse(buffer.getvalue(), content_type=self.content_types[image_format])
        # Not cached: it must stop with the link (disabled, expired).
        response["Cache-Control"] = "no-store"
        return response


class DatabaseHealthView(VisitorView):
    """`GET /healthz`: 200 only while the database can be read and written
    (the container's health check); `GET /` stays the contract's plain 200."""

    def get(self, request):
        try:
            check_database_writable()
        except DatabaseError as error:
            return error_response(f"The database cannot be written: {error}", status=503)
        return JsonResponse({"status": "ok", "database": "writable"})


def third_party_api_view(view, *, methods=("GET", "HEAD")):
    """drf-spectacular's schema and Swagger views render their own errors (as
    YAML, or a missing template for OPTIONS): answer those in the site's shape."""

    @csrf_exempt  # read-only: a stray POST gets the 405, not a CSRF failure
    def answer(request, *args, **kwargs):
        if request.method not in methods:
            return error_response(message_for(405), status=405, headers={"Allow": ", ".join(methods)})
        response = view(request, *args, **kwargs)
        if response.status_code >= 400:
            return error_response(message_for(response.status_code), status=response.status_code)
        return response

    return answer
