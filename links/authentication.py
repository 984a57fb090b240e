from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from links.models import APIKey
from links.services import hash_api_key


class APIKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <key>` with a key from `manage.py issue_api_key`."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(_("Malformed Authorization header: use 'Bearer <key>'"))
        try:
            plain = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid API key")) from None
        key = APIKey.objects.filter(key_hash=hash_api_key(plain)).first()
        if key is None or not key.is_active:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked API key"))
        # The key stands in for a user: DRF's permissions ask it is_authenticated.
        return key, key

    def authenticate_header(self, request):
        return self.keyword


# drf-spectacular finds the schema's description of this scheme (links/schema.py)
# only once it is imported: importing it with the class makes that certain.
from links import schema  # noqa: E402, F401
