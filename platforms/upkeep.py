"""The upkeep run behind `manage.py refresh_connections`: check every due connection.

(The command keeps its documented name; most of what it does is checking, renewing only what
the platform needs renewed.) Work is claimed, not assumed: a short transaction picks due rows in
primary-key order (with SKIP LOCKED on PostgreSQL, so copies on several hosts pass over each
other's rows) and marks them `claimed_until`; other copies ignore claimed rows. The platform
calls run on worker threads with no lock held, and services.py writes only if the credential
version it started from is still stored. An account that takes longer than its deadline is
recorded as a failed check and left behind; one user-chosen server may hold only a share of the
workers. A copy that dies
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
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from . import http, quotas, services
from .documents import credential_version, parse_iso
from .errors import Kind, PlatformError
from .models import SocialAccount
from .providers import PROVIDERS
from .providers.base import Provider

log = logging.getLogger(__name__)

CLAIM_FOR = timedelta(minutes=15)
ACCOUNT_DEADLINE = 120  # seconds one account may take; a check past it is left behind and recorded
ABANDON_GRACE = 2  # seconds past the deadline before a check is left behind (see AccountCheck.overdue)
SERVER_SHARE = 8  # one user-chosen server holds at most 1/8 of the workers (at least one)
OUTCOMES = ("ok", "renewed", "expired", "revoked", "error", "retrying", "timed_out", "superseded", "deferred")
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
    account_deadline: float = ACCOUNT_DEADLINE  # seconds


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
    workers = Workers(options.concurrency)
    try:
        for results in _pipeline(workers, now, providers, options):
            report.add(results)
            if progress:
                progress(report.accounts, max(total, report.accounts))
    finally:
        workers.stop()
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


class Workers:
    """`size` daemon threads checking accounts from a queue, each with its own database connection.

    Not a ThreadPoolExecutor: a thread stuck in a platform call that never ends cannot be
    interrupted, so the run leaves it behind (`abandon`), starts a replacement, and must be able
    to exit without joining it. A thread left behind finishes its call, records what it found
    (services writes only if nothing newer is stored), closes its connection and ends.
    """

    def __init__(self, size: int):
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.threads: set[threading.Thread] = set()
        for _ in range(size):
            self._start_thread()

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._work, name="upkeep", daemon=True)
        thread.left_behind = False
        self.threads.add(thread)
        thread.start()

    def submit(self, check: "AccountCheck", deadline: float) -> Future:
        future = Future()
        self.tasks.put((future, check, deadline))
        return future

    def _work(self) -> None:
        me = threading.current_thread()
        try:
            while not me.left_behind:
                item = self.tasks.get()
                if item is None:
                    return
                future, check, deadline = item
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(check.run(deadline))
                    except BaseException as exc:  # noqa: BLE001 -- handed to the dispatcher
                        future.set_exception(exc)
        finally:
            connection.close()

    def abandon(self, check: "AccountCheck") -> None:
        """Leave `check`'s thread to its call, and put a fresh one in its place."""
        thread = check.thread
        if thread is not None and thread in self.threads:
            thread.left_behind = True
            self.threads.discard(thread)
            LEFT_BEHIND.append(thread)
            self._start_thread()

    def stop(self) -> None:
        # One stop signal for every thread that may still read the queue: a thread left behind
        # just as its check ended may be waiting on it too, and must not take a live thread's.
        for _ in range(len(self.threads) + len(LEFT_BEHIND)):
            self.tasks.put(None)
        for thread in list(self.threads):
            thread.join()


LEFT_BEHIND: list[threading.Thread] = []  # threads abandoned to a stalled call (tests join them)


@dataclass(eq=False)
class AccountCheck:
    """One claimed account's due connections, checked in turn on a worker thread."""

    account: SocialAccount
    providers: list[Provider]
    results: list[tuple[str, str]] = field(default_factory=list)
    current: Provider | None = None
    started: float | None = None  # time.monotonic() when a worker took it
    thread: threading.Thread | None = None
    abandoned: bool = False
    servers: set[str] = field(init=False)  # the user-chosen servers these checks will call

    def __post_init__(self):
        self.servers = {host for host in (p.server_of(self.account.document(p.name)) for p in self.providers) if host}

    def run(self, deadline: float) -> list[tuple[str, str]]:
        self.thread, self.started = threading.current_thread(), time.monotonic()
        with http.deadline(deadline):  # every platform call of this account shares one budget
            for provider in self.providers:
                if self.abandoned:
                    break
                self.current = provider
                self.results.append((provider.name, _upkeep_one(self.account, provider)))
        self.current = None
        return self.results

    def overdue(self, deadline: float) -> bool:
        """Past the deadline and the grace the HTTP layer needs to end its own call and record it:
        what is still running then is stuck somewhere no deadline reaches."""
        return self.started is not None and time.monotonic() - self.started > deadline + ABANDON_GRACE

    def give_up(self, deadline: float) -> list[tuple[str, str]]:
        """Record the connection being checked as failed (transient): the run goes on without it."""
        self.abandoned = True
        provider = self.current
        if provider is None:
            return list(self.results)
        log.warning("upkeep of %s for account %s did not finish within %ss: left behind",
                    provider.name, self.account.pk, deadline)
        error = PlatformError(Kind.UNAVAILABLE, f"{provider.label} did not finish answering within {deadline:g} seconds.")
        try:
            services.record_failure(user=self.account.user, provider=provider, error=error,
                                    expected_version=credential_version(self.account.document(provider.name)))
        except Exception as exc:  # noqa: BLE001 -- the database failed us for this account; the others go on
            log.error("recording a stalled check for account %s failed: %s", self.account.pk, type(exc).__name__)
        return [*self.results, (provider.name, "timed_out")]


def _pipeline(workers: Workers, now, providers, options) -> Iterator[list[tuple[str, str]]]:
    """Claim due accounts as others finish, keep `concurrency` of them in flight, and let one
    user-chosen server hold at most a small share of the workers (so a server that never answers
    slows only its own accounts). An account in flight past `account_deadline` is given up."""
    share = max(1, options.concurrency // SERVER_SHARE)
    waiting: deque[AccountCheck] = deque()
    running: dict[Future, AccountCheck] = {}
    busy: Counter = Counter()
    finished, cursor, exhausted = [], 0, False
    while True:
        while not exhausted and len(waiting) < options.concurrency:
            accounts = claim(now, providers, options, after=cursor, limit=options.concurrency)
            exhausted = not accounts
            if accounts:
                cursor = accounts[-1].pk
                waiting.extend(AccountCheck(a, _due_providers(a, now, providers)) for a in accounts)
        for check in list(waiting):
            if len(running) >= options.concurrency:
                break
            if all(busy[host] < share for host in check.servers):
                waiting.remove(check)
                busy.update(check.servers)
                running[workers.submit(check, options.account_deadline)] = check
        if len(finished) >= options.concurrency or (finished and not running):
            release(finished)  # in batches: one write per batch, not one per account
            finished = []
        if not running:
            return
        done, _ = wait(running, timeout=_next_deadline(running.values(), options.account_deadline),
                       return_when=FIRST_COMPLETED)
        for future in done:
            check = running.pop(future)
            busy.subtract(check.servers)
            finished.append(check.account.pk)
            yield _result(future)
        for future, check in list(running.items()):
            if not future.done() and check.overdue(options.account_deadline):
                del running[future]
                workers.abandon(check)
                busy.subtract(check.servers)
                finished.append(check.account.pk)
                yield check.give_up(options.account_deadline)


def _next_deadline(checks, deadline: float) -> float:
    started = [c.started for c in checks if c.started is not None]
    if not started:
        return 1.0  # none has begun yet: look again shortly
    return max(0.05, min(started) + deadline + ABANDON_GRACE - time.monotonic())


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


def _due_providers(account: SocialAccount, now, providers: list[Provider]) -> list[Provider]:
    due = []
    for provider in providers:
        doc = account.document(provider.name)
        moment = parse_iso(doc.get("nextCheckAt"))
        if doc.get("connected") and (moment is None or moment <= now):
            due.append(provider)
    return due


def _upkeep_one(account: SocialAccount, provider: Provider) -> str:
    """Upkeep of one connection on a worker thread: its outcome for the summary."""
    if not provider.is_configured() or not _within_budget(provider):
        return "deferred"  # still due: the next run picks it up
    try:
        return services.upkeep_connection(account=account, provider=provider)
    except Exception as exc:  # one account's surprise must not stop the others
        # The type only: an exception's text can quote a URL that carries a token.
        log.error("upkeep of %s for account %s failed: %s", provider.name, account.pk, type(exc).__name__)
        error = PlatformError(Kind.UNEXPECTED, "Hayon hit an unexpected problem checking this connection.")
        try:  # recorded against the credential this check started from, never a newer one
            services.record_failure(user=account.user, provider=provider, error=error,
                                    expected_version=credential_version(account.document(provider.name)))
        except Exception as again:  # noqa: BLE001 -- the database itself is failing: the next run retries
            log.error("recording that failure for account %s failed too: %s", account.pk, type(again).__name__)
        return "error"


def _within_budget(provider: Provider) -> bool:
    """App-wide hourly limits (Tumblr): count this call, or say no once the hour's share is spent.

    Counted in the database, so every run, forked child and host shares one count.
    """
    if not provider.upkeep_per_hour_setting:
        return True
    return quotas.spend(f"upkeep-{provider.name}", limit=getattr(settings, provider.upkeep_per_hour_setting), seconds=3600)


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
