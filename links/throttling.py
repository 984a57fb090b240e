from rest_framework.throttling import AnonRateThrottle

from links.models import APIKey


class AnonymousLinkCreationThrottle(AnonRateThrottle):
    """Anonymous link creation, per client IP (SHORTENER_ANON_CREATE_RATE).
    Requests with an API key are not limited, so scripts can create in bulk."""

    scope = "anon_create"

    def allow_request(self, request, view):
        if isinstance(request.auth, APIKey):
            return True
        return super().allow_request(request, view)
