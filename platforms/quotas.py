"""App-wide quotas (Tumblr's 1,000 calls an hour for the whole app), counted in the database.

A cache counter in each process would start at zero in every cron run and every forked child
(issue 12, item 7); one row per quota and window, raised by a conditional UPDATE, is one count
for every process and host, and the database makes each increment atomic.
"""
import time

from django.db import IntegrityError, transaction
from django.db.models import F

from .models import QuotaUse

KEEP_WINDOWS = 24  # old windows are deleted now and then; a day of them is plenty to look at


def spend(name: str, *, limit: int, seconds: int) -> bool:
    """Count one call against `name` (at most `limit` per `seconds`); False once the window is spent."""
    window = int(time.time()) // seconds
    for _ in range(3):
        if QuotaUse.objects.filter(name=name, window=window, used__lt=limit).update(used=F("used") + 1):
            return True
        # Spent only when the row says so: a row another process created since the UPDATE above
        # (with room left) is counted against on the next turn, not taken for a spent window.
        if QuotaUse.objects.filter(name=name, window=window, used__gte=limit).exists():
            return False
        _open_window(name, window)
    return False


def _open_window(name: str, window: int) -> None:
    try:
        with transaction.atomic():
            QuotaUse.objects.create(name=name, window=window, used=0)
    except IntegrityError:
        return  # another process created it first: count against theirs
    QuotaUse.objects.filter(name=name, window__lt=window - KEEP_WINDOWS).delete()


def used(name: str, *, seconds: int) -> int:
    row = QuotaUse.objects.filter(name=name, window=int(time.time()) // seconds).first()
    return row.used if row else 0
