"""Tumblr's publishing, mixed into TumblrProvider: NPF posts on the connection's chosen blog.

Docs: https://www.tumblr.com/docs/en/api/v2#posts---createreblog-a-post-neue-post-format (the
route, "User Uploaded Media": a multipart body whose `json` part holds the post and whose other
parts are the files its image blocks name by `identifier`; 201 with `response.id`, a string),
https://www.tumblr.com/docs/npf (text blocks of at most 4,096 code points, at most 30 image
blocks, `alt_text` on an image block; "Post Content Limits").

Signing: OAuth 1.0a as the provider connects. requests-oauthlib signs a JSON or multipart body
without its content (RFC 5849 §3.4.1.3.1: only form-encoded bodies are signed), as Tumblr expects.

No idempotency: Tumblr has no key and no way to ask "did my post arrive?". An outcome that is
unknown (a timeout or a reset after the request went out, a 5xx on the post itself) is left to
the person (needs_attention); only failures known to be before Tumblr took the post are retried:
no connection made (DNS, refused, connect timeout), 429, 503 ("posting is disabled") and the
upload errors 500.8006/8009 (the media failed, so no post was made).
"""
import json

import requests
from django.conf import settings
from urllib3.exceptions import ConnectTimeoutError

from publishing import media
from publishing.interface import ContentRejected, Handle, NotAccepted, Outgoing, Preview, Published, Publisher, Rules, TextLimit

from .. import http
from ..errors import Kind, PlatformError
from .mastodon_publish import retry_after
from .oauth2 import quoted

TEXT_BLOCK_LIMIT = 4096  # code points per text block (npf-spec "Text Block Length")
MAX_IMAGE_BLOCKS = 30  # npf-spec "Image Blocks"
UPLOAD_FAILED = {8006, 8009}  # 500.8006 / 500.8009: "unknown upload error": the post was not made
MEDIA_MAX_BYTES = 10 * 1024 * 1024  # Tumblr's photo limit (legacy /post `data`: 10MB)
QUOTE_LIMIT = 200
# A post with images sends them in the same request: time to send them, so that a slow upload
# does not become an unknown outcome. Inside the delivery's lease (HAYON_PUBLISH_LEASE_SECONDS).
UPLOAD_SECONDS = 60.0


class TumblrPublishing(Publisher):
    # An NPF text block is shown as typed (Tumblr links nothing in it); images at their own shape.
    publish_preview = Preview(marking="plain", image_ratio=None)
    # ⚠ Hayon counts the whole text against one block's limit: each line becomes its own text
    # block, so this never lets through a post Tumblr would refuse, at the cost of refusing a long
    # multi-paragraph text Tumblr would take.
    publish_rules = Rules(text_limits=(TextLimit("code_points", TEXT_BLOCK_LIMIT),), max_images=MAX_IMAGE_BLOCKS)
    publish_idempotent = False

    def publish(self, *, doc: dict, auth: dict, post: Outgoing, handle: Handle) -> Published:
        blog = doc.get("blogUuid") or doc["blogHostname"]  # the uuid survives a rename
        body = {"content": npf_content(post), "state": "published"}
        signer = self._auth(auth["oauthToken"], auth["oauthTokenSecret"])
        url = f"{settings.TUMBLR_API_URL}/v2/blog/{blog}/posts"
        try:
            if post.media:
                files = [("json", (None, json.dumps(body), "application/json"))]
                files += [(f"image-{n}", image_part(n, item)) for n, item in enumerate(post.media)]
                response = http.session().post(url, files=files, auth=signer,
                                               timeout=max(settings.HAYON_HTTP_TIMEOUT, UPLOAD_SECONDS))
            else:
                response = http.session().post(url, json=body, auth=signer)
        except PlatformError as error:
            raise (_not_accepted(error) if sent_nothing(error) else error) from None
        created = http.expect_json(response, self.label, classify=lambda r: _error(r, blog=doc["blogHostname"]))
        post_id = (created.get("response") or {}).get("id") if isinstance(created.get("response"), dict) else None
        if not isinstance(post_id, (str, int)) or isinstance(post_id, bool) or not str(post_id).isdigit():
            # It was created (2xx), but Hayon cannot say where: the person checks.
            raise PlatformError(Kind.BAD_REPLY, "Tumblr took the post but did not say its id.",
                                status=response.status_code)
        return Published(remote_id=str(post_id), url=f"https://{doc['blogHostname']}/post/{post_id}")


def npf_content(post: Outgoing) -> list[dict]:
    """Text blocks, one per line (an NPF text block is a paragraph), then one image block per image."""
    lines = post.text.replace("\r\n", "\n").split("\n")
    blocks = [{"type": "text", "text": line} for line in lines] if post.text.strip() else []
    for n, item in enumerate(post.media):
        block = {"type": "image", "media": [{"type": item.mime_type, "identifier": f"image-{n}",
                                             "width": item.width, "height": item.height}]}
        if item.alt:
            block["alt_text"] = item.alt
        blocks.append(block)
    return blocks


def image_part(n: int, item) -> tuple[str, bytes, str]:
    """(file name, bytes, type) of one image, shrunk under Tumblr's 10 MB photo limit if larger."""
    data, mime_type = item.read(), item.mime_type
    if len(data) > MEDIA_MAX_BYTES:
        fitted = media.shrink_to_fit(data, max_bytes=MEDIA_MAX_BYTES)
        data, mime_type = fitted.data, fitted.mime_type
    return f"image-{n}.{mime_type.split('/')[1]}", data, mime_type


def sent_nothing(error: PlatformError) -> bool:
    """True when the request never left: refused before any exchange (a private address, the
    action's time spent) or no connection made (DNS, refused, connect timeout). A read timeout or
    a reset after connecting is not: Tumblr may have the post."""
    if error.kind is not Kind.UNAVAILABLE:
        return False
    cause = error.__cause__
    if cause is None:
        return True
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(cause.args[0], "reason", None) if isinstance(cause, requests.ConnectionError) and cause.args else None
    # urllib3: NewConnectionError and NameResolutionError are ConnectTimeoutErrors: no socket was connected.
    return isinstance(reason, ConnectTimeoutError)


def _not_accepted(error: PlatformError) -> NotAccepted:
    return NotAccepted(f"{error.message} Hayon will try again.", status=error.status, code=error.code)


def _errors(response) -> tuple[set[int], str]:
    """(subcodes, first title) of a Tumblr error body: {"meta": …, "errors": [{"title", "code"}]}."""
    try:
        body = response.json()
    except ValueError:
        return set(), ""
    errors = body.get("errors") if isinstance(body, dict) else None
    errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    codes = {e["code"] for e in errors if isinstance(e.get("code"), int) and not isinstance(e.get("code"), bool)}
    titles = [e.get("title") or e.get("detail") for e in errors if isinstance(e.get("title") or e.get("detail"), str)]
    return codes, titles[0] if titles else ""


def _error(response, *, blog: str) -> Exception | None:
    status = response.status_code
    codes, title = _errors(response)
    if status == 404:  # the blog was deleted, or is no longer this account's
        return ContentRejected(f"Tumblr cannot find the blog {blog}. Choose another blog or refresh Tumblr "
                               "under Settings, then retry.", code="404")
    said = f": {quoted(title, QUOTE_LIMIT)}" if title else f" (HTTP {status})"
    if status == 401:  # OAuth 1.0a tokens do not expire: access was removed
        return PlatformError(Kind.REVOKED, "Tumblr no longer accepts Hayon's access.", status=status)
    if status == 429:
        return NotAccepted("Tumblr is rate limiting posts; Hayon will try again.", kind=Kind.RATE_LIMITED,
                           retry_after=retry_after(response), status=status)
    if status == 503 or (status >= 500 and codes & UPLOAD_FAILED):
        return NotAccepted(f"Tumblr did not take the post{said}; Hayon will try again.", status=status)
    if status in (400, 403, 413):
        return ContentRejected(f"Tumblr refused the post{said}", code=str(min(codes)) if codes else str(status))
    return None  # another 5xx: the outcome is unknown (http.default_error: UNAVAILABLE)
