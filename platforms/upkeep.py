"""The upkeep run behind `manage.py refresh_connections`: check every due connection.

Work is claimed, not assumed: a short transaction picks due rows in primary-key order (with
SKIP LOCKED on PostgreSQL, so copies on several hosts pass over each other's rows) and marks them
`claimed_until`; other copies ignore claimed rows. The platform calls run on a thread pool with
no lock held, and services.py re-checks the stored credentials before it writes. A copy that dies
leaves claims that run out after CLAIM_FOR. On SQLite the database lock serialises claims and
`single_copy()` keeps a second copy from starting at all. On PostgreSQL one command may fork
copies of itself (`processes`), which share the work through the same claims.
"""
import fcntl
import logging
import multiprocessing
import os
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from accounts import ratelimit

from . import services
from .documents import parse_iso
from .errors import Kind, PlatformError
from .models import SocialAccount
from .providers import PROVIDERS
from .providers.base import Provider

log = logging.getLogger(__name__)

CLAIM_FOR = timedelta(minutes=15)
OUTCOMES = ("ok", "renewed", "expired", "revoked", "error", "retrying", "superseded", "deferred")
DRY_RUN_OUTCOMES = ("due",)


class AlreadyRunning(Exception):
    pass


@dataclass
class Options:
    platforms: tuple[str, ...] = ()  # provider names; empty means all
    user_ids: tuple[int, ...] = ()
    concurrency: int = 16
    dry_run: bool = False
    processes: int = 1  # >1: forked copies sharing the concurrency (PostgreSQL only)


@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)  # (platform, outcome) -> connections
    accounts: int = 0
    processes: int = 1

    def add(self, results: list[tuple[str, str]]) -> None:
        self.accounts += 1
        self.counts.update(results)

    def row(self, platform: str, outcomes=OUTCOMES) -> dict[str, int]:
        return {outcome: self.counts[(platform, outcome)] for outcome in outcomes}


def default_processes() -> int:
    """The work is network-bound but Python runs one thread at a time: on PostgreSQL, one copy
    per CPU (the benchmark showed a single process CPU-bound at 32 accounts in flight)."""
    if connection.vendor == "sqlite":
        return 1  # a single writer anyway; more processes would only queue for its lock
    return max(1, min(os.cpu_count() or 1, 4))


def run(options: Options, *, progress: Callable[[int, int], None] | None = None) -> Report:
    """Check every due connection once; returns what happened, per platform and outcome."""
    if options.processes > 1 and not options.dry_run and connection.vendor != "sqlite" and _safe_to_fork():
        return _run_forked(options, progress)
    now = timezone.now()
    providers = _providers(options)
    report = Report()
    if options.dry_run:
        for account in _due_rows(now, providers, options).select_related("user").order_by("pk").iterator():
            report.add([(p.name, "due") for p in _due_providers(account, now, providers)])
        return report
    total = _due_rows(now, providers, options).count()
    with ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="upkeep") as pool:
        try:
            for results in _pipeline(pool, now, providers, options):
                report.add(results)
                if progress:
                    progress(report.accounts, max(total, report.accounts))
        finally:
            _close_worker_connections(pool, options.concurrency)
    return report


def _providers(options: Options) -> list[Provider]:
    return [p for p in PROVIDERS if not options.platforms or p.name in options.platforms]


def _safe_to_fork() -> bool:
    """Forking copies a process with only the forking thread: any lock another thread holds at
    that moment stays held in the child for ever. The command forks before it starts a thread;
    when embedded in a process that has threads (a test run, a web worker), run in-process."""
    if threading.active_count() > 1:
        log.info("upkeep runs in one process: this process already has threads")
        return False
    return True


def _run_forked(options: Options, progress) -> Report:
    """Copies of run() in forked processes, each with its share of the concurrency.

    They coordinate exactly as copies on several hosts do (claims with SKIP LOCKED), so this adds
    no new way to check an account twice.
    """
    context = multiprocessing.get_context("fork")
    processes = min(options.processes, options.concurrency)
    share = replace(options, processes=1, concurrency=max(1, options.concurrency // processes))
    total = _due_rows(timezone.now(), _providers(options), options).count()
    done, results = context.Value("i", 0), context.Queue()
    connections.close_all()  # a forked child must not share its parent's database sockets
    children = [context.Process(target=_child, args=(share, done, results)) for _ in range(processes)]
    for child in children:
        child.start()
    report, pending = Report(processes=len(children)), len(children)
    while pending:
        finished = not any(child.is_alive() for child in children)
        try:  # a child that finished has put its report before exiting: wait a little for it
            counts, accounts = results.get(timeout=2 if finished else 0.2)
        except queue.Empty:
            if finished:
                break  # a child died without reporting: its claims run out, the next run retries
        else:
            report.counts.update(counts)
            report.accounts += accounts
            pending -= 1
        if progress:
            progress(done.value, max(total, done.value))
    for child in children:
        child.join()
    return report


def _child(options: Options, done, results) -> None:
    def count(*_):
        with done.get_lock():
            done.value += 1

    report = run(options, progress=count)
    connections.close_all()
    results.put((dict(report.counts), report.accounts))


def _close_worker_connections(pool: ThreadPoolExecutor, workers: int) -> None:
    """Close the database connection of every worker thread (each thread opened its own).

    Each closing task waits at a barrier until `workers` of them run at once, so every worker
    thread gets exactly one.
    """
    barrier = threading.Barrier(workers)

    def close():
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass  # a thread that never ran a task has no connection to close
        connection.close()

    list(pool.map(lambda _: close(), range(workers)))


def _pipeline(pool, now, providers, options) -> Iterator[list[tuple[str, str]]]:
    """Keep about two batches in flight: claim more as accounts finish, until none are due."""
    in_flight, finished, cursor, exhausted = {}, [], 0, False
    while True:
        while not exhausted and len(in_flight) < 2 * options.concurrency:
            accounts = claim(now, providers, options, after=cursor, limit=options.concurrency)
            exhausted = not accounts
            if accounts:
                cursor = accounts[-1].pk
                in_flight.update({pool.submit(check_account, a, now, providers): a.pk for a in accounts})
        if len(finished) >= options.concurrency or (finished and not in_flight):
            release(finished)  # in batches: one write per batch, not one per account
            finished = []
        if not in_flight:
            return
        done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
        finished += [in_flight.pop(future) for future in done]
        for future in done:
            yield _result(future)


def _result(future) -> list[tuple[str, str]]:
    try:
        return future.result()
    except Exception as exc:  # the database failed us for this account; the others go on
        log.error("upkeep of one account failed: %s", type(exc).__name__)
        return [("-", "error")]


def _due_rows(now, providers: list[Provider], options: Options):
    rows = SocialAccount.objects.filter(next_check_at__lte=now)
    if options.platforms:
        any_connected = Q()
        for provider in providers:
            any_connected |= Q(**{f"{provider.name}__connected": True})
        rows = rows.filter(any_connected)
    if options.user_ids:
        rows = rows.filter(user_id__in=options.user_ids)
    return rows


def claim(now, providers, options, *, after: int, limit: int) -> list[SocialAccount]:
    """Mark up to `limit` due, unclaimed rows after primary key `after` as ours, and load them."""
    with transaction.atomic():
        rows = _due_rows(now, providers, options).filter(pk__gt=after).filter(
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
        )
        if connection.features.has_select_for_update_skip_locked:
            rows = rows.select_for_update(skip_locked=True, of=("self",))
        accounts = list(rows.select_related("user").order_by("pk")[:limit])
        SocialAccount.objects.filter(pk__in=[a.pk for a in accounts]).update(claimed_until=timezone.now() + CLAIM_FOR)
    return accounts


def release(pks: list[int]) -> None:
    """Finished rows: other copies may take them again once they are due."""
    SocialAccount.objects.filter(pk__in=pks).update(claimed_until=None)


def check_account(account: SocialAccount, now: datetime, providers: list[Provider]) -> list[tuple[str, str]]:
    """Check one account's due connections in turn; runs on a worker thread.

    The worker keeps its database connection for the whole run (closed at the end by run()).
    Every write goes through services, which re-reads the row under a lock first.
    """
    return [(p.name, _check(account, p)) for p in _due_providers(account, now, providers)]


def _due_providers(account: SocialAccount, now, providers: list[Provider]) -> list[Provider]:
    due = []
    for provider in providers:
        doc = account.document(provider.name)
        moment = parse_iso(doc.get("nextCheckAt"))
        if doc.get("connected") and (moment is None or moment <= now):
            due.append(provider)
    return due


def _check(account: SocialAccount, provider: Provider) -> str:
    if not provider.is_configured() or not _within_budget(provider):
        return "deferred"  # still due: the next run picks it up
    try:
        return services.check_connection(account=account, provider=provider)
    except Exception as exc:  # one account's surprise must not stop the others
        # The type only: an exception's text can quote a URL that carries a token.
        log.error("upkeep of %s for account %s failed: %s", provider.name, account.pk, type(exc).__name__)
        error = PlatformError(Kind.BAD_REPLY, "Hayon hit an unexpected problem checking this connection.")
        services.record_failure(user=account.user, provider=provider, error=error)
        return "error"


_budget_lock = threading.Lock()


def _within_budget(provider: Provider) -> bool:
    """App-wide hourly limits (Tumblr): count this call, or say no once the hour's share is spent."""
    if not provider.upkeep_per_hour_setting:
        return True
    limit = ratelimit.Limit(f"upkeep-{provider.name}", getattr(settings, provider.upkeep_per_hour_setting), 3600)
    with _budget_lock:  # the cache counter is check-then-add; threads of one copy take turns
        try:
            ratelimit.hit([(limit, "app")])
        except ratelimit.RateLimited:
            return False
    return True


@contextmanager
def single_copy():
    """On SQLite, refuse a second copy (raises AlreadyRunning); elsewhere copies share the work."""
    if connection.vendor != "sqlite":
        yield
        return
    with open(f"{connection.settings_dict['NAME']}.upkeep-lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning("Another refresh_connections is running on this SQLite database.") from None
        lock.write(str(os.getpid()))
        lock.flush()
        yield
