from rest_framework.throttling import SimpleRateThrottle

from links.models import APIKey
from links.services import take_rate_slot


class AnonymousLinkCreationThrottle(SimpleRateThrottle):
    """Anonymous link creation, per client IP (SHORTENER_ANON_CREATE_RATE).
    Requests with an API key are not limited, so scripts can create in bulk.

    DRF's own throttles keep a history in the cache with a read-modify-write
    that concurrent requests race through; here the window is taken by
    `take_rate_slot`, atomically across threads and worker processes."""

    scope = "anon_create"

    def get_cache_key(self, request, view):
        if isinstance(request.auth, APIKey):
            return None
        return f"{self.scope}:{self.get_ident(request)}"

    def allow_request(self, request, view):
        key = self.get_cache_key(request, view)
        if self.rate is None or key is None:
            return True
        self.retry_after = take_rate_slot(key=key, limit=self.num_requests, period=self.duration)
        return self.retry_after is None

    def wait(self):
        return self.retry_after
