"""Bluesky's publishing, mixed into BlueskyProvider: rules, record key, facets, images, createRecord.

Docs: https://docs.bsky.app/docs/advanced-guides/posts (records, facets, images),
https://atproto.com/specs/tid (record keys), lexicons app.bsky.feed.post, app.bsky.embed.images,
app.bsky.richtext.facet, com.atproto.repo.{createRecord,getRecord,uploadBlob}.

Idempotency: Hayon picks the record key (a TID) once per delivery and stores it before the first
call. A retry asks getRecord for that key first and, if the record is there, reports it instead
of creating another; createRecord with a key already taken is refused by the PDS anyway.
"""
import secrets
import time
from datetime import datetime, timezone

from atproto_client import exceptions as sdk

from publishing import facets, media
from publishing.interface import ContentRejected, Handle, Outgoing, Preview, Published, Publisher, Rules, TextLimit

from ..errors import Kind, PlatformError
from . import bluesky  # a module import: bluesky.py imports this module for its class line

COLLECTION = "app.bsky.feed.post"
MAX_BLOB_BYTES = 1_000_000  # app.bsky.embed.images as the AppView enforces it (platform-apis.md §2.2 ⚠)
MAX_MENTIONS = 20  # handles resolved per post; more stay plain text
TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"  # base32-sortable


def new_tid(now_us: int | None = None, clock_id: int | None = None) -> str:
    """A record key: 1 zero bit, 53 bits of microseconds since the epoch, a 10-bit random clock id,
    as 13 base32-sortable characters (https://atproto.com/specs/tid)."""
    now_us = time.time_ns() // 1000 if now_us is None else now_us
    clock_id = secrets.randbelow(1024) if clock_id is None else clock_id
    value = ((now_us & ((1 << 53) - 1)) << 10) | clock_id
    return "".join(TID_ALPHABET[(value >> shift) & 31] for shift in range(60, -1, -5))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def post_url(*, did: str, rkey: str) -> str:
    # The DID, not the handle: a handle can change, and the link must keep working.
    return f"https://bsky.app/profile/{did}/post/{rkey}"


class BlueskyPublishing(Publisher):
    publish_rules = Rules(
        text_limits=(
            TextLimit("graphemes", 300),  # app.bsky.feed.post text maxGraphemes
            TextLimit("utf8_bytes", 3000, unit="bytes", rule="text_bytes"),  # its maxLength
        ),
        max_images=4,
    )
    publish_idempotent = True  # our own record key: a retry finds the first record
    # The app marks what detectFacets finds and shows the whole text; 2-4 images sit in square cells.
    publish_preview = Preview(marking="facets", image_ratio=(1, 1))

    def new_handle(self) -> dict:
        return {"rkey": new_tid()}

    def credential_due(self, *, auth: dict) -> bool:
        return bluesky.credential_due(auth)  # an app-password JWT or a sign-in's access token

    def publish(self, *, doc: dict, auth: dict, post: Outgoing, handle: Handle) -> Published:
        client, headers = bluesky.client_for(auth)  # Bearer (app password) or DPoP (Bluesky sign-in)
        did, rkey = doc["did"], handle.data["rkey"]
        try:
            if not handle.fresh and _record_exists(client, headers, did=did, rkey=rkey):
                return Published(remote_id=f"at://{did}/{COLLECTION}/{rkey}", url=post_url(did=did, rkey=rkey))
            record = {"$type": COLLECTION, "text": post.text, "createdAt": _now()}
            facets = build_facets(post.text, resolve=_resolver(client, headers))
            if facets:
                record["facets"] = facets
            if post.media:
                record["embed"] = {"$type": "app.bsky.embed.images",
                                   "images": [_image(client, headers, item) for item in post.media]}
            created = _create(client, headers, did=did, rkey=rkey, record=record)
        except (sdk.AtProtocolError, ValueError) as exc:
            raise _publish_error(exc) from None
        return Published(remote_id=created, url=post_url(did=did, rkey=rkey))


def _record_exists(client, headers, *, did: str, rkey: str) -> bool:
    try:
        client.com.atproto.repo.get_record({"repo": did, "collection": COLLECTION, "rkey": rkey}, headers=headers)
        return True
    except sdk.BadRequestError as exc:
        if _error_name(exc) == "RecordNotFound":
            return False
        raise


def _create(client, headers, *, did: str, rkey: str, record: dict) -> str:
    try:
        reply = client.com.atproto.repo.create_record(
            {"repo": did, "collection": COLLECTION, "rkey": rkey, "record": record}, headers=headers
        )
    except sdk.AtProtocolError as exc:
        # Two attempts racing (a lapsed lease): the key is taken because our record is there. The
        # reference PDS answers a taken key with 500 InternalServerError, not a conflict, so look.
        if _record_exists_quietly(client, headers, did=did, rkey=rkey):
            return f"at://{did}/{COLLECTION}/{rkey}"
        raise exc
    return reply.uri


def _record_exists_quietly(client, headers, *, did: str, rkey: str) -> bool:
    try:
        return _record_exists(client, headers, did=did, rkey=rkey)
    except sdk.AtProtocolError:
        return False  # the original error says more


def _image(client, headers, item) -> dict:
    data, mime_type, width, height = item.read(), item.mime_type, item.width, item.height
    if len(data) > MAX_BLOB_BYTES:
        fitted = _fit(data)
        data, mime_type, width, height = fitted.data, fitted.mime_type, fitted.width, fitted.height
    blob = client.com.atproto.repo.upload_blob(data, headers={**headers, "Content-Type": mime_type}).blob
    return {"alt": item.alt or "", "image": blob.model_dump(by_alias=True, exclude_none=True),
            "aspectRatio": {"width": width, "height": height}}


def _fit(data: bytes) -> media.ProcessedImage:
    """An image above Bluesky's blob limit, re-encoded and resized under it (never refused)."""
    return media.shrink_to_fit(data, max_bytes=MAX_BLOB_BYTES)


def _resolver(client, headers):
    """handle -> DID through the user's PDS (com.atproto.identity.resolveHandle), None if unknown.

    At most MAX_MENTIONS calls per post: each is a round trip inside the delivery's lease.
    """
    asked = []

    def resolve(name: str) -> str | None:
        asked.append(name)
        if len(asked) > MAX_MENTIONS:
            return None
        try:
            return client.com.atproto.identity.resolve_handle({"handle": name}, headers=headers).did
        except sdk.BadRequestError:
            return None  # "Unable to resolve handle": stays plain text, as Bluesky's own clients do

    return resolve


def build_facets(text: str, *, resolve) -> list[dict]:
    """Links, mentions (resolved to DIDs) and tags, by UTF-8 byte range (publishing/facets.py)."""
    return facets.bluesky_facets(text, resolve=resolve)


def _error_name(exc) -> str:
    return getattr(getattr(getattr(exc, "response", None), "content", None), "error", None) or ""


def _publish_error(exc: Exception) -> Exception:
    """What a failed Bluesky call means for the delivery (see publishing/interface.py)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    name = _error_name(exc)
    if status in (400, 413) and name not in ("ExpiredToken", "InvalidToken", "AccountNotFound"):
        message = getattr(getattr(response, "content", None), "message", None) or name or "the post was refused"
        return ContentRejected(f"Bluesky refused the post: {str(message)[:300]}", code=name or None)
    if status == 429:
        return PlatformError(Kind.RATE_LIMITED, "Bluesky is rate limiting posts; Hayon will try again.", status=status, code=name)
    return bluesky.sdk_error(exc, during="call")
