"""Scheduling (issue 15): local times across DST, the outage rule, versions, exactly once.

The clock is frozen by patching django.utils.timezone.now (what Hayon, django-tasks and its
database worker all read), so "the scheduled time comes" is a step in the test, not a sleep.
"""
from datetime import date, datetime, time, timedelta, timezone as dt_timezone

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from accounts.models import User
from publishing import delivery, scheduling, services, tasks
from publishing.models import Delivery, Post, Status

from ..conftest import seed_connection
from .conftest import FakePublisher

UTC = dt_timezone.utc


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# -- local time to UTC across DST (pure) ---------------------------------------------------------------
@pytest.mark.parametrize("zone, day, at, expected", [
    ("Europe/Berlin", date(2026, 3, 28), time(9, 0), utc(2026, 3, 28, 8, 0)),     # CET, +01:00
    ("Europe/Berlin", date(2026, 3, 29), time(3, 30), utc(2026, 3, 29, 1, 30)),   # CEST right after the jump
    ("Europe/Berlin", date(2026, 3, 29), time(9, 0), utc(2026, 3, 29, 7, 0)),     # CEST, +02:00
    ("America/New_York", date(2026, 3, 7), time(9, 0), utc(2026, 3, 7, 14, 0)),   # EST, -05:00
    ("America/New_York", date(2026, 3, 8), time(9, 0), utc(2026, 3, 8, 13, 0)),   # EDT, -04:00
    ("Pacific/Auckland", date(2026, 4, 4), time(9, 0), utc(2026, 4, 3, 20, 0)),   # NZDT, +13:00 (their summer)
    ("Pacific/Auckland", date(2026, 4, 6), time(9, 0), utc(2026, 4, 5, 21, 0)),   # NZST, +12:00
])
def test_a_local_time_becomes_the_utc_instant_of_that_wall_clock(zone, day, at, expected):
    assert scheduling.local_to_utc(day, at, zone) == expected


@pytest.mark.parametrize("zone, day", [
    ("Europe/Berlin", date(2026, 3, 29)),       # 02:00 -> 03:00
    ("America/New_York", date(2026, 3, 8)),     # 02:00 -> 03:00
    ("Pacific/Auckland", date(2026, 9, 27)),    # 02:00 -> 03:00, in the northern autumn
])
def test_a_time_the_spring_forward_skips_is_refused_with_the_reason(zone, day):
    with pytest.raises(scheduling.NonexistentTime) as caught:
        scheduling.local_to_utc(day, time(2, 30), zone)
    assert "does not exist" in str(caught.value) and zone in str(caught.value)


@pytest.mark.parametrize("zone, day, at, earlier, later", [
    ("Europe/Berlin", date(2026, 10, 25), time(2, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)),
    ("America/New_York", date(2026, 11, 1), time(1, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)),
    ("Pacific/Auckland", date(2026, 4, 5), time(2, 30), utc(2026, 4, 4, 13, 30), utc(2026, 4, 4, 14, 30)),
])
def test_a_time_the_fall_back_repeats_asks_which_and_takes_the_chosen_one(zone, day, at, earlier, later):
    with pytest.raises(scheduling.AmbiguousTime) as caught:
        scheduling.local_to_utc(day, at, zone)
    assert (caught.value.earlier, caught.value.later) == (earlier, later)
    assert "happens twice" in str(caught.value)
    assert scheduling.local_to_utc(day, at, zone, fold=0) == earlier
    assert scheduling.local_to_utc(day, at, zone, fold=1) == later


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../../etc/passwd", "/etc/localtime", "x" * 100])
def test_an_unknown_time_zone_is_refused(name):
    with pytest.raises(scheduling.ScheduleError):
        scheduling.local_to_utc(date(2026, 1, 1), time(9), name)


@pytest.mark.django_db
def test_the_profile_time_zone_defaults_to_utc_and_must_be_an_iana_name():
    user = User.objects.create_user("tz", "tz@example.com", "a long enough password")
    assert user.time_zone == "UTC"
    user.time_zone = "Pacific/Auckland"
    user.full_clean()
    user.time_zone = "Europe/Atlantis"
    with pytest.raises(ValidationError) as caught:
        user.full_clean()
    assert "time_zone" in caught.value.message_dict


@pytest.mark.parametrize("value, why", [
    ("2026-03-29T09:00:00", "no offset"),
    ("tomorrow at nine", "ISO 8601"),
    (1774771200, "ISO 8601"),
    ("2026-03-28T19:58:00Z", "in the past"),    # two minutes before the clock
    ("2027-04-01T09:00:00Z", "more than a year"),
])
def test_a_scheduled_time_must_carry_an_offset_and_lie_ahead_within_a_year(value, why):
    with pytest.raises(scheduling.ScheduleError) as caught:
        scheduling.parse_scheduled_at(value, now=utc(2026, 3, 28, 20, 0))
    assert why in str(caught.value)


def test_a_scheduled_time_with_an_offset_is_stored_as_utc_and_a_few_seconds_late_is_fine():
    now = utc(2026, 3, 28, 20, 0)
    assert scheduling.parse_scheduled_at("2026-03-29T09:00:00+02:00", now=now) == utc(2026, 3, 29, 7, 0)
    assert scheduling.parse_scheduled_at("2026-03-28T19:59:30Z", now=now) == utc(2026, 3, 28, 19, 59, 30)


def test_the_late_grace_decides_both_sides_and_reads_minutes_or_a_timedelta(settings):
    at = utc(2026, 1, 1, 9)
    grace = timedelta(minutes=60)
    assert scheduling.lateness(scheduled_at=at, now=at + timedelta(minutes=59), grace=grace) == scheduling.Lateness(False, 3540)
    assert scheduling.lateness(scheduled_at=at, now=at + timedelta(minutes=61), grace=grace).missed
    assert scheduling.lateness(scheduled_at=at, now=at - timedelta(seconds=2), grace=grace) == scheduling.Lateness(False, 0)
    settings.HAYON_LATE_GRACE = 15
    assert scheduling.late_grace() == timedelta(minutes=15)
    settings.HAYON_LATE_GRACE = timedelta(seconds=90)
    assert scheduling.late_grace() == timedelta(seconds=90)


def test_the_busiest_window_counts_posts_in_any_24_hours_around_the_time():
    at = utc(2026, 1, 2, 12)
    before = [at - timedelta(hours=23)] * 2
    after = [at + timedelta(hours=23)] * 2
    assert scheduling.busiest_window(before + after, at=at) == 3  # never both sides in one 24 hours
    assert scheduling.busiest_window([at - timedelta(hours=25)], at=at) == 1


# -- the worker at the scheduled time ------------------------------------------------------------------
@pytest.fixture
def clock(monkeypatch):
    """A frozen clock for Hayon and the task queue; `clock.set(moment)` moves it."""

    class Clock:
        now = utc(2026, 3, 28, 20, 0)

        def set(self, moment):
            self.now = moment

    frozen = Clock()
    monkeypatch.setattr(timezone, "now", lambda: frozen.now)
    return frozen


@pytest.fixture
def fake(user, install_publisher):
    seed_connection(user, "tumblr", handle="fakeblr")
    return install_publisher(FakePublisher(idempotent=True))


def schedule(user, when, text="Good morning") -> Post:
    created = services.create_post(user=user, text=text, targets=["tumblr"], media=[], overrides={}, scheduled_at=when)
    return created.post


@pytest.fixture
def scheduled(user, fake, django_capture_on_commit_callbacks):
    def make(when, text="Good morning"):
        with django_capture_on_commit_callbacks(execute=True):
            return schedule(user, when, text)

    return make


@pytest.mark.django_db(transaction=True)
def test_a_post_scheduled_in_berlin_after_the_spring_forward_goes_out_at_that_local_time(
        user, clock, scheduled, fake, run_worker):
    clock.set(utc(2026, 3, 28, 20, 0))  # Saturday evening, CET
    when = scheduling.local_to_utc(date(2026, 3, 29), time(9, 0), "Europe/Berlin")  # Sunday, CEST
    post = scheduled(when)
    item = post.deliveries.get()
    assert item.status == Status.SCHEDULED
    assert [r.run_after for r in DBTaskResult.objects.all()] == [utc(2026, 3, 29, 7, 0)]

    clock.set(utc(2026, 3, 29, 6, 59))  # 08:59 in Berlin: an hour after 09:00 CET would have been
    run_worker()
    assert fake.platform.calls == [] and Delivery.objects.get().status == Status.SCHEDULED

    clock.set(utc(2026, 3, 29, 7, 0, 5))
    run_worker()
    assert [c["text"] for c in fake.platform.calls] == ["Good morning"]
    assert Delivery.objects.get().status == Status.PUBLISHED and Delivery.objects.get().late_seconds == 5


@pytest.mark.django_db(transaction=True)
def test_a_post_scheduled_in_new_york_on_the_fall_back_night_goes_out_at_the_chosen_one_thirty(
        user, clock, scheduled, fake, run_worker):
    clock.set(utc(2026, 10, 31, 12, 0))
    when = scheduling.local_to_utc(date(2026, 11, 1), time(1, 30), "America/New_York", fold=1)  # the EST one
    scheduled(when)
    clock.set(utc(2026, 11, 1, 5, 31))  # the first 01:30 (EDT) has passed: not yet
    run_worker()
    assert fake.platform.calls == []
    clock.set(utc(2026, 11, 1, 6, 30))
    run_worker()
    assert len(fake.platform.calls) == 1


@pytest.mark.django_db(transaction=True)
def test_after_an_outage_within_the_grace_the_post_goes_out_and_says_how_late(
        user, clock, scheduled, fake, run_worker, settings):
    settings.HAYON_LATE_GRACE = 60
    at = utc(2026, 3, 28, 21, 0)
    scheduled(at)
    clock.set(at + timedelta(minutes=59))
    run_worker()
    item = Delivery.objects.get()
    assert item.status == Status.PUBLISHED and item.late_seconds == 59 * 60
    assert len(fake.platform.calls) == 1


@pytest.mark.django_db(transaction=True)
def test_after_an_outage_beyond_the_grace_the_post_is_missed_and_never_sent_by_itself(
        user, clock, scheduled, fake, run_worker, settings, django_capture_on_commit_callbacks):
    settings.HAYON_LATE_GRACE = 60
    at = utc(2026, 3, 28, 21, 0)
    post = scheduled(at)
    clock.set(at + timedelta(minutes=61))
    run_worker()
    item = Delivery.objects.get()
    assert item.status == Status.MISSED and fake.platform.calls == []
    assert "61 minutes late" in item.error and "Publish it now" in item.error

    clock.set(at + timedelta(hours=3))  # the stalled-task sweep finds it again: still missed, still not sent
    with django_capture_on_commit_callbacks(execute=True):
        tasks.requeue_stalled()
    run_worker()
    assert Delivery.objects.get().status == Status.MISSED and fake.platform.calls == []

    with django_capture_on_commit_callbacks(execute=True):
        assert services.publish_missed_now(post=post) == [item.pk]
    run_worker()
    assert Delivery.objects.get().status == Status.PUBLISHED and len(fake.platform.calls) == 1


@pytest.mark.django_db(transaction=True)
def test_a_scheduled_delivery_whose_task_was_lost_is_found_by_the_stalled_sweep(user, clock, fake, run_worker):
    at = utc(2026, 3, 28, 21, 0)
    schedule(user, at)
    DBTaskResult.objects.all().delete()  # the task is lost (the enqueue after the commit never happened)
    clock.set(at + timedelta(minutes=15))
    with transaction.atomic():
        assert tasks.requeue_stalled() == 1
    run_worker()
    assert Delivery.objects.get().status == Status.PUBLISHED and len(fake.platform.calls) == 1


@pytest.mark.django_db(transaction=True)
def test_an_edit_between_enqueue_and_run_never_publishes_the_old_text(
        user, clock, scheduled, fake, run_worker, django_capture_on_commit_callbacks):
    at = utc(2026, 3, 28, 21, 0)
    post = scheduled(at, text="Old text")
    with django_capture_on_commit_callbacks(execute=True):
        services.update_post(post=post, text="New text")
    assert DBTaskResult.objects.count() == 2  # the old task is still queued, for version 1
    clock.set(at)
    run_worker()
    assert [c["text"] for c in fake.platform.calls] == ["New text"]
    assert sorted(r.return_value for r in DBTaskResult.objects.all()) == ["published", "skipped"]
    assert Post.objects.get().version == 2


@pytest.mark.django_db
def test_the_old_task_of_an_edited_post_does_nothing_even_when_it_runs_last(user, clock, scheduled, fake):
    at = utc(2026, 3, 28, 21, 0)
    post = scheduled(at, text="Old text")
    item = post.deliveries.get()
    services.update_post(post=post, text="New text")
    clock.set(at)
    assert delivery.run(item.pk, version=1) == "skipped"
    assert fake.platform.calls == [] and Delivery.objects.get().status == Status.SCHEDULED
    assert delivery.run(item.pk, version=2) == Status.PUBLISHED
    assert [c["text"] for c in fake.platform.calls] == ["New text"]


@pytest.mark.django_db(transaction=True)
def test_moving_a_post_later_leaves_the_old_time_empty(
        user, clock, scheduled, fake, run_worker, django_capture_on_commit_callbacks):
    at = utc(2026, 3, 28, 21, 0)
    post = scheduled(at)
    with django_capture_on_commit_callbacks(execute=True):
        services.update_post(post=post, scheduled_at=at + timedelta(minutes=1))
    clock.set(at + timedelta(seconds=30))
    run_worker()
    assert fake.platform.calls == []
    clock.set(at + timedelta(minutes=1))
    run_worker()
    assert len(fake.platform.calls) == 1


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_post_is_never_published(user, clock, scheduled, fake, run_worker):
    at = utc(2026, 3, 28, 21, 0)
    post = scheduled(at)
    assert services.cancel_post(post=post) == (["tumblr"], [])
    clock.set(at)
    run_worker()
    assert fake.platform.calls == [] and Delivery.objects.get().status == Status.CANCELLED


@pytest.mark.django_db(transaction=True)
def test_an_edit_or_cancel_while_the_worker_publishes_is_refused_and_the_claimed_text_goes_out(
        user, clock, scheduled, fake, run_worker):
    at = utc(2026, 3, 28, 21, 0)
    post = scheduled(at, text="As planned")
    seen = {}

    def meanwhile(platform, handle):  # the user acts while the worker is at the platform
        try:
            services.update_post(post=Post.objects.get(pk=post.pk), text="Too late")
        except services.NotEditable as exc:
            seen["edit"] = str(exc)
        seen["cancel"] = services.cancel_post(post=post)
        return "ok"

    fake.steps = [meanwhile]
    clock.set(at)
    run_worker()
    assert "started" in seen["edit"] and seen["cancel"] == ([], ["tumblr"])
    assert [c["text"] for c in fake.platform.calls] == ["As planned"]
    assert Post.objects.get().text == "As planned" and Delivery.objects.get().status == Status.PUBLISHED


@pytest.mark.django_db
def test_a_worker_that_claims_at_the_moment_of_an_edit_publishes_the_new_text(user, clock, scheduled, fake, monkeypatch):
    """The claim and the edit race: the edit commits between the worker's read and its update."""
    at = utc(2026, 3, 28, 21, 0)
    post = scheduled(at, text="Old text")
    item = post.deliveries.get()
    clock.set(at)
    real_token = delivery.secrets.token_hex

    def edit_in_between(nbytes):
        monkeypatch.setattr(delivery.secrets, "token_hex", real_token)
        services.update_post(post=Post.objects.get(pk=post.pk), text="New text")
        return real_token(nbytes)

    monkeypatch.setattr(delivery.secrets, "token_hex", edit_in_between)
    assert delivery.run(item.pk, version=1) == "skipped"  # its version is gone: it leaves it to the new task
    assert delivery.run(item.pk, version=2) == Status.PUBLISHED
    assert [c["text"] for c in fake.platform.calls] == ["New text"]


# -- exactly once with several workers -----------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_several_workers_at_the_scheduled_time_deliver_each_scheduled_post_once(
        user, install_publisher, monkeypatch, tmp_path, run_worker):
    from .test_worker import Recording, calls, worker

    log_path = tmp_path / "calls.log"
    install_publisher(Recording("tumblr", log_path, pause=0.02))
    seed_connection(user, "tumblr", handle="fakeblr")
    real_now = timezone.now
    at = real_now() + timedelta(minutes=5)
    with transaction.atomic():
        posts = [schedule(user, at, text=f"Post {n}") for n in range(12)]
    assert DBTaskResult.objects.count() == 12  # queued when the transaction committed, each for its time
    for post in posts:  # two more tasks per delivery: what other worker hosts (or the stalled sweep) run
        tasks.deliver.using(run_after=at).enqueue(post.deliveries.get().pk, version=post.version)
        tasks.deliver.using(run_after=at).enqueue(post.deliveries.get().pk)
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(minutes=5, seconds=1))

    worker("--threads", "4")  # run_worker restores the signal handlers afterwards

    delivered = [post for _, post, *_ in calls(log_path)]
    assert sorted(delivered) == sorted(str(p.pk) for p in posts)  # every post once, none twice
    assert set(Delivery.objects.values_list("status", flat=True)) == {Status.PUBLISHED}
    assert sorted(r.return_value for r in DBTaskResult.objects.all()) == ["published"] * 12 + ["skipped"] * 24


@pytest.mark.django_db
def test_a_task_that_runs_before_the_posts_time_does_nothing(user, clock, scheduled, fake):
    """A stray task (the stalled sweep's, a second host's) may run early: the time is in the row."""
    at = utc(2026, 3, 28, 21, 0)
    post = scheduled(at)
    item = post.deliveries.get()
    clock.set(at - timedelta(minutes=1))
    assert delivery.run(item.pk) == "skipped" and delivery.run(item.pk, version=1) == "skipped"
    assert fake.platform.calls == [] and Delivery.objects.get().status == Status.SCHEDULED


@pytest.mark.django_db
def test_an_edit_that_a_worker_claim_overtakes_is_refused_whole(user, clock, scheduled, fake, monkeypatch):
    """On PostgreSQL the row lock makes the claim wait; should a claim land between the edit's read
    and its writes anyway, the edit fails and rolls back rather than change a post being sent."""
    at = utc(2026, 3, 28, 21, 0)
    post = scheduled(at, text="As planned")
    item = post.deliveries.get()
    clock.set(at)
    real_bulk_create = services.PostMedia.objects.bulk_create

    def claim_meanwhile(*args, **kwargs):
        assert delivery.claim(item.pk) is not None  # a task without a version: the stalled sweep's
        return real_bulk_create(*args, **kwargs)

    monkeypatch.setattr(services.PostMedia.objects, "bulk_create", claim_meanwhile)
    with pytest.raises(services.NotEditable):
        services.update_post(post=Post.objects.get(pk=post.pk), text="Changed")
    stored = Post.objects.get()
    assert (stored.text, stored.version) == ("As planned", 1)
