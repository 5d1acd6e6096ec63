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
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts import ratelimit
from platforms.services import account_for

from . import media, scheduling, tasks
from .interface import publisher_for, publishing_target
from .models import Delivery, MediaFile, Post, PostMedia, Status
from .validation import Problem, check_post, check_target

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
    warnings: tuple[str, ...] = ()  # scheduled posts: an account to reconnect, a quota it would exceed


def fingerprint(*, text: str, targets: list[str], media: list[int], overrides: dict, scheduled_at=None) -> str:
    body = {"text": text, "targets": targets, "media": media, "overrides": overrides}
    if scheduled_at is not None:  # only then, so the fingerprints of posts sent at once are unchanged
        body["scheduledAt"] = scheduled_at.isoformat()
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def create_post(*, user, text: str, targets: list[str], media: list[int], overrides: dict,
                idempotency_key: str = "", scheduled_at=None) -> Created:
    """A post sent now, or at `scheduled_at` (UTC, checked by scheduling.parse_scheduled_at)."""
    targets = list(dict.fromkeys(targets))  # a target named twice is one delivery
    digest = fingerprint(text=text, targets=targets, media=media, overrides=overrides, scheduled_at=scheduled_at)
    if idempotency_key and (earlier := _earlier(user, idempotency_key, digest)):
        return Created(earlier, replayed=True)
    ratelimit.hit([(limit, str(user.pk)) for limit in POST_LIMITS])
    files = _own_media(user, media)
    if scheduled_at is None:
        problems = check_post(account=account_for(user), targets=targets, text=text, overrides=overrides, media=files)
        warnings = []
    else:
        problems, warnings = _check_scheduled(user=user, targets=targets, text=text, overrides=overrides, files=files,
                                              when=scheduled_at)
    if problems:
        raise Invalid(problems)
    try:
        post = _store_post(user, text, targets, files, overrides, idempotency_key, digest, scheduled_at)
        return Created(post, replayed=False, warnings=tuple(warnings))
    except IntegrityError:
        # The same key from a concurrent request (a double click) won the insert: answer with its post.
        earlier = _earlier(user, idempotency_key, digest) if idempotency_key else None
        if earlier is None:
            raise
        return Created(earlier, replayed=True)


@transaction.atomic
def _store_post(user, text, targets, files, overrides, key, digest, scheduled_at=None) -> Post:
    if key:  # an expired use of the key gives it up, so the unique constraint lets the new one in
        Post.objects.filter(user=user, idempotency_key=key, created_at__lt=timezone.now() - IDEMPOTENCY_WINDOW).update(
            idempotency_key="")
    post = Post.objects.create(user=user, text=text, overrides={t: o for t, o in overrides.items() if t in targets},
                               idempotency_key=key, request_fingerprint=digest if key else "", scheduled_at=scheduled_at)
    PostMedia.objects.bulk_create([PostMedia(post=post, media=item, position=i) for i, item in enumerate(files)])
    if scheduled_at is not None:
        ids = [_scheduled_delivery(post, target).pk for target in targets]
        tasks.enqueue_deliveries(ids, run_after=scheduled_at, version=post.version)
        return post
    ids = [Delivery.objects.create(post=post, platform=target).pk for target in targets]
    tasks.enqueue_deliveries(ids)
    return post


def _scheduled_delivery(post: Post, target: str) -> Delivery:
    # next_attempt_at holds the post's time: the claim takes a scheduled delivery only from then on.
    return Delivery.objects.create(post=post, platform=target, status=Status.SCHEDULED, next_attempt_at=post.scheduled_at)


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


# -- scheduling (issue 15) ---------------------------------------------------------------------------
EDITABLE = (Status.SCHEDULED, Status.MISSED)  # no delivery of the post has started
UNSET = object()


class NotEditable(Exception):
    """The post's delivery has started (or it was cancelled): only a retry of what failed is left."""


def _check_scheduled(*, user, targets, text, overrides, files, when, post=None) -> tuple[list[Problem], list[str]]:
    """Problems (refused) and warnings (told) for a post at `when`.

    An account that is connected but needs reconnection is a warning, not a refusal: the user has
    until the post's time to reconnect it. Its content is still checked.
    """
    account = account_for(user)
    problems, warnings = [], []
    for problem in check_post(account=account, targets=targets, text=text, overrides=overrides, media=files):
        provider = publishing_target(problem.target) if problem.target else None
        doc = account.document(provider.name) if provider else {}
        if problem.rule != "connection" or not doc.get("connected"):
            problems.append(problem)
            continue
        warnings.append(f"{problem.message} Until then this post cannot go out at its time.")
        own_text = (overrides.get(problem.target) or {}).get("text", text)
        problems += check_target(label=provider.label, target=problem.target, rules=publisher_for(provider).rules_for(doc),
                                 text=own_text, media=files)
    return problems, warnings + _quota_warnings(user=user, account=account, targets=targets, when=when, post=post)


def _quota_warnings(*, user, account, targets, when, post=None) -> list[str]:
    """A schedule that would take an account over its platform's posts-per-24-hours quota."""
    warnings = []
    for target in targets:
        provider = publishing_target(target)
        publisher = publisher_for(provider) if provider else None
        limit = publisher.rules_for(account.document(provider.name)).daily_posts if publisher else None
        if not limit:
            continue
        times = _post_times(user=user, platform=target, around=when, excluding=post)
        busiest = scheduling.busiest_window(times, at=when)
        if busiest > limit:
            warnings.append(f"{provider.label} takes {limit} posts in 24 hours; with this one, {busiest} of your "
                            f"posts to it fall within 24 hours of each other. Some may be refused: spread them out.")
    return warnings


def _post_times(*, user, platform: str, around, excluding=None) -> list:
    """When the user's other posts to `platform` went out or will, within 24 hours of `around`."""
    low, high = around - scheduling.QUOTA_WINDOW, around + scheduling.QUOTA_WINDOW
    rows = Delivery.objects.filter(post__user=user, platform=platform).filter(
        Q(status=Status.PUBLISHED, published_at__range=(low, high))
        | Q(status__in=[Status.SCHEDULED, Status.QUEUED, Status.PUBLISHING], next_attempt_at__range=(low, high))
        | Q(status__in=[Status.QUEUED, Status.PUBLISHING], next_attempt_at__isnull=True, post__created_at__range=(low, high))
    )
    if excluding is not None:
        rows = rows.exclude(post=excluding)
    times = []
    for status, published, due, created in rows.values_list("status", "published_at", "next_attempt_at", "post__created_at"):
        when = published if status == Status.PUBLISHED else (due or created)
        if when and low <= when <= high:
            times.append(when)
    return times


def update_post(*, post: Post, text=UNSET, targets=UNSET, media=UNSET, overrides=UNSET, scheduled_at=UNSET) -> Created:
    """Edit a scheduled post before any of its deliveries starts: version + 1, queued again.

    Raises NotEditable (a delivery started, or it was cancelled) or Invalid (as for a new post).
    The task queued before the edit finds a newer version and does nothing (delivery.claim).
    """
    user = post.user
    text = post.text if text is UNSET else text
    targets = list(post.deliveries.values_list("platform", flat=True)) if targets is UNSET else list(dict.fromkeys(targets))
    overrides = post.overrides if overrides is UNSET else overrides
    files = post.ordered_media() if media is UNSET else _own_media(user, media)
    when = post.scheduled_at if scheduled_at is UNSET else scheduled_at
    if post.scheduled_at is None:
        raise NotEditable("This post was sent at once; only a retry of what failed is possible.")
    ratelimit.hit([(limit, str(user.pk)) for limit in POST_LIMITS])
    problems, warnings = _check_scheduled(user=user, targets=targets, text=text, overrides=overrides, files=files,
                                          when=when, post=post)
    if problems:
        raise Invalid(problems)
    with transaction.atomic():
        _store_edit(post, text=text, targets=targets, files=files, overrides=overrides, when=when,
                    rescheduled=scheduled_at is not UNSET)
    post.refresh_from_db()
    return Created(post, replayed=False, warnings=tuple(warnings))


def _store_edit(post: Post, *, text, targets, files, overrides, when, rescheduled: bool) -> None:
    current = {d.platform: d for d in post.deliveries.select_for_update()}  # PostgreSQL: claims wait for us
    if not current or any(d.status not in EDITABLE for d in current.values()):
        raise NotEditable(_not_editable_reason(current.values()))
    version = post.version + 1
    if not Post.objects.filter(pk=post.pk, version=post.version).update(
            text=text, overrides={t: o for t, o in overrides.items() if t in targets}, scheduled_at=when, version=version):
        raise NotEditable("The post was changed at the same time; load it again.")
    post.media_links.all().delete()
    PostMedia.objects.bulk_create([PostMedia(post=post, media=item, position=i) for i, item in enumerate(files)])
    Delivery.objects.filter(post=post, status__in=EDITABLE).exclude(platform__in=targets).delete()
    kept = [name for name in targets if name in current]
    # Conditional on the status: a worker that claimed one meanwhile makes this edit fail whole.
    moved = Delivery.objects.filter(post=post, platform__in=kept, status__in=EDITABLE if rescheduled else [Status.SCHEDULED])
    moved.update(status=Status.SCHEDULED, next_attempt_at=when, error="", error_kind="", attempts=0, late_seconds=None)
    if Delivery.objects.filter(post=post, platform__in=kept).exclude(status__in=EDITABLE).exists():
        raise NotEditable(_not_editable_reason([]))
    post.scheduled_at, post.version = when, version
    for name in targets:
        if name not in current:
            _scheduled_delivery(post, name)
    ids = list(post.deliveries.filter(status=Status.SCHEDULED).values_list("pk", flat=True))
    tasks.enqueue_deliveries(ids, run_after=when, version=version)


def _not_editable_reason(deliveries) -> str:
    if deliveries and all(d.status == Status.CANCELLED for d in deliveries):
        return "This post was cancelled."
    return "Publishing this post has started, so it can no longer be changed; only what failed can be retried."


def cancel_post(*, post: Post) -> tuple[list[str], list[str]]:
    """Cancel what has not started: (platforms cancelled, platforms already started and left alone)."""
    not_started = Q(status__in=EDITABLE) | Q(status=Status.QUEUED, attempts=0)
    with transaction.atomic():
        ids = list(post.deliveries.select_for_update().filter(not_started).values_list("pk", flat=True))
        Delivery.objects.filter(not_started, pk__in=ids).update(
            status=Status.CANCELLED, next_attempt_at=None, error="Cancelled.", error_kind="", updated_at=timezone.now())
        if ids:  # the version moves on: a task already queued for the post does nothing
            Post.objects.filter(pk=post.pk).update(version=F("version") + 1)
    cancelled = list(post.deliveries.filter(pk__in=ids, status=Status.CANCELLED).values_list("platform", flat=True))
    started = list(post.deliveries.exclude(status=Status.CANCELLED).values_list("platform", flat=True))
    return cancelled, started


def publish_missed_now(*, post: Post) -> list[int]:
    """The user's "Publish now" for deliveries that missed their time: queued at once."""
    with transaction.atomic():
        ids = list(post.deliveries.filter(status=Status.MISSED).values_list("pk", flat=True))
        Delivery.objects.filter(pk__in=ids, status=Status.MISSED).update(
            status=Status.QUEUED, attempts=0, error="", error_kind="", next_attempt_at=None, late_seconds=None,
            updated_at=timezone.now())
        if ids:
            tasks.enqueue_deliveries(ids)
    return ids


def posts_between(*, user, start, end):
    """The user's posts whose scheduled time (or creation time, for posts sent at once) is in [start, end)."""
    return Post.objects.filter(user=user).filter(
        Q(scheduled_at__gte=start, scheduled_at__lt=end)
        | Q(scheduled_at__isnull=True, created_at__gte=start, created_at__lt=end)
    ).annotate(at=Coalesce("scheduled_at", "created_at")).order_by("at", "pk")
