"""Making posts and storing media: what the API (and later the composer) call.

A post is validated for every target first; with any problem nothing is stored or queued. A post
and its deliveries are written in one transaction, and the tasks are queued once it commits.
"""
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import ratelimit
from platforms.services import account_for

from . import media, tasks
from .models import Delivery, MediaFile, Post, PostMedia
from .validation import Problem, check_post

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# Per user: posts made (each fans out to every target) and media uploaded.
POST_LIMITS = (ratelimit.Limit("publish-user", 30, 600), ratelimit.Limit("publish-user-day", 300, 86400))
MEDIA_LIMITS = (ratelimit.Limit("media-user", 60, 600),)


class Invalid(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(problem.message for problem in problems))
        self.problems = problems


class KeyReused(Exception):
    """The Idempotency-Key was used in the last 24 hours with a different request."""


@dataclass(frozen=True)
class Created:
    post: Post
    replayed: bool  # True: the same request came before; this is the first post, nothing new


def fingerprint(*, text: str, targets: list[str], media: list[int], overrides: dict) -> str:
    body = {"text": text, "targets": targets, "media": media, "overrides": overrides}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def create_post(*, user, text: str, targets: list[str], media: list[int], overrides: dict,
                idempotency_key: str = "") -> Created:
    targets = list(dict.fromkeys(targets))  # a target named twice is one delivery
    digest = fingerprint(text=text, targets=targets, media=media, overrides=overrides)
    if idempotency_key and (earlier := _earlier(user, idempotency_key, digest)):
        return Created(earlier, replayed=True)
    ratelimit.hit([(limit, str(user.pk)) for limit in POST_LIMITS])
    files = _own_media(user, media)
    problems = check_post(account=account_for(user), targets=targets, text=text, overrides=overrides, media=files)
    if problems:
        raise Invalid(problems)
    try:
        return Created(_store_post(user, text, targets, files, overrides, idempotency_key, digest), replayed=False)
    except IntegrityError:
        # The same key from a concurrent request (a double click) won the insert: answer with its post.
        earlier = _earlier(user, idempotency_key, digest) if idempotency_key else None
        if earlier is None:
            raise
        return Created(earlier, replayed=True)


@transaction.atomic
def _store_post(user, text, targets, files, overrides, key, digest) -> Post:
    if key:  # an expired use of the key gives it up, so the unique constraint lets the new one in
        Post.objects.filter(user=user, idempotency_key=key, created_at__lt=timezone.now() - IDEMPOTENCY_WINDOW).update(
            idempotency_key="")
    post = Post.objects.create(user=user, text=text, overrides={t: o for t, o in overrides.items() if t in targets},
                               idempotency_key=key, request_fingerprint=digest if key else "")
    PostMedia.objects.bulk_create([PostMedia(post=post, media=item, position=i) for i, item in enumerate(files)])
    ids = [Delivery.objects.create(post=post, platform=target).pk for target in targets]
    tasks.enqueue_deliveries(ids)
    return post


def _earlier(user, key: str, digest: str) -> Post | None:
    since = timezone.now() - IDEMPOTENCY_WINDOW
    earlier = Post.objects.filter(user=user, idempotency_key=key, created_at__gte=since).first()
    if earlier is not None and earlier.request_fingerprint != digest:
        raise KeyReused()
    return earlier


def _own_media(user, ids: list[int]) -> list[MediaFile]:
    """The user's media in the order given; someone else's id reads the same as a missing one."""
    found = {m.pk: m for m in MediaFile.objects.filter(user=user, pk__in=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise Invalid([Problem(None, "media", f"Media {missing[0]} is not one of your uploads.")])
    if len(set(ids)) != len(ids):
        raise Invalid([Problem(None, "media", "The same image is attached twice.")])
    return [found[i] for i in ids]


def retry_post(*, post: Post) -> list[int]:
    """The user's Retry: queue again only the deliveries that failed or need attention."""
    from .delivery import retry_failed

    with transaction.atomic():
        ids = retry_failed(post=post)
        if ids:
            tasks.enqueue_deliveries(ids)
    return ids


def mark_published(*, post: Post, platform: str, url: str = "") -> bool:
    """Record that a delivery needing attention did reach the platform (the user checked).

    `url`, when given, must be an http(s) link (it is shown as the post's link); False when that
    account's delivery is not waiting for the user's answer.
    """
    from platforms.documents import web_url

    from .delivery import mark_published as mark

    link = web_url(url.strip()[:500]) if url else ""
    if url and not link:
        raise ValueError("The link to the post must start with https:// or http://.")
    return mark(post=post, platform=platform, url=link)


# -- media -------------------------------------------------------------------------------------------
def store_media(*, user, upload, alt: str = "") -> MediaFile:
    """Check an upload by its content, strip its metadata, store it under a random name.

    Raises media.ImageRejected (a message a person can act on) for anything that is not a
    JPEG/PNG/WebP/GIF image within the size and pixel limits (publishing/media.py).
    """
    ratelimit.hit([(limit, str(user.pk)) for limit in MEDIA_LIMITS])
    if upload.size > media.DEFAULT_LIMITS.max_bytes:  # refused before a byte of it is read
        raise media.ImageRejected(f"This file is {upload.size / media.MB:.1f} MB; the limit is "
                                  f"{media.DEFAULT_LIMITS.max_bytes // media.MB} MB.", rule="file_too_large")
    clean = media.sanitize_image(upload.read())
    item = MediaFile(user=user, mime_type=clean.mime_type, width=clean.width, height=clean.height,
                     size=clean.size, alt=alt)
    item.file.save("upload", ContentFile(clean.data), save=False)
    item.save()
    return item
