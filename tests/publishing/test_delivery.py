"""The delivery state machine (publishing/delivery.py) with a fake publishing provider."""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from platforms.errors import Kind, PlatformError
from platforms.services import account_for
from publishing import delivery, tasks
from publishing.interface import ContentRejected, NotAccepted
from publishing.models import Delivery, Post, Status

from ..conftest import seed_connection
from .conftest import FakePublisher, unavailable


@pytest.fixture
def make_delivery(user):
    def make(text="Hello from Hayon", platform="tumblr"):
        post = Post.objects.create(user=user, text=text)
        return Delivery.objects.create(post=post, platform=platform)

    return make


@pytest.fixture
def connected(user):
    seed_connection(user, "tumblr", handle="fakeblr")
    return user


def lapse(item: Delivery) -> None:
    """Time passes: the lease of whoever held the delivery runs out."""
    Delivery.objects.filter(pk=item.pk).update(lease_until=timezone.now() - timedelta(seconds=1))


def due_now(item: Delivery) -> None:
    """Time passes: the back-off of a queued retry is over."""
    Delivery.objects.filter(pk=item.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def queued_tasks():
    return [(r.args_kwargs["args"], r.run_after) for r in DBTaskResult.objects.order_by("enqueued_at")]


@pytest.mark.django_db
def test_a_claimed_delivery_cannot_be_claimed_again_while_the_lease_holds(connected, make_delivery):
    item = make_delivery()
    first = delivery.claim(item.pk)
    assert first is not None and first.delivery.status == Status.PUBLISHING and first.delivery.attempts == 1
    assert delivery.claim(item.pk) is None
    lapse(item)
    second = delivery.claim(item.pk)
    assert second is not None and second.token != first.token and second.lapsed


@pytest.mark.django_db
def test_of_two_workers_that_read_the_delivery_together_only_one_claims_it(connected, make_delivery, monkeypatch):
    item = make_delivery()
    real_token = delivery.secrets.token_hex
    rival = {}

    def read_then_lose_the_race(nbytes):
        if "claim" not in rival:  # between this worker's read and its update, another worker claims
            rival["claim"] = None
            rival["claim"] = delivery.claim(item.pk)
        return real_token(nbytes)

    monkeypatch.setattr(delivery.secrets, "token_hex", read_then_lose_the_race)
    assert delivery.claim(item.pk) is None
    assert rival["claim"] is not None and Delivery.objects.get(pk=item.pk).attempts == 1


@pytest.mark.django_db
def test_a_second_task_for_a_delivery_being_published_does_nothing(connected, make_delivery, install_publisher):
    item = make_delivery()
    publisher = install_publisher(FakePublisher(idempotent=True))
    delivery.claim(item.pk)  # another worker holds it
    assert delivery.run(item.pk) == "skipped"
    assert publisher.platform.calls == []


@pytest.mark.django_db(transaction=True)
def test_publishing_records_remote_id_and_url_with_no_transaction_open(connected, make_delivery, install_publisher):
    item = make_delivery()
    publisher = install_publisher(FakePublisher(idempotent=True))
    assert delivery.run(item.pk) == Status.PUBLISHED
    item.refresh_from_db()
    key = publisher.platform.calls[0]["handle"]["key"]
    assert item.remote_id == key and item.url == f"https://fake.example/{key}" and item.published_at
    assert item.lease_token == "" and item.lease_until is None and item.error == ""
    assert publisher.platform.calls[0]["in_transaction"] is False  # nothing locked across the call
    assert delivery.run(item.pk) == "skipped" and len(publisher.platform.calls) == 1


@pytest.mark.django_db
def test_the_handle_is_stored_before_the_platform_is_called(connected, make_delivery, install_publisher):
    item = make_delivery()
    seen = {}

    def look(platform, handle):
        seen["stored"] = Delivery.objects.get(pk=item.pk).handle
        return "ok"

    publisher = install_publisher(FakePublisher(idempotent=True, steps=[look]))
    delivery.run(item.pk)
    assert seen["stored"] == publisher.platform.calls[0]["handle"] and seen["stored"]["key"]


@pytest.mark.django_db
def test_a_worker_that_died_after_the_platform_accepted_is_retried_with_the_same_handle(
    connected, make_delivery, install_publisher
):
    """The worker is killed after the platform took the post and before the result was saved."""
    item = make_delivery()

    def accept_then_die(platform, handle):
        platform.posts[handle.data["key"]] = "Hello from Hayon"
        return SystemExit(137)

    publisher = install_publisher(FakePublisher(idempotent=True, steps=[accept_then_die]))
    with pytest.raises(SystemExit):
        delivery.run(item.pk)
    item.refresh_from_db()
    assert item.status == Status.PUBLISHING  # nothing recorded: the worker is gone
    assert delivery.run(item.pk) == "skipped"  # the lease still holds

    lapse(item)
    assert delivery.stalled() == [item.pk]  # the worker's recovery queues it again
    assert delivery.run(item.pk) == Status.PUBLISHED
    first, second = publisher.platform.calls
    assert second["handle"] == first["handle"] and first["fresh"] and not second["fresh"]
    assert len(publisher.platform.posts) == 1  # exactly one post at the platform
    item.refresh_from_db()
    assert item.attempts == 2 and item.remote_id == first["handle"]["key"]


@pytest.mark.django_db
def test_transient_failures_are_retried_with_growing_back_off_then_given_up(
    connected, make_delivery, install_publisher, settings
):
    settings.HAYON_PUBLISH_MAX_ATTEMPTS = 3
    item = make_delivery()
    publisher = install_publisher(FakePublisher(idempotent=True, steps=[unavailable()] * 5))
    waits = []
    for attempt in (1, 2):
        before = timezone.now()
        assert delivery.run(item.pk) == Status.QUEUED
        item.refresh_from_db()
        waits.append((item.next_attempt_at - before).total_seconds())
        assert "Retrying in" in item.error and "did not answer in time" in item.error
        assert delivery.run(item.pk) == "skipped"  # not before its time
        due_now(item)
    assert 25 <= waits[0] <= 35 and 55 <= waits[1] <= 65  # 30 s, then 60 s
    assert delivery.run(item.pk) == Status.FAILED
    item.refresh_from_db()
    assert item.attempts == 3 and "gave up after 3 attempts" in item.error
    assert len(publisher.platform.calls) == 3
    assert delivery.run(item.pk) == "skipped"


@pytest.mark.django_db
def test_a_retry_is_queued_as_a_task_for_its_time(connected, make_delivery, install_publisher,
                                                  django_capture_on_commit_callbacks):
    item = make_delivery()
    install_publisher(FakePublisher(idempotent=True, steps=[unavailable()]))
    with django_capture_on_commit_callbacks(execute=True):
        delivery.run(item.pk)
    item.refresh_from_db()
    [(args, run_after)] = queued_tasks()
    assert args == [item.pk] and run_after == item.next_attempt_at


@pytest.mark.django_db
def test_retry_after_from_the_platform_is_honoured(connected, make_delivery, install_publisher):
    item = make_delivery()
    install_publisher(FakePublisher(idempotent=False, steps=[NotAccepted("Too many requests.", kind=Kind.RATE_LIMITED,
                                                                       retry_after=600)]))
    before = timezone.now()
    assert delivery.run(item.pk) == Status.QUEUED
    item.refresh_from_db()
    assert 590 <= (item.next_attempt_at - before).total_seconds() <= 610


@pytest.mark.django_db
def test_unknown_outcome_without_idempotency_needs_attention_and_is_never_retried(
    connected, make_delivery, install_publisher
):
    item = make_delivery()
    publisher = install_publisher(FakePublisher(idempotent=False, steps=[unavailable()]))
    assert delivery.run(item.pk) == Status.NEEDS_ATTENTION
    item.refresh_from_db()
    assert "may have published the post" in item.error and "check Fakeblr" in item.error
    assert queued_tasks() == [] and delivery.stalled() == []
    due_now(item)
    assert delivery.run(item.pk) == "skipped"
    assert len(publisher.platform.calls) == 1


@pytest.mark.django_db
def test_a_failure_known_to_be_before_acceptance_is_retried_without_idempotency(
    connected, make_delivery, install_publisher
):
    item = make_delivery()
    publisher = install_publisher(FakePublisher(idempotent=False, steps=[NotAccepted("Fakeblr refused the connection.")]))
    assert delivery.run(item.pk) == Status.QUEUED
    due_now(item)
    assert delivery.run(item.pk) == Status.PUBLISHED
    assert len(publisher.platform.calls) == 2 and len(publisher.platform.posts) == 1


@pytest.mark.django_db
def test_a_worker_that_died_mid_call_without_idempotency_leaves_it_for_the_user(
    connected, make_delivery, install_publisher
):
    item = make_delivery()
    publisher = install_publisher(FakePublisher(idempotent=False, steps=[SystemExit(137)]))
    with pytest.raises(SystemExit):
        delivery.run(item.pk)
    lapse(item)
    assert delivery.run(item.pk) == Status.NEEDS_ATTENTION
    assert len(publisher.platform.calls) == 1  # not called again
    item.refresh_from_db()
    assert "Hayon stopped while publishing" in item.error


@pytest.mark.django_db
def test_an_auth_failure_fails_and_shows_on_the_connection(user, connected, make_delivery, install_publisher):
    item = make_delivery()
    install_publisher(FakePublisher(idempotent=True, steps=[PlatformError(Kind.REVOKED, "Fakeblr no longer accepts Hayon's access.", status=401)]))
    assert delivery.run(item.pk) == Status.FAILED
    item.refresh_from_db()
    assert item.error_kind == "reconnect" and "Reconnect Fakeblr" in item.error
    health = account_for(user).document("tumblr")["health"]
    assert health["status"] == "revoked" and health["needsReconnection"] is True


@pytest.mark.django_db
def test_a_connection_needing_reconnection_is_not_called(user, connected, make_delivery, install_publisher):
    account = account_for(user)
    doc = account.document("tumblr")
    doc["health"] = {**doc["health"], "status": "expired", "needsReconnection": True, "reason": "The token expired."}
    account.set_document("tumblr", doc)
    account.save()
    item = make_delivery()
    publisher = install_publisher(FakePublisher(idempotent=True))
    assert delivery.run(item.pk) == Status.FAILED
    item.refresh_from_db()
    assert "needs reconnection: The token expired." in item.error and item.error_kind == "reconnect"
    assert publisher.platform.calls == []


@pytest.mark.django_db
def test_content_refused_by_the_platform_fails_without_retry(connected, make_delivery, install_publisher):
    item = make_delivery()
    publisher = install_publisher(FakePublisher(idempotent=True, steps=[ContentRejected("Fakeblr refused the post: image too big")]))
    assert delivery.run(item.pk) == Status.FAILED
    item.refresh_from_db()
    assert item.error == "Fakeblr refused the post: image too big"
    due_now(item)
    assert delivery.run(item.pk) == "skipped" and len(publisher.platform.calls) == 1


@pytest.mark.django_db
def test_a_worker_whose_lease_was_taken_over_does_not_overwrite_the_outcome(connected, make_delivery, install_publisher):
    item = make_delivery()

    def slow_then_fail(platform, handle):
        lapse(item)  # this worker took too long: another one takes the delivery over and publishes it
        install_publisher(FakePublisher(idempotent=True))
        assert delivery.run(item.pk) == Status.PUBLISHED
        return unavailable()

    install_publisher(FakePublisher(idempotent=True, steps=[slow_then_fail]))
    assert delivery.run(item.pk) == "skipped"
    item.refresh_from_db()
    assert item.status == Status.PUBLISHED and item.error == ""


@pytest.mark.django_db
def test_a_delivery_that_keeps_killing_its_worker_is_given_up(connected, make_delivery, install_publisher, settings):
    settings.HAYON_PUBLISH_MAX_ATTEMPTS = 2
    item = make_delivery()
    install_publisher(FakePublisher(idempotent=True, steps=[SystemExit(1), SystemExit(1)]))
    for _ in range(2):
        with pytest.raises(SystemExit):
            delivery.run(item.pk)
        lapse(item)
    assert delivery.run(item.pk) == Status.FAILED


@pytest.mark.django_db
def test_stalled_queued_deliveries_get_a_task_again(connected, make_delivery, django_capture_on_commit_callbacks):
    fresh, lost = make_delivery(), make_delivery()
    old = timezone.now() - timedelta(minutes=30)
    Delivery.objects.filter(pk=lost.pk).update(next_attempt_at=old, enqueued_at=old)
    Delivery.objects.filter(pk=fresh.pk).update(enqueued_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.requeue_stalled() == 1
    assert [args for args, _ in queued_tasks()] == [[lost.pk]]
    assert delivery.stalled() == []  # just given a task: not stalled again at once


@pytest.mark.django_db
def test_retry_requeues_only_failed_deliveries(user, connected, make_delivery, install_publisher):
    item = make_delivery()
    done = Delivery.objects.create(post=item.post, platform="bluesky", status=Status.PUBLISHED)
    Delivery.objects.filter(pk=item.pk).update(status=Status.FAILED, attempts=5, error="boom")
    assert delivery.retry_failed(post=item.post) == [item.pk]
    item.refresh_from_db(), done.refresh_from_db()
    assert item.status == Status.QUEUED and item.attempts == 0 and done.status == Status.PUBLISHED
    publisher = install_publisher(FakePublisher(idempotent=True))
    assert delivery.run(item.pk) == Status.PUBLISHED and len(publisher.platform.calls) == 1


class RenewingPublisher(FakePublisher):
    def credential_due(self, *, auth):
        return auth.get("accessToken") != "renewed"


@pytest.mark.django_db
def test_a_credential_due_for_renewal_is_renewed_through_platforms_first(
    user, connected, make_delivery, install_publisher, monkeypatch
):
    renewals = []

    def renew(*, user, provider):
        renewals.append(provider.name)
        return seed_connection(user, "tumblr", handle="fakeblr", auth={"accessToken": "renewed"}).document("tumblr")

    monkeypatch.setattr("platforms.services.refresh_connection", renew)
    publisher = install_publisher(RenewingPublisher(idempotent=True))
    assert delivery.run(make_delivery().pk) == Status.PUBLISHED
    assert renewals == ["tumblr"] and publisher.platform.calls[0]["auth"] == {"accessToken": "renewed"}


@pytest.mark.django_db
def test_a_renewal_that_fails_fails_the_delivery_with_the_reason(connected, make_delivery, install_publisher, monkeypatch):
    def renew(*, user, provider):
        raise PlatformError(Kind.EXPIRED, "The session has ended.")

    monkeypatch.setattr("platforms.services.refresh_connection", renew)
    publisher = install_publisher(RenewingPublisher(idempotent=True))
    item = make_delivery()
    assert delivery.run(item.pk) == Status.FAILED
    item.refresh_from_db()
    assert item.error == "Fakeblr: The session has ended. Reconnect Fakeblr under Settings, then retry." and item.error_kind == "reconnect"
    assert publisher.platform.calls == []
