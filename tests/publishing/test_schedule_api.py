"""The scheduling API (issue 15): scheduledAt on POST, PATCH, DELETE, publish-now, from/to listing."""
import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult, get_date_max

from accounts.models import ApiToken
from platforms import documents
from platforms.services import account_for
from publishing import delivery
from publishing.interface import Rules, TextLimit
from publishing.models import Delivery, Post, Status

from ..conftest import seed_connection
from .conftest import FakePublisher


def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class QuotaPublisher(FakePublisher):
    """The fake platform with a quota of 2 posts per 24 hours (as Threads has 250)."""

    publish_rules = Rules(text_limits=(TextLimit("graphemes", 20),), max_images=1, daily_posts=2)


@pytest.fixture
def fake(user, install_publisher):
    seed_connection(user, "tumblr", handle="fakeblr")
    return install_publisher(FakePublisher(idempotent=True))


@pytest.fixture
def send(api, django_capture_on_commit_callbacks):
    """A JSON request as a script sends it, with tasks queued as they are once the request commits."""

    def request(method: str, path: str, body=None, *, client=None):
        with django_capture_on_commit_callbacks(execute=True):
            return getattr(client or api, method)(path, data=json.dumps(body or {}), content_type="application/json")

    return request


@pytest.fixture
def other_api(other_user):
    return Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user=other_user, name='other')[1]}")


def in_an_hour():
    return (timezone.now() + timedelta(hours=1)).replace(microsecond=0)


def run_after(result):
    """The task's run time; None for "as soon as possible" (the database backend stores a far date)."""
    return None if result.run_after == get_date_max() else result.run_after


def tasks_for(delivery_pk):
    return [(r.args_kwargs, run_after(r)) for r in DBTaskResult.objects.order_by("enqueued_at")
            if r.args_kwargs["args"][0] == delivery_pk]


# -- POST --------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_scheduled_post_is_stored_with_its_time_and_queued_to_run_then(fake, send):
    when = in_an_hour()
    local = when.astimezone(timezone.get_fixed_timezone(13 * 60))  # an offset far from UTC: the same instant
    response = send("post", "/api/posts", {"text": "Later", "targets": ["tumblr"], "scheduledAt": local.isoformat()})
    assert response.status_code == 202, response.content
    data = response.json()["data"]
    assert data["scheduledAt"] == iso(when) and data["version"] == 1 and data["warnings"] == []
    assert data["targets"][0]["status"] == "scheduled" and data["targets"][0]["lateBySeconds"] is None
    item = Delivery.objects.get()
    assert tasks_for(item.pk) == [({"args": [item.pk], "kwargs": {"version": 1}}, when)]
    assert "Scheduled for" in response.json()["message"]


@pytest.mark.django_db
def test_a_post_without_scheduled_at_goes_now_as_before(fake, send):
    data = send("post", "/api/posts", {"text": "Now", "targets": ["tumblr"]}).json()["data"]
    assert data["scheduledAt"] is None and data["version"] == 1
    assert data["targets"][0]["status"] == "queued" and "lateBySeconds" not in data["targets"][0]
    assert [run_after(r) for r in DBTaskResult.objects.all()] == [None]


@pytest.mark.django_db
@pytest.mark.parametrize("value, why", [
    (lambda: (timezone.now() + timedelta(hours=1)).replace(tzinfo=None).isoformat(), "no offset"),
    (lambda: iso(timezone.now() - timedelta(minutes=5)), "in the past"),
    (lambda: iso(timezone.now() + timedelta(days=400)), "more than a year"),
    (lambda: "next tuesday", "ISO 8601"),
])
def test_a_bad_scheduled_time_is_refused_and_nothing_is_stored(fake, send, value, why):
    response = send("post", "/api/posts", {"text": "Later", "targets": ["tumblr"], "scheduledAt": value()})
    assert response.status_code == 422 and why in response.json()["message"]
    assert not Post.objects.exists() and not DBTaskResult.objects.exists()


@pytest.mark.django_db
def test_scheduling_to_an_account_that_needs_reconnection_is_warned_not_refused(user, fake, send):
    account = account_for(user)
    doc = account.document("tumblr")
    doc["health"] = documents.health("error", reason="The token was revoked.", needs_reconnection=True)
    account.set_document("tumblr", doc)
    account.save()
    response = send("post", "/api/posts", {"text": "Later", "targets": ["tumblr"], "scheduledAt": iso(in_an_hour())})
    assert response.status_code == 202
    warnings = response.json()["data"]["warnings"]
    assert len(warnings) == 1 and "needs reconnection" in warnings[0] and "needs reconnection" in response.json()["message"]
    too_long = send("post", "/api/posts", {"text": "x" * 30, "targets": ["tumblr"], "scheduledAt": iso(in_an_hour())})
    assert too_long.status_code == 422  # its content is still checked
    assert send("post", "/api/posts", {"text": "Now", "targets": ["tumblr"]}).status_code == 422  # now: refused


@pytest.mark.django_db
def test_a_schedule_over_the_platforms_daily_quota_is_warned_when_made(user, install_publisher, send):
    seed_connection(user, "tumblr", handle="fakeblr")
    install_publisher(QuotaPublisher(idempotent=True))
    start = in_an_hour()

    def schedule(at):
        response = send("post", "/api/posts", {"text": "Hi", "targets": ["tumblr"], "scheduledAt": iso(at)})
        assert response.status_code == 202
        return response.json()["data"]["warnings"]

    assert schedule(start) == [] and schedule(start + timedelta(hours=20)) == []
    third = schedule(start + timedelta(hours=10))
    assert len(third) == 1 and "2 posts in 24 hours" in third[0] and "3 of your posts" in third[0]
    assert schedule(start + timedelta(days=3)) == []  # far from the others


# -- PATCH --------------------------------------------------------------------------------------------
@pytest.fixture
def scheduled(fake, send):
    def make(text="Later", targets=("tumblr",), when=None):
        body = {"text": text, "targets": list(targets), "scheduledAt": iso(when or in_an_hour())}
        response = send("post", "/api/posts", body)
        assert response.status_code == 202, response.content
        return response.json()["data"]["id"]

    return make


@pytest.mark.django_db
def test_editing_a_scheduled_post_bumps_its_version_and_queues_it_again(scheduled, send):
    post_id = scheduled()
    later = in_an_hour() + timedelta(minutes=30)
    response = send("patch", f"/api/posts/{post_id}", {"text": "Changed", "scheduledAt": iso(later)})
    assert response.status_code == 200, response.content
    data = response.json()["data"]
    assert (data["text"], data["version"], data["scheduledAt"]) == ("Changed", 2, iso(later))
    assert data["targets"][0]["status"] == "scheduled"
    item = Delivery.objects.get()
    assert tasks_for(item.pk)[-1] == ({"args": [item.pk], "kwargs": {"version": 2}}, later)
    assert Delivery.objects.get().next_attempt_at == later


@pytest.mark.django_db
def test_an_edit_is_validated_as_a_new_post_and_a_refused_one_changes_nothing(scheduled, send):
    post_id = scheduled()
    too_long = send("patch", f"/api/posts/{post_id}", {"text": "x" * 30})
    assert too_long.status_code == 422 and too_long.json()["data"]["problems"]
    past = send("patch", f"/api/posts/{post_id}", {"scheduledAt": iso(timezone.now() - timedelta(hours=1))})
    assert past.status_code == 422
    bad = send("patch", f"/api/posts/{post_id}", {"targets": []})
    assert bad.status_code == 400
    post = Post.objects.get()
    assert (post.text, post.version) == ("Later", 1)


@pytest.mark.django_db
def test_an_edit_after_delivery_started_is_409_and_changes_nothing(scheduled, send):
    post_id = scheduled()
    Delivery.objects.update(next_attempt_at=timezone.now())  # its time has come
    assert delivery.claim(Delivery.objects.get().pk) is not None  # a worker took it
    response = send("patch", f"/api/posts/{post_id}", {"text": "Too late"})
    assert response.status_code == 409 and "started" in response.json()["message"]
    assert Post.objects.get().text == "Later" and Post.objects.get().version == 1


@pytest.mark.django_db
def test_a_post_sent_at_once_cannot_be_edited(fake, send):
    post_id = send("post", "/api/posts", {"text": "Now", "targets": ["tumblr"]}).json()["data"]["id"]
    assert send("patch", f"/api/posts/{post_id}", {"text": "Changed"}).status_code == 409


# -- DELETE and publish-now --------------------------------------------------------------------------
@pytest.mark.django_db
def test_cancelling_a_scheduled_post_cancels_every_delivery(scheduled, send):
    post_id = scheduled()
    response = send("delete", f"/api/posts/{post_id}")
    assert response.status_code == 200
    assert [t["status"] for t in response.json()["data"]["targets"]] == ["cancelled"]
    again = send("delete", f"/api/posts/{post_id}")
    assert again.status_code == 409
    assert send("patch", f"/api/posts/{post_id}", {"text": "Back"}).json()["message"] == "This post was cancelled."


@pytest.mark.django_db
def test_cancelling_after_one_account_started_cancels_the_rest_and_says_which(user, install_publisher, send):
    seed_connection(user, "tumblr", handle="fakeblr")
    seed_connection(user, "mastodon", handle="alice")
    first, second = FakePublisher(idempotent=True), FakePublisher(idempotent=True)
    second.name, second.label = "mastodon", "Fakedon"
    install_publisher(first)
    install_publisher(second)
    body = {"text": "Later", "targets": ["tumblr", "mastodon"], "scheduledAt": iso(in_an_hour())}
    post_id = send("post", "/api/posts", body).json()["data"]["id"]
    Delivery.objects.filter(platform="tumblr").update(status=Status.PUBLISHED)
    response = send("delete", f"/api/posts/{post_id}")
    assert response.status_code == 200 and "had already started" in response.json()["message"]
    assert {t["platform"]: t["status"] for t in response.json()["data"]["targets"]} == {
        "tumblr": "published", "mastodon": "cancelled"}


@pytest.mark.django_db
def test_publish_now_requeues_only_missed_deliveries(scheduled, send):
    post_id = scheduled()
    assert send("post", f"/api/posts/{post_id}/publish-now").status_code == 409  # nothing missed
    Delivery.objects.update(status=Status.MISSED, error="Not sent: late.")
    response = send("post", f"/api/posts/{post_id}/publish-now")
    assert response.status_code == 200 and response.json()["data"]["targets"][0]["status"] == "queued"
    item = Delivery.objects.get()
    assert tasks_for(item.pk)[-1] == ({"args": [item.pk], "kwargs": {}}, None)


@pytest.mark.django_db
def test_a_missed_post_can_be_rescheduled(scheduled, send):
    post_id = scheduled()
    Delivery.objects.update(status=Status.MISSED, error="Not sent: late.")
    response = send("patch", f"/api/posts/{post_id}", {"scheduledAt": iso(in_an_hour() + timedelta(hours=1))})
    assert response.status_code == 200
    assert response.json()["data"]["targets"][0] == {**response.json()["data"]["targets"][0], "status": "scheduled",
                                                     "error": None}


# -- listing ------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_listing_by_range_uses_the_scheduled_time_or_the_creation_time(scheduled, send, api):
    now = timezone.now()
    in_two_days = scheduled(when=now + timedelta(days=2))
    tomorrow = scheduled(when=now + timedelta(days=1))
    at_once = send("post", "/api/posts", {"text": "Now", "targets": ["tumblr"]}).json()["data"]["id"]

    def listed(start, end):
        response = api.get("/api/posts", {"from": iso(start), "to": iso(end)})
        assert response.status_code == 200, response.content
        return [p["id"] for p in response.json()["data"]]

    assert listed(now - timedelta(hours=1), now + timedelta(days=3)) == [at_once, tomorrow, in_two_days]
    assert listed(now + timedelta(hours=1), now + timedelta(days=1, hours=1)) == [tomorrow]
    assert listed(now + timedelta(days=1, hours=1), now + timedelta(days=2)) == []  # `to` is excluded
    assert api.get("/api/posts", {"from": "yesterday", "to": iso(now)}).status_code == 400
    assert api.get("/api/posts", {"from": iso(now), "to": iso(now)}).status_code == 400


# -- two users ----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_another_users_post_cannot_be_edited_cancelled_published_or_listed(scheduled, send, other_api):
    post_id = scheduled()
    assert send("patch", f"/api/posts/{post_id}", {"text": "Mine now"}, client=other_api).status_code == 404
    assert send("delete", f"/api/posts/{post_id}", client=other_api).status_code == 404
    Delivery.objects.update(status=Status.MISSED)
    assert send("post", f"/api/posts/{post_id}/publish-now", client=other_api).status_code == 404
    now = timezone.now()
    assert other_api.get("/api/posts", {"from": iso(now - timedelta(days=1)), "to": iso(now + timedelta(days=1))}
                         ).json()["data"] == []
    post = Post.objects.get()
    assert (post.text, post.version) == ("Later", 1) and Delivery.objects.get().status == Status.MISSED
