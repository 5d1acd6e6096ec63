"""Health you can trust: what a failure means, and when upkeep should look again.

Transient failures (timeouts, 5xx, 429, unreadable replies) happen to healthy connections: they
keep the current status and only become `error` after ESCALATE_AFTER in a row, so a short outage
does not mark channels as broken. Expired or revoked credentials need reconnection at once.
"""
from datetime import timedelta

from django.utils import timezone

from . import documents
from .errors import Kind, PlatformError

ESCALATE_AFTER = 3
TRANSIENT = {Kind.UNAVAILABLE, Kind.RATE_LIMITED, Kind.BAD_REPLY}
# Retried with back-off rather than daily: an unexpected failure is shown as an error at once,
# but may well pass (a reply that confused us once).
BACKOFF = TRANSIENT | {Kind.UNEXPECTED}
RETRY_BASE = timedelta(minutes=15)
RETRY_MAX = timedelta(hours=6)


def after_failure(previous: dict, error: PlatformError) -> dict:
    previous = previous or {}
    failures = int(previous.get("consecutiveFailures", 0)) + 1
    if error.kind in TRANSIENT and failures < ESCALATE_AFTER:
        return documents.health(
            previous.get("status", "active"),
            reason=f"The last check failed ({error.message}) and will be retried.",
            needs_reconnection=bool(previous.get("needsReconnection")),
            failures=failures,
        )
    return documents.health(
        error.kind.health_status,
        reason=error.message,
        needs_reconnection=error.kind.needs_reconnection or bool(previous.get("needsReconnection") and error.kind in TRANSIENT),
        failures=failures,
    )


def retry_at(error: PlatformError, failures: int):
    """Transient or unexpected: back off (15 min, 30, 60 ... up to 6 h). Needing the user: once a day is enough."""
    if error.kind in BACKOFF:
        return timezone.now() + min(RETRY_BASE * 2 ** max(failures - 1, 0), RETRY_MAX)
    return timezone.now() + timedelta(days=1)
