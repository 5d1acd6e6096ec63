"""Signed, expiring URLs for stored media: how platforms that fetch images by URL get them.

Threads and Instagram (and Facebook Page photos) take an image as a URL and download it from
Meta's servers, which have no Hayon session. So a stored file is served at
`PUBLIC_URL/media/s/<token>`, where the token is django.core.signing over {media id, variant,
expiry} with a salt of its own: it cannot be guessed, and changing the id, the variant or the
expiry breaks the signature. An unsigned or altered token answers 404, an expired one 410. The
stored files are never served under MEDIA_URL, and nothing here lists them.

`variant="jpeg"` serves a JPEG copy (Instagram takes JPEG only; publishing/media.py `to_jpeg`).
"""
import time

from django.conf import settings
from django.core import signing
from django.http import Http404, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_safe

from . import media as images

SALT = "hayon.publishing.signed-media"
DEFAULT_LIFETIME = 3600  # seconds; Meta fetches while the container is made, within minutes
VARIANTS = ("", "jpeg")


def lifetime() -> int:
    return int(getattr(settings, "HAYON_SIGNED_MEDIA_SECONDS", DEFAULT_LIFETIME))


def signed_url(*, media_id: int, variant: str = "", seconds: int | None = None) -> str:
    """The absolute URL a platform can fetch the media from, for `seconds` (default: the setting)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown media variant {variant!r}")
    expires = int(time.time()) + (seconds if seconds is not None else lifetime())
    token = signing.dumps({"m": int(media_id), "v": variant, "e": expires}, salt=SALT, compress=False)
    return f"{settings.PUBLIC_URL}{reverse('signed_media', args=[token])}"


class Expired(Exception):
    pass


def verify(token: str) -> tuple[int, str]:
    """(media id, variant) of a valid token; raises Http404 (unsigned, altered) or Expired."""
    try:
        claims = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise Http404("No such media.") from None
    if not (isinstance(claims, dict) and isinstance(claims.get("m"), int) and isinstance(claims.get("e"), int)
            and claims.get("v") in VARIANTS):
        raise Http404("No such media.")
    if claims["e"] < time.time():
        raise Expired()
    return claims["m"], claims["v"]


@require_safe
def serve(request, token: str):
    """The media a signed token names; no session needed (platforms fetch it)."""
    try:
        media_id, variant = verify(token)
    except Expired:
        return _headers(HttpResponse("This media link has expired.", status=410, content_type="text/plain"))
    from .models import MediaFile  # here: providers import this module before the app registry is ready

    item = MediaFile.objects.filter(pk=media_id).first()
    if item is None:
        raise Http404("No such media.")
    with item.file.open("rb") as stored:
        data, mime_type = stored.read(), item.mime_type
    if variant == "jpeg" and mime_type != "image/jpeg":
        data, mime_type = images.to_jpeg(data).data, "image/jpeg"
    return _headers(HttpResponse(data, content_type=mime_type))


def _headers(response: HttpResponse) -> HttpResponse:
    # Private and never stored: a shared cache must not keep a user's image past the link's life.
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"  # served as the stored type, never sniffed into HTML
    response["Referrer-Policy"] = "no-referrer"
    return response
