"""The Tasks API entry points. Arguments are ids only: the database backend stores them as plain
JSON, readable by anyone who can read the task table, so nothing secret is ever an argument."""
from django.db import transaction
from django.utils import timezone
from django_tasks import task

from . import delivery
from .models import Delivery


@task()
def deliver(delivery_id: int, version: int | None = None) -> str:
    """One attempt at one delivery; a second task for the same delivery finds nothing to do.

    `version`: set for a scheduled post; a task queued before an edit does nothing (the edit
    queued its own), so the old text is never published.
    """
    return delivery.run(delivery_id, version=version)


def enqueue_deliveries(ids: list[int], *, run_after=None, version: int | None = None) -> None:
    """Queue a task per delivery (after the current transaction commits, so the worker finds the rows)."""

    def send():
        Delivery.objects.filter(pk__in=ids).update(enqueued_at=timezone.now())
        runner = deliver.using(run_after=run_after) if run_after else deliver
        for delivery_id in ids:
            if version is None:
                runner.enqueue(delivery_id)
            else:
                runner.enqueue(delivery_id, version=version)

    transaction.on_commit(send)


def requeue_stalled() -> int:
    """Give a task back to deliveries that lost theirs (see delivery.stalled); the worker runs this."""
    ids = delivery.stalled()
    if ids:
        enqueue_deliveries(ids)
    return len(ids)
