"""`manage.py worker`: django-tasks-db's `db_worker`, run concurrently, plus the recovery it lacks.

db_worker runs one task at a time, and a delivery spends nearly all its time waiting on a
platform (200 ms and more), so one process here runs `--threads` tasks at once (8 by default):
one loop claims tasks exactly as db_worker does (SELECT ... FOR UPDATE SKIP LOCKED, one at a
time, only when a thread is free, so no task waits behind a busy thread) and hands each to a
thread of its own. One claimer rather than a db_worker loop per thread: an idle worker polls the
table once an interval instead of once per thread, and a post to six accounts is claimed in six
quick claims and sent in parallel, rather than whenever six sleeping loops next wake.
`--processes N` forks N such workers, one per CPU by default (up to 4): a delivery costs ~15 ms
of Python CPU, and Python runs one thread at a time per process, so one process tops out near
one core. bench/publish.py measured the choice (2 x 8 on 2 CPUs); see the README.

A worker killed mid-task leaves that task "running" forever. So this command also gives a new
task, every RECOVER_EVERY seconds, to deliveries whose lease ran out or whose task never reached
the queue (tasks.requeue_stalled). The delivery's claim makes a duplicate task harmless.

Options are db_worker's, all queues by default. `--batch` recovers once, runs everything due on
every queue Hayon uses, and exits (scripts and tests use it); it runs one task at a time, in
this process and thread, unless `--threads` or `--processes` say otherwise. `--reload` is ignored: a reload in the middle of
a post is a crash.
"""
import multiprocessing
import os
import queue
import random
import signal
import threading
import time
from argparse import ArgumentTypeError

from django.db import close_old_connections, connection, connections
from django.db.utils import OperationalError
from django_tasks_db.management.commands import db_worker
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

from publishing import tasks

RECOVER_EVERY = 30  # seconds
# Tasks in flight per process. A delivery costs ~15 ms of CPU around a 200+ ms platform wait: 8 in
# flight need about half a core, leaving room for the web server and database (bench/publish.py).
DEFAULT_THREADS = 8
MAX_DEFAULT_PROCESSES = 4
# How long an idle worker waits before looking for tasks again (db_worker's default is 1 s): the
# wait is added to every post's first delivery, and one claimer per process makes looking cheap.
POLL_INTERVAL = 0.25
logger = db_worker.logger


def _positive(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 256:
        raise ArgumentTypeError("must be between 1 and 256")
    return number


class Command(db_worker.Command):
    help = "Run Hayon's task worker (publishing), recovering deliveries whose worker died."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.set_defaults(queue_name="*", interval=POLL_INTERVAL)  # every queue Hayon uses, unless told otherwise
        parser.add_argument("--threads", type=_positive, default=None,
                            help=f"Tasks run at once per process (default: {DEFAULT_THREADS}; 1 with --batch).")
        parser.add_argument("--processes", type=_positive, default=None,
                            help=f"Worker processes, forked, each with --threads (default: one per CPU, at most "
                                 f"{MAX_DEFAULT_PROCESSES}; 1 with --batch).")

    def handle(self, *, verbosity, queue_name, interval, batch, backend_name, startup_delay, max_tasks,
               worker_id, exclude_queues, threads, processes, **options):
        self.configure_logging(verbosity)
        settings = dict(
            queue_names=queue_name.split(","), interval=interval, batch=batch, backend_name=backend_name,
            startup_delay=startup_delay, max_tasks=max_tasks, worker_id=worker_id[:56],
            excluded_queue_names=exclude_queues.split(",") if exclude_queues else [],
            threads=threads or (1 if batch else DEFAULT_THREADS),
        )
        processes = processes or (1 if batch else min(os.cpu_count() or 1, MAX_DEFAULT_PROCESSES))
        if processes > 1 and _safe_to_fork():
            failed = Supervisor(processes, settings).run()
            if failed:
                raise SystemExit(1)
            return
        if processes > 1:  # embedded in a process with threads: the same concurrency, in this process
            settings["threads"] *= processes
        serve(settings, recovering=True)


def serve(settings: dict, *, recovering: bool) -> None:
    """One worker process: recover once, then run tasks (and keep recovering beside them)."""
    worker = PooledWorker(**settings)
    worker.configure_signals()
    if recovering:
        recover()
    if settings["batch"] or not recovering:
        worker.run()
        return
    stop = threading.Event()
    threading.Thread(target=_keep_recovering, args=(stop,), daemon=True, name="recover").start()
    try:
        worker.run()
    finally:
        stop.set()


class PooledWorker(db_worker.Worker):
    """db_worker's loop, with up to `threads` tasks running at once, each on its own thread (and
    so its own database connection). With one thread it is db_worker's loop unchanged."""

    def __init__(self, *, threads: int, **options):
        super().__init__(**options)
        self.threads = threads
        self.free = threading.Semaphore(threads)  # threads not running a task
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.claimed = 0

    def shutdown(self, signum, frame) -> None:
        if self.threads == 1:
            return super().shutdown(signum, frame)
        if not self.running:
            logger.warning("Received %s - ending the tasks in flight.", signal.strsignal(signum))
            self.reset_signals()
            os._exit(1)  # their leases run out and recovery gives them to the next worker
        logger.warning("Received %s - finishing the %d tasks in flight... (press Ctrl+C again to force)",
                       signal.strsignal(signum), self.in_flight)
        self.running = False
        self.wake.set()

    def run(self) -> None:
        if self.threads == 1:
            return super().run()
        logger.info("Starting worker worker_id=%s queues=%s threads=%d", self.worker_id, ",".join(self.queue_names),
                    self.threads)
        if self.startup_delay and self.interval:
            time.sleep(random.random())  # noqa: S311 -- as db_worker: no thundering herd of workers
        pool = [threading.Thread(target=self._serve, name=f"task-{n}", daemon=True) for n in range(self.threads)]
        for thread in pool:
            thread.start()
        try:
            self._dispatch()
        finally:
            for _ in pool:
                self.inbox.put(None)
            for thread in pool:
                thread.join()
            connection.close()

    def _dispatch(self) -> None:
        while self.running:
            if not self.free.acquire(timeout=0.5):
                continue  # every thread busy: look at `running` again, then keep waiting
            close_old_connections()
            task_result, retrieved = self._claim()
            if task_result is not None:
                with self.lock:
                    self.in_flight += 1
                self.claimed += 1
                self.inbox.put(task_result)
                if self.max_tasks is not None and self.claimed >= self.max_tasks:
                    logger.info("Run maximum tasks (%d) on worker=%s - exiting gracefully.", self.claimed,
                                self.worker_id)
                    return
                continue  # another task may be ready now: claim before sleeping
            self.free.release()
            if self.batch and retrieved:
                if not self.in_flight:  # nothing running could still queue a task that is due now
                    logger.info("No more tasks to run for worker_id=%s - exiting gracefully.", self.worker_id)
                    return
                self.wake.wait(0.05)  # until a task in flight ends, then look once more
                self.wake.clear()
                continue
            self.wake.wait(self.interval)
            self.wake.clear()

    def _claim(self) -> tuple[DBTaskResult | None, bool]:
        """db_worker's claim: the next ready task, locked and marked as ours."""
        tasks_ready = DBTaskResult.objects.ready().filter(backend_name=self.backend_name)
        if not self.process_all_queues:
            tasks_ready = tasks_ready.filter(queue_name__in=self.queue_names)
        if self.excluded_queue_names:
            tasks_ready = tasks_ready.exclude(queue_name__in=self.excluded_queue_names)
        try:
            with exclusive_transaction(tasks_ready.db):
                task_result = tasks_ready.get_locked()
                if task_result is not None:
                    task_result.claim(self.worker_id)
                return task_result, True
        except OperationalError as error:
            if is_locked_database_exception(error):  # SQLite busy: try again, as db_worker does
                return None, False
            raise

    def _serve(self) -> None:
        try:
            while (task_result := self.inbox.get()) is not None:
                try:
                    self.run_task(task_result)
                finally:
                    close_old_connections()
                    with self.lock:
                        self.in_flight -= 1
                    self.free.release()
                    if self.batch:
                        self.wake.set()
        finally:
            connection.close()


class Supervisor:
    """`--processes N`: N forked workers. Each child is its own process group, so a Ctrl-C at the
    terminal reaches only this parent, which passes each signal on exactly once (a second one
    forces, as for one worker). A child that dies is started again; the first child recovers."""

    def __init__(self, count: int, settings: dict):
        self.count, self.settings = count, settings
        self.context = multiprocessing.get_context("fork")
        self.children: dict[int, multiprocessing.Process] = {}
        self.stopping = False
        self.failed = False

    def run(self) -> bool:
        """Run until every child ends (batch) or a signal; True when a child failed."""
        connections.close_all()  # a forked child must not share its parent's database sockets
        for n in range(self.count):
            self._start(n)
        previous = {sig: signal.signal(sig, self._forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while self.children:
                for n, child in list(self.children.items()):
                    child.join(timeout=0.2)
                    if child.exitcode is None:
                        continue
                    del self.children[n]
                    if child.exitcode:
                        self.failed = True
                        logger.error("Worker process %d ended with exit code %s", n, child.exitcode)
                        if not (self.stopping or self.settings["batch"]):
                            time.sleep(1)  # not a tight loop if it dies at once again
                            self._start(n)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.failed

    def _start(self, n: int) -> None:
        child = self.context.Process(target=_child, args=(n, self.settings), name=f"worker-{n}")
        child.start()
        self.children[n] = child

    def _forward(self, signum, frame) -> None:
        self.stopping = True
        for child in self.children.values():
            if child.pid:
                try:
                    os.kill(child.pid, signum)
                except ProcessLookupError:
                    pass


def _child(n: int, settings: dict) -> None:
    os.setpgid(0, 0)  # see Supervisor
    _stop_with_parent()
    if os.getppid() == 1:  # the parent died before the line above: nobody would stop this child
        return
    serve({**settings, "worker_id": f"{settings['worker_id']}-{n}"}, recovering=n == 0)
    connections.close_all()


def _stop_with_parent() -> None:
    """Linux: SIGTERM this child if the supervisor dies (even by SIGKILL), so no orphaned worker
    goes on claiming tasks with nobody to stop it. Elsewhere, a supervisor killed outright leaves
    its children running until they are stopped by hand."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _safe_to_fork() -> bool:
    """A forked child holds only the forking thread: a lock another thread holds then stays held
    for ever. Embedded in a process with threads (a test run), run in this process instead."""
    if threading.active_count() > 1:
        logger.info("worker runs in one process: this process already has threads")
        return False
    return True


def recover() -> None:
    count = tasks.requeue_stalled()
    if count:
        logger.info("Queued %d stalled deliveries again", count)


def _keep_recovering(stop: threading.Event) -> None:
    """Beside the worker loop, on its own database connection."""
    try:
        while not stop.wait(RECOVER_EVERY):
            close_old_connections()
            try:
                recover()
            except Exception:  # a locked or restarting database: try again next time
                logger.exception("Recovering stalled deliveries failed")
    finally:
        connection.close()
