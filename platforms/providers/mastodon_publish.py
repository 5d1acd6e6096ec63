"""Mastodon's publishing, mixed into MastodonProvider: the server's own rules, media, statuses.

Docs: https://docs.joinmastodon.org/methods/statuses/#create (POST /api/v1/statuses, the
`Idempotency-Key` header), https://docs.joinmastodon.org/methods/media/#v2 (POST /api/v2/media:
200 when processed, 202 with `url: null` while processing; GET /api/v1/media/:id answers 206 until
it is done), https://docs.joinmastodon.org/entities/Error/ (422 with the server's own words).

Idempotency: a key made once per delivery and stored before the first call; Mastodon remembers it
for an hour and answers a repeat with the status it already made, so a retry after a timeout can
never make a second one. Uploaded media ids are stored in the handle as soon as the server gives
them, so a retry attaches the same uploads instead of uploading again.
"""
import io
import secrets
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from django.conf import settings
from PIL import Image

from publishing import media
from publishing.interface import ContentRejected, Handle, NotAccepted, Outgoing, Preview, Published, Publisher, Rules, TextLimit

from .. import http
from ..errors import Kind, PlatformError
from . import mastodon  # a module import: mastodon.py imports this module for its class line
from .mastodon_instance import DEFAULT_LIMITS, canonical_url
from .oauth2 import quoted

# One attempt must end inside its lease (HAYON_PUBLISH_LEASE_SECONDS, 300): 4 uploads of at most
# UPLOAD_SECONDS, MEDIA_WAIT_SECONDS of processing and the post itself come to about 3 minutes.
UPLOAD_SECONDS = 30.0  # an upload sends up to the server's image limit (16 MB on Mastodon 4.4)
MEDIA_WAIT_SECONDS = 45  # how long one attempt waits for the server to process its images
MEDIA_POLL_FIRST = 0.25  # seconds before the first look; doubled each time, at most MEDIA_POLL_MOST
MEDIA_POLL_MOST = 4.0
DESCRIPTION_LIMIT = 1500  # alt text: Mastodon's configuration.media_attachments.description_limit default
QUOTE_LIMIT = 200  # of a server's refusal: enough to say which rule


def _limit(limits: dict, key: str) -> int:
    value = limits.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else DEFAULT_LIMITS[key]


def host_of(doc: dict) -> str:
    """How a server names itself in messages: "mastodon.example" (its host, with a port if any)."""
    return urlsplit(doc["instanceUrl"]).netloc


class MastodonPublishing(Publisher):
    publish_rules = Rules(text_limits=(TextLimit("mastodon", DEFAULT_LIMITS["maxCharacters"]),),
                          max_images=DEFAULT_LIMITS["maxMediaAttachments"], max_alt_chars=DESCRIPTION_LIMIT)
    publish_idempotent = True  # the Idempotency-Key: a retry gets the first status back
    # The composer's preview: links shown shortened, `@user@domain` as `@user`, images cropped 16:9.
    publish_preview = Preview(marking="mastodon", image_ratio=(16, 9))

    def rules_for(self, doc: dict) -> Rules:
        """The server's own limits, read from /api/v2/instance at connect and refreshed by upkeep."""
        limits = doc.get("limits") if isinstance(doc.get("limits"), dict) else {}
        reserved = limits.get("charactersReservedPerUrl")
        reserved = reserved if isinstance(reserved, int) and not isinstance(reserved, bool) and reserved >= 0 \
            else DEFAULT_LIMITS["charactersReservedPerUrl"]
        return Rules(
            text_limits=(TextLimit("mastodon", _limit(limits, "maxCharacters")),),
            max_images=_limit(limits, "maxMediaAttachments"),
            max_alt_chars=DESCRIPTION_LIMIT,
            counting_options={"mastodon": {"characters_reserved_per_url": reserved}},
        )

    def new_handle(self) -> dict:
        return {"idempotencyKey": secrets.token_hex(16)}

    def publish(self, *, doc: dict, auth: dict, post: Outgoing, handle: Handle) -> Published:
        server = doc["instanceUrl"]
        headers = {"Authorization": f"Bearer {auth['accessToken']}"}
        label = host_of(doc)
        if not handle.data.get("idempotencyKey"):  # a delivery queued before Mastodon could publish
            handle.save(**self.new_handle())
        media_ids = _media(server, headers, label, doc=doc, post=post, handle=handle)
        form = [("status", post.text)] + [("media_ids[]", media_id) for media_id in media_ids]
        response = http.session().post(
            f"{server}/api/v1/statuses", data=form,
            headers={**headers, "Idempotency-Key": handle.data["idempotencyKey"]},
        )
        status = http.expect_json(response, label, classify=lambda r: _error(r, label))
        return _published(status, label)


# -- media ----------------------------------------------------------------------------------------
def _media(server: str, headers: dict, label: str, *, doc: dict, post: Outgoing, handle: Handle) -> list[str]:
    """The media ids for the post, in order: those an earlier attempt uploaded, then new uploads,
    each stored in the handle the moment the server names it. Waits until all are processed."""
    stored = [i for i in (handle.data.get("media_ids") or []) if isinstance(i, str)][:len(post.media)]
    ids, pending = [], []
    for position, item in enumerate(post.media):
        media_id, ready = stored[position] if position < len(stored) else None, False
        if media_id is not None:
            ready = _look(server, headers, label, media_id)
            if ready is None:  # gone (unattached uploads are cleaned up): upload it again
                media_id = None
        if media_id is None:
            media_id, ready = _upload(server, headers, label, item, limits=doc.get("limits") or {})
        ids.append(media_id)
        if ids != stored[:len(ids)]:
            handle.save(media_ids=list(ids))
        if not ready:
            pending.append(media_id)
    _wait(server, headers, label, pending)
    return ids


def _upload(server: str, headers: dict, label: str, item, *, limits: dict) -> tuple[str, bool]:
    data, mime_type = _fit(item, limits)
    response = http.session().post(
        f"{server}/api/v2/media", headers=headers, timeout=max(settings.HAYON_HTTP_TIMEOUT, UPLOAD_SECONDS),
        files={"file": (f"image.{mime_type.split('/')[1]}", data, mime_type)},
        data={"description": item.alt} if item.alt else None,
    )
    attachment = http.expect_json(response, label, classify=lambda r: _error(r, label))
    media_id = attachment.get("id")
    if not isinstance(media_id, (str, int)) or isinstance(media_id, bool) or media_id == "":
        raise PlatformError(Kind.BAD_REPLY, f"{label} sent an upload without an id.", status=response.status_code)
    # 200: processed; 202: still processing, `url` is null until it is done.
    return str(media_id), response.status_code == 200 and bool(attachment.get("url"))


def _fit(item, limits: dict) -> tuple[bytes, str]:
    """The image as the server takes it: a type it lists, at most its size and pixel limits."""
    data, mime_type = item.read(), item.mime_type
    supported = limits.get("supportedMimeTypes") or DEFAULT_LIMITS["supportedMimeTypes"]
    max_bytes, max_pixels = _limit(limits, "imageSizeLimit"), _limit(limits, "imageMatrixLimit")
    if mime_type not in supported:
        converted = media.to_jpeg(data)
        data, mime_type = converted.data, converted.mime_type
    if item.width * item.height > max_pixels:
        smaller = _scale_to_pixels(data, max_pixels)
        data, mime_type = smaller.data, smaller.mime_type
    if len(data) > max_bytes:
        fitted = media.shrink_to_fit(data, max_bytes=max_bytes)
        data, mime_type = fitted.data, fitted.mime_type
    return data, mime_type


def _scale_to_pixels(data: bytes, max_pixels: int) -> media.ProcessedImage:
    """A JPEG copy with at most `max_pixels` pixels: Mastodon refuses larger images with 422
    (image_matrix_limit), where it could have been resized."""
    image = media.open_checked(data).convert("RGB")
    scale = (max_pixels / (image.width * image.height)) ** 0.5
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    return media.to_jpeg(_png(image.resize(size, Image.Resampling.LANCZOS)))


def _png(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _look(server: str, headers: dict, label: str, media_id: str) -> bool | None:
    """True when the upload is processed, False while it is processing, None when it is gone."""
    response = http.session().get(f"{server}/api/v1/media/{media_id}", headers=headers)
    if response.status_code == 404:
        return None
    attachment = http.expect_json(response, label, classify=lambda r: _error(r, label))
    return response.status_code == 200 and bool(attachment.get("url"))


def _wait(server: str, headers: dict, label: str, pending: list[str]) -> None:
    """Poll each upload until processed, for at most MEDIA_WAIT_SECONDS in all."""
    ends, delay = time.monotonic() + MEDIA_WAIT_SECONDS, MEDIA_POLL_FIRST
    for media_id in pending:
        while True:
            if time.monotonic() + delay > ends:
                # Nothing is posted yet: the next attempt finds the same uploads, maybe done by then.
                raise NotAccepted(f"{label} is still processing the images; Hayon will try again.")
            time.sleep(delay)
            delay = min(delay * 2, MEDIA_POLL_MOST)
            state = _look(server, headers, label, media_id)
            if state is None:
                raise NotAccepted(f"{label} lost an uploaded image; Hayon will upload it again.")
            if state:
                break


# -- replies --------------------------------------------------------------------------------------
def _published(status: dict, label: str) -> Published:
    status_id = status.get("id")
    url = canonical_url(status.get("url")) or canonical_url(status.get("uri"))
    if not isinstance(status_id, (str, int)) or isinstance(status_id, bool) or status_id == "" or not url:
        raise PlatformError(Kind.BAD_REPLY, f"{label} sent a status Hayon could not read.")
    return Published(remote_id=str(status_id), url=url)


def _server_words(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    words = body.get("error") if isinstance(body, dict) else None
    return words if isinstance(words, str) else ""


def _error(response, label: str) -> Exception | None:
    """What a refused call means for the delivery (see publishing/interface.py)."""
    status = response.status_code
    words = _server_words(response)
    token_problem = mastodon._error_code(response) == "invalid_token" or "bearer token" in words.lower()
    if status in (401, 403) or (status == 400 and token_problem):
        # Tokens never expire (docs: api/oauth-tokens): 401, Takahē's `400 Invalid Bearer token` and
        # 403 (a disabled account, a scope taken away) all need the person to reconnect.
        if status == 403 and not token_problem:
            return PlatformError(Kind.REVOKED, f"{label} refused the post: the account may be disabled or "
                                 "Hayon's permission to post was removed.", status=status)
        return PlatformError(Kind.REVOKED, f"{label} says Hayon's access was revoked.", status=status,
                             code=mastodon._error_code(response))
    if status in (400, 413, 422):  # 422: Mastodon's validation ("Text character limit of 500 exceeded")
        said = quoted(words, QUOTE_LIMIT) if words else f"HTTP {status}"
        return ContentRejected(f"{label} says: {said}", code=str(status))
    if status == 429:
        return NotAccepted(f"{label} is rate limiting posts; Hayon will try again.", kind=Kind.RATE_LIMITED,
                           retry_after=retry_after(response), status=status)
    return None  # 5xx and the rest: http.default_error (5xx is transient: retried with the same key)


def retry_after(response) -> float | None:
    """Seconds to wait: `Retry-After` (seconds or a date), else Mastodon's `X-RateLimit-Reset` (ISO 8601)."""
    value = (response.headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    when = None
    try:
        when = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        when = None
    if when is None:
        reset = (response.headers.get("X-RateLimit-Reset") or "").strip()
        try:
            when = datetime.fromisoformat(reset.replace("Z", "+00:00")) if reset else None
        except ValueError:
            when = None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
