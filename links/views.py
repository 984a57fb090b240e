from django.http import HttpResponsePermanentRedirect, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from links import selectors
from links.serializers import INVALID_URL, CreateLinkSerializer, LinkSerializer
from links.services import SlugTaken, shorten_url


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


class HealthAndCreateView(APIView):
    """`GET /` is the health check; `POST /` shortens a URL."""

    def get(self, request):
        return Response({"status": "ok"})

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


# Nothing here changes state; exempt so a stray POST gets the JSON 405,
# not an HTML CSRF failure page.
@method_decorator(csrf_exempt, name="dispatch")
class LinkRedirectView(View):
    """`GET /<slug>`: a 308 to the original URL."""

    http_method_names = ["get", "head", "options"]
    not_found_message = "URL not found"

    def get(self, request, slug: str):
        link = selectors.get_link(slug=slug)
        if link is None or not link.is_active:
            return JsonErrorResponse(self.not_found_message, status=404)
        response = HttpResponsePermanentRedirect(link.original_url, preserve_request=True)
        # Browsers cache a bare 308 forever; then edits, expiry and click
        # counts would never see the visitor again.
        response["Cache-Control"] = "no-store"
        return response

    def http_method_not_allowed(self, request, *args, **kwargs):
        allowed = ", ".join(m.upper() for m in self._allowed_methods())
        return JsonErrorResponse("Method not allowed", status=405, headers={"Allow": allowed})


def json_not_found(request, exception=None):
    return JsonErrorResponse("Not found", status=404)


def json_server_error(request):
    return JsonErrorResponse("Internal server error", status=500)
