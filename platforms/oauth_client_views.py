"""What an AT Protocol authorization server fetches about Hayon: its client metadata (whose URL is
Hayon's client_id) and the public halves of its client keys (https://atproto.com/specs/oauth#clients).

Public by design: no login, no cookies, no secrets (only public JWK fields are published).
"""
from django.conf import settings
from django.http import Http404, JsonResponse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET

from .errors import PlatformError
from .providers.atproto_oauth import client as oauth_client

MAX_AGE = 300  # servers cache these; short, so a rotated key is published within minutes


def _json(data: dict) -> JsonResponse:
    response = JsonResponse(data)
    patch_cache_control(response, public=True, max_age=MAX_AGE)
    return response


@require_GET
def client_metadata(request):
    if not settings.BLUESKY_OAUTH:
        raise Http404("Bluesky sign-in is off")
    return _json(oauth_client.client_metadata())


@require_GET
def jwks(request):
    if not settings.BLUESKY_OAUTH:
        raise Http404("Bluesky sign-in is off")
    try:
        return _json(oauth_client.jwks())
    except PlatformError:  # misconfigured keys: logged by client_keys; publish nothing rather than fail
        return _json({"keys": []})
