"""`manage.py worker` run concurrently (publishing/management/commands/worker.py): several tasks
at once never deliver one delivery twice, and a post to six accounts goes out in parallel."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction
from django_tasks_db.models import DBTaskResult

from platforms import providers
from publishing import tasks
from publishing.models import Delivery, Post, Status

from ..conftest import seed_connection
from .conftest import FakePublisher

SIX = ("bluesky", "tumblr", "facebook", "instagram", "threads", "mastodon")


@pytest.fixture
def keep_signals():
    """The worker installs its own signal handlers; give the test runner its own back."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def worker(*args: str) -> None:
    call_command("worker", "--batch", "--no-startup-delay", *args, verbosity=0)


class Recording(FakePublisher):
    """The fake provider, for one document name, recording each call in a file: append-only lines
    are whole even when threads or forked processes write at once, and the test reads them all."""

    def __init__(self, name: str, log_path, *, pause: float = 0.0, barrier: threading.Barrier | None = None):
        super().__init__(idempotent=True)
        self.name, self.label, self.log_path, self.pause, self.barrier = name, name.title(), log_path, pause, barrier

    def publish(self, *, doc, auth, post, handle):
        started = time.monotonic()
        if self.barrier is not None:
            self.barrier.wait()  # every delivery of the post must be here at once, or this times out
        time.sleep(self.pause)
        result = super().publish(doc=doc, auth=auth, post=post, handle=handle)
        with open(self.log_path, "a") as log:
            log.write(f"{self.name} {post.post_id} {os.getpid()} {started} {time.monotonic()}\n")
        return result


def forked_elsewhere(request) -> bool:
    """The command forks only a process without threads (a fork copies only the forking thread, and
    a lock another thread holds would stay held). A test run that started threads (fake platforms,
    the PDS) runs this test alone in a fresh pytest process instead; True when that run passed."""
    if threading.active_count() == 1:
        return False
    if os.environ.get("HAYON_TEST_FRESH_PROCESS"):
        pytest.skip("threads started even in a fresh process")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", f"{__file__}::{request.node.name}", "-q", "-p", "no:randomly",
         "-p", "no:cacheprovider"],
        env={**os.environ, "HAYON_TEST_FRESH_PROCESS": "1"}, cwd=Path(__file__).resolve().parents[2],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-4000:]
    return True


def calls(log_path) -> list[list[str]]:
    return [line.split() for line in log_path.read_text().splitlines()] if log_path.exists() else []


@pytest.fixture
def publishers(monkeypatch, user):
    """Install Recording publishers for the given document names (each connected for `user`)."""
    original = providers.get

    def install(names, **options):
        made = {name: Recording(name, **options) for name in names}
        for name in names:
            seed_connection(user, name, handle=f"{name}-alice")
        monkeypatch.setattr(providers, "get", lambda name: made.get(name) or original(name))
        return made

    return install


def post_to(user, targets, count=1, *, duplicate_tasks=False) -> list[int]:
    """`count` posts, queued as publishing/services.py queues them; with `duplicate_tasks`, each
    delivery gets a second task at once, as recovery gives one to a delivery it thinks lost."""
    with transaction.atomic():
        ids = []
        for n in range(count):
            post = Post.objects.create(user=user, text=f"Post {n}")
            ids += [Delivery.objects.create(post=post, platform=t).pk for t in targets]
        tasks.enqueue_deliveries(ids)
    if duplicate_tasks:
        for delivery_id in ids:
            tasks.deliver.enqueue(delivery_id)
    return ids


@pytest.mark.django_db(transaction=True)
def test_threads_never_deliver_one_delivery_twice(user, publishers, tmp_path, keep_signals):
    log = tmp_path / "calls.log"
    publishers(["tumblr", "mastodon"], log_path=log, pause=0.02)
    ids = post_to(user, ["tumblr", "mastodon"], count=20, duplicate_tasks=True)  # 40 deliveries, 80 tasks

    worker("--threads", "8")

    delivered = [(name, post) for name, post, *_ in calls(log)]
    assert len(delivered) == 40 and len(set(delivered)) == 40  # every delivery once, none twice
    assert set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {Status.PUBLISHED}
    assert DBTaskResult.objects.count() == 80 and not DBTaskResult.objects.exclude(status="SUCCESSFUL").exists()
    assert sorted(r.return_value for r in DBTaskResult.objects.all()) == ["published"] * 40 + ["skipped"] * 40
    starts_and_ends = sorted((float(s), float(e)) for *_, s, e in calls(log))
    assert any(s2 < e1 for (_, e1), (s2, _) in zip(starts_and_ends, starts_and_ends[1:]))  # it did run at once


@pytest.mark.django_db(transaction=True)
def test_processes_never_deliver_one_delivery_twice(user, publishers, tmp_path, keep_signals, request):
    if forked_elsewhere(request):
        return
    log = tmp_path / "calls.log"
    publishers(["tumblr", "mastodon"], log_path=log, pause=0.02)
    ids = post_to(user, ["tumblr", "mastodon"], count=20, duplicate_tasks=True)

    worker("--processes", "2", "--threads", "4")

    delivered = [(name, post) for name, post, *_ in calls(log)]
    assert len(delivered) == 40 and len(set(delivered)) == 40
    assert set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {Status.PUBLISHED}
    assert not DBTaskResult.objects.exclude(status="SUCCESSFUL").exists()
    pids = {pid for _, _, pid, *_ in calls(log)}
    assert str(os.getpid()) not in pids  # the forked processes delivered
    assert {w.rsplit("-", 1)[1] for r in DBTaskResult.objects.all() for w in r.worker_ids} <= {"0", "1"}


@pytest.mark.django_db(transaction=True)
def test_a_post_to_six_accounts_is_sent_in_parallel(user, publishers, tmp_path, keep_signals):
    log = tmp_path / "calls.log"
    # A barrier of six: it opens only when all six deliveries are inside the platform call at
    # once. One after another, the first waits alone, times out, and its delivery is not published.
    publishers(SIX, log_path=log, barrier=threading.Barrier(6, timeout=20))
    ids = post_to(user, SIX)

    started = time.monotonic()
    worker("--threads", "6")

    assert set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {Status.PUBLISHED}
    assert sorted(name for name, *_ in calls(log)) == sorted(SIX)
    assert time.monotonic() - started < 20


@pytest.mark.django_db(transaction=True)
def test_the_worker_runs_a_fan_out_in_about_the_time_of_one_delivery(user, publishers, tmp_path, keep_signals):
    log = tmp_path / "calls.log"
    publishers(SIX, log_path=log, pause=1.0)
    post_to(user, SIX)

    started = time.monotonic()
    worker()  # --batch alone runs one task at a time, as db_worker does
    serial = time.monotonic() - started
    post_to(user, SIX)
    started = time.monotonic()
    worker("--threads", "16")
    parallel = time.monotonic() - started

    assert serial >= 6.0  # one after another
    assert parallel < 3.0  # six 1-second calls at once, with room for a loaded machine


@pytest.mark.django_db(transaction=True)
def test_a_stopped_worker_finishes_the_deliveries_in_flight_and_takes_no_more(user, publishers, tmp_path, keep_signals):
    log = tmp_path / "calls.log"
    made = publishers(["tumblr"], log_path=log, pause=0.5)
    ids = post_to(user, ["tumblr"], count=8)
    stop = {"sent": False}
    publish = made["tumblr"].publish

    def publish_then_stop(**kwargs):
        if not stop["sent"]:  # systemd stops the worker while the first deliveries are in flight
            stop["sent"] = True
            os.kill(os.getpid(), signal.SIGTERM)
        return publish(**kwargs)

    made["tumblr"].publish = publish_then_stop
    call_command("worker", "--processes", "1", "--threads", "3", "--no-startup-delay", "--interval", "0.1", verbosity=0)

    statuses = dict(Delivery.objects.filter(pk__in=ids).values_list("pk", "status"))
    published = [pk for pk, status in statuses.items() if status == Status.PUBLISHED]
    assert 1 <= len(published) <= 3 and len(calls(log)) == len(published)  # in flight finished, none taken after
    assert set(statuses.values()) == {Status.PUBLISHED, Status.QUEUED}  # none left half-done ("publishing")
    assert not DBTaskResult.objects.filter(status="RUNNING").exists()
    assert DBTaskResult.objects.filter(status="READY").count() == 8 - len(published)


@pytest.mark.django_db(transaction=True)
def test_a_stopped_supervisor_stops_its_processes_after_their_deliveries_in_flight(user, publishers, tmp_path,
                                                                                    keep_signals, request):
    if forked_elsewhere(request):
        return
    log, flag = tmp_path / "calls.log", tmp_path / "stopped"
    made = publishers(["tumblr"], log_path=log, pause=0.5)
    ids = post_to(user, ["tumblr"], count=12)
    publish = made["tumblr"].publish

    def publish_then_stop(**kwargs):
        try:  # the first call, in whichever worker process makes it, stops the supervisor (this process)
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL))
            os.kill(os.getppid(), signal.SIGTERM)
        except FileExistsError:
            pass
        return publish(**kwargs)

    made["tumblr"].publish = publish_then_stop
    call_command("worker", "--processes", "2", "--threads", "2", "--no-startup-delay", "--interval", "0.1",
                 verbosity=0)  # returns only once both processes have ended

    statuses = list(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True))
    assert set(statuses) <= {Status.PUBLISHED, Status.QUEUED} and Status.PUBLISHED in statuses  # none half-done
    assert statuses.count(Status.PUBLISHED) == len(calls(log)) < 12  # in flight finished; then they stopped
    assert not DBTaskResult.objects.filter(status="RUNNING").exists()
