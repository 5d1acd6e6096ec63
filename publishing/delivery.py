"""The delivery state machine: claim with a lease, call the provider, record the outcome.

    queued --claim--> publishing --> published
       ^                  |   \\--> failed            (refused, auth, or out of attempts)
       |                  |    \\-> needs_attention   (outcome unknown, platform without idempotency)
       +---- back-off ----+                           (transient, known safe to retry)

Every transition is one conditional UPDATE, so two workers never run one delivery, and no
database transaction is open while the platform is called. The idempotency handle is stored
before the first platform call: a worker that dies after the platform accepted the post leaves
a lease that runs out, and the next attempt uses the same handle and finds the first post.
"""
import functools
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from platforms.errors import Kind, PlatformError

from . import credentials, scheduling
from .interface import TRANSIENT, ContentRejected, Handle, NotAccepted, Outgoing, OutgoingMedia, Published, publisher_for, publishing_target
from .models import Delivery, Status

log = logging.getLogger(__name__)

BACKOFF_FIRST = 30  # seconds before the first retry; doubled each time
BACKOFF_MAX = 30 * 60
AUTH_KINDS = (Kind.EXPIRED, Kind.REVOKED, Kind.REJECTED)


@dataclass(frozen=True)
class Claim:
    delivery: Delivery
    token: str
    lapsed: bool  # taken over from a worker whose lease ran out (it may have reached the platform)
    scheduled: bool = False  # taken from `scheduled` at its time: the late-grace rule applies


def lease_length() -> timedelta:
    return timedelta(seconds=settings.HAYON_PUBLISH_LEASE_SECONDS)


def max_attempts() -> int:
    return settings.HAYON_PUBLISH_MAX_ATTEMPTS


def claimable(now) -> Q:
    """Deliveries a worker may take now: due in the queue, or publishing with a lapsed lease."""
    due = Q(status=Status.QUEUED) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    lapsed = Q(status=Status.PUBLISHING, lease_until__lt=now)
    scheduled = Q(status=Status.SCHEDULED, next_attempt_at__lte=now)  # next_attempt_at: the post's time
    return due | lapsed | scheduled


def claim(delivery_id: int, *, version: int | None = None) -> Claim | None:
    """Take the delivery with a lease, or None when it is not due or another worker holds it.

    A compare-and-swap on (status, lease_token): of two workers that read the same row, only the
    first UPDATE matches, and the second finds its row changed. `version`: the post's version the
    task was queued for; a post edited since then is left to the task its edit queued.
    """
    now = timezone.now()
    same_version = Q() if version is None else Q(post__version=version)
    current = Delivery.objects.filter(claimable(now), same_version, pk=delivery_id).first()
    if current is None:
        return None
    token = secrets.token_hex(16)
    unchanged = Q(pk=delivery_id, status=current.status, lease_token=current.lease_token) & claimable(now) & same_version
    taken = Delivery.objects.filter(unchanged).update(
        status=Status.PUBLISHING, lease_token=token, lease_until=now + lease_length(),
        attempts=F("attempts") + 1, updated_at=now,
    )
    if not taken:
        return None
    return Claim(Delivery.objects.select_related("post", "post__user").get(pk=delivery_id), token,
                 lapsed=current.status == Status.PUBLISHING, scheduled=current.status == Status.SCHEDULED)


def run(delivery_id: int, *, version: int | None = None) -> str:
    """One attempt at one delivery (what the task runs). Returns the status it left, or "skipped"."""
    taken = claim(delivery_id, version=version)
    if taken is None:
        return "skipped"
    if taken.scheduled and not _on_time(taken):
        return _finish(taken, Status.MISSED, error=_missed_reason(taken))
    delivery = taken.delivery
    provider = publishing_target(delivery.platform)  # a provider, or one for a linked document (Instagram)
    publisher = publisher_for(provider) if provider else None
    if publisher is None:
        return _finish(taken, Status.FAILED, error=f"Hayon cannot publish to {delivery.platform}.")
    if taken.lapsed and not publisher.publish_idempotent:
        return _finish(taken, Status.NEEDS_ATTENTION, error=_unknown_outcome(provider.label))
    if delivery.attempts > max_attempts():  # a delivery that keeps killing its worker stops here
        return _finish(taken, Status.FAILED, error=f"{provider.label}: Hayon gave up after {max_attempts()} attempts.")
    handle = _handle(taken, publisher)
    return _attempt(taken, provider, publisher, handle)


def _on_time(taken: Claim) -> bool:
    """The outage rule: within HAYON_LATE_GRACE it goes out and records how late; later it is missed."""
    late = scheduling.lateness(scheduled_at=taken.delivery.post.scheduled_at or timezone.now(), now=timezone.now(),
                               grace=scheduling.late_grace())
    if late.missed:
        return False
    Delivery.objects.filter(pk=taken.delivery.pk, lease_token=taken.token).update(late_seconds=late.seconds)
    taken.delivery.late_seconds = late.seconds
    return True


def _missed_reason(taken: Claim) -> str:
    minutes = int((timezone.now() - taken.delivery.post.scheduled_at).total_seconds() // 60)
    grace = int(scheduling.late_grace().total_seconds() // 60)
    return (f"Not sent: Hayon was not running at the scheduled time and it is now {minutes} minutes late "
            f"(more than {grace}). Publish it now, choose a new time, or cancel it.")


def _handle(taken: Claim, publisher) -> Handle:
    """The stored handle, or a new one stored now: before any platform call."""
    store = functools.partial(_store_handle, taken)
    if taken.delivery.handle:
        return Handle(taken.delivery.handle, fresh=False, store=store)
    handle = Handle(publisher.new_handle(), fresh=True, store=store)
    if handle.data:
        store(handle.data)
    return handle


def _store_handle(taken: Claim, data: dict) -> None:
    if not Delivery.objects.filter(pk=taken.delivery.pk, lease_token=taken.token).update(handle=data):
        raise LeaseLost()


class LeaseLost(Exception):
    """Another worker took the delivery over (our lease ran out): stop before calling the platform."""


def _attempt(taken: Claim, provider, publisher, handle: Handle) -> str:
    delivery, user = taken.delivery, taken.delivery.post.user
    doc = {}
    try:
        doc, auth = credentials.usable_credential(user=user, provider=provider)
        result = publisher.publish(doc=doc, auth=auth, post=outgoing(delivery), handle=handle)
    except LeaseLost:
        return "skipped"
    except credentials.CredentialUnusable as error:
        return _finish(taken, Status.FAILED, error=error.message, kind="reconnect" if error.reconnect else "")
    except ContentRejected as error:
        return _finish(taken, Status.FAILED, error=error.message, kind="content")
    except PlatformError as error:
        return _after_platform_error(taken, provider, publisher, doc, error)
    except Exception as error:  # a bug or a reply nobody foresaw: the outcome is unknown
        log.exception("publishing delivery %s to %s failed: %s", delivery.pk, delivery.platform, type(error).__name__)
        unknown = PlatformError(Kind.BAD_REPLY, f"{provider.label}: Hayon hit an unexpected problem.")
        return _after_platform_error(taken, provider, publisher, doc, unknown)
    return _published(taken, result)


def _after_platform_error(taken: Claim, provider, publisher, doc: dict, error: PlatformError) -> str:
    delivery = taken.delivery
    log.info("delivery %s to %s for user %s failed: %s (status %s, code %s)", delivery.pk, delivery.platform,
             delivery.post.user_id, error.kind.name, error.status, error.code)
    if error.kind in AUTH_KINDS:
        credentials.report_auth_failure(user=delivery.post.user, provider=provider, doc=doc, error=error)
        owner = getattr(provider, "parent", provider)  # Instagram is reconnected through its Facebook Page
        return _finish(taken, Status.FAILED, error=f"{error.message} Reconnect {owner.label} under Settings, then retry.",
                       kind="reconnect")
    if error.kind not in TRANSIENT:
        return _finish(taken, Status.FAILED, error=error.message, kind=error.kind.value)
    if not (publisher.publish_idempotent or isinstance(error, NotAccepted)):
        return _finish(taken, Status.NEEDS_ATTENTION, error=_unknown_outcome(provider.label, error.message))
    if delivery.attempts >= max_attempts():
        return _finish(taken, Status.FAILED, error=f"{error.message} Hayon gave up after {delivery.attempts} attempts.",
                       kind=error.kind.value)
    return _retry_later(taken, error)


def _unknown_outcome(label: str, why: str = "Hayon stopped while publishing.") -> str:
    return (f"{why} {label} may have published the post: check {label}, then mark it published "
            "or retry it.")


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    seconds = min(BACKOFF_FIRST * 2 ** max(attempts - 1, 0), BACKOFF_MAX)
    return timedelta(seconds=max(seconds, min(retry_after or 0, BACKOFF_MAX)))


def _retry_later(taken: Claim, error: PlatformError) -> str:
    from . import tasks  # the task module imports this one

    when = timezone.now() + backoff(taken.delivery.attempts, getattr(error, "retry_after", None))
    seconds = round((when - timezone.now()).total_seconds())
    status = _finish(taken, Status.QUEUED, error=f"{error.message} Retrying in {seconds} seconds.",
                     kind=error.kind.value, next_attempt_at=when)
    if status == Status.QUEUED:
        tasks.enqueue_deliveries([taken.delivery.pk], run_after=when)
    return status


def _finish(taken: Claim, status: str, *, error: str = "", kind: str = "", next_attempt_at=None) -> str:
    """Leave publishing, if we still hold the lease (otherwise the worker that took over decides)."""
    changed = Delivery.objects.filter(pk=taken.delivery.pk, lease_token=taken.token, status=Status.PUBLISHING).update(
        status=status, error=error, error_kind=kind, lease_until=None, lease_token="",
        next_attempt_at=next_attempt_at, updated_at=timezone.now(),
    )
    return status if changed else "skipped"


def _published(taken: Claim, result: Published) -> str:
    """Published wins over a lost lease: the post exists, whoever else is looking at it."""
    now = timezone.now()
    Delivery.objects.filter(pk=taken.delivery.pk, status__in=[Status.PUBLISHING, Status.NEEDS_ATTENTION]).update(
        status=Status.PUBLISHED, remote_id=result.remote_id, url=result.url, published_at=now, error="",
        error_kind="", lease_until=None, lease_token="", next_attempt_at=None, updated_at=now,
    )
    return Status.PUBLISHED


def outgoing(delivery: Delivery) -> Outgoing:
    post = delivery.post
    return Outgoing(
        post_id=post.pk,
        text=post.text_for(delivery.platform),
        media=tuple(
            OutgoingMedia(mime_type=m.mime_type, width=m.width, height=m.height, size=m.size, alt=m.alt,
                          read=_reader(m), media_id=m.pk)
            for m in post.ordered_media()
        ),
    )


def _reader(media):
    def read() -> bytes:
        with media.file.open("rb") as stored:
            return stored.read()

    return read


# -- recovery and retries ------------------------------------------------------------------------
STALE_QUEUE = timedelta(minutes=10)  # a due delivery with no task run for this long lost its task


def stalled(now=None) -> list[int]:
    """Deliveries whose task is gone: a lapsed lease (the worker died) or long overdue in the queue
    (the enqueue after the commit never happened). A second task for one is harmless: the claim
    lets only one through."""
    now = now or timezone.now()
    gone = Q(status=Status.PUBLISHING, lease_until__lt=now)
    overdue = Q(status=Status.QUEUED) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now - STALE_QUEUE)) & (
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=now - STALE_QUEUE)
    )
    # A scheduled delivery past its time whose task is gone (the late-grace rule then decides).
    scheduled = Q(status=Status.SCHEDULED, next_attempt_at__lte=now - STALE_QUEUE) & (
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=now - STALE_QUEUE))
    return list(Delivery.objects.filter(gone | overdue | scheduled).values_list("pk", flat=True)[:500])


def mark_published(*, post, platform: str, url: str = "") -> bool:
    """The user's answer to "needs attention": the post did reach the platform. Only a delivery
    whose outcome is unknown may be marked (never one Hayon knows failed or is still sending)."""
    now = timezone.now()
    return bool(Delivery.objects.filter(post=post, platform=platform, status=Status.NEEDS_ATTENTION).update(
        status=Status.PUBLISHED, url=url, error="", error_kind="", published_at=now, updated_at=now))


def retry_failed(*, post) -> list[int]:
    """Queue again the deliveries of `post` that failed or need attention (the user's Retry).

    The handle is kept: a retry of a post a platform did take finds it where the platform allows.
    """
    ids = list(post.deliveries.filter(status__in=[Status.FAILED, Status.NEEDS_ATTENTION]).values_list("pk", flat=True))
    Delivery.objects.filter(pk__in=ids, status__in=[Status.FAILED, Status.NEEDS_ATTENTION]).update(
        status=Status.QUEUED, attempts=0, error="", error_kind="", next_attempt_at=None, updated_at=timezone.now()
    )
    return ids
