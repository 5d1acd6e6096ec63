#!/usr/bin/env python3
"""Benchmark of publishing: `manage.py worker` (production settings) against slow platforms.

    .venv/bin/python bench/publish.py [--deliveries 1000] [--delay 0.2] [--setups 2x8,1x16,2x16]
                                      [--databases sqlite,postgres] [--postgres postgres://...]

Every platform is played by one local asyncio server (a separate process) that answers each call
after `delay` seconds. Mastodon and Bluesky publish through their real providers over real HTTP
(POST /api/v1/statuses with its Idempotency-Key; com.atproto.repo.createRecord with Hayon's
record key), each user on its own server host (127.0.1.x PDSes, 127.0.2.x Mastodon servers:
Linux routes all of 127/8 to loopback). Tumblr, Facebook, Instagram and Threads publish through a
bench-only publisher, registered in the worker process, that makes one real HTTP call through
platforms/http.py (publishers of their own were not in the tree when this was written).

For each worker setup (PROCESSESxTHREADS) and database, with the worker already running:
  - fan-out: one post to six accounts, and one post to one account, alternately, `--trials` times
    each, timed from the commit that queues it to the last delivery published (the ratio of
    the medians; the goal is under 2x);
  - throughput: `--deliveries` deliveries (posts to four accounts each) queued at once, timed
    to the last one published, against the ideal deliveries x delay / (processes x threads);
  - duplicates: posts a platform server received more than once (must be 0; every post's text
    is unique), and deliveries not published;
  - peak RSS of each worker process (sampled every 50 ms), and of the same worker idle.
"""
import argparse
import asyncio
import base64
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import DEFAULT_POSTGRES, ROOT, production_env, scratch_postgres  # noqa: E402

PYTHON = sys.executable
SIX = ("bluesky", "mastodon", "tumblr", "facebook", "instagram", "threads")
FOUR = ("bluesky", "mastodon", "tumblr", "threads")  # a post in the throughput run
BENCH_PUBLISHED = ("tumblr", "facebook", "instagram", "threads")  # through the bench-only publisher
SERVER_NETS = {"bluesky": "127.0.1", "mastodon": "127.0.2"}
USERS = 50  # each with its own PDS and Mastodon server


# -- the platforms -----------------------------------------------------------------------------
class Platforms:
    """The publishing endpoints, answering after `delay`. Every post's text is unique, so a text
    a server received twice is a duplicate, whatever idempotency key came with it."""

    def __init__(self, delay: float):
        self.delay, self.seen = delay, Counter()

    async def handle(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
            body = await reader.readexactly(int(headers.get("content-length") or 0))
            status, reply = await self.answer(urlsplit(target).path, headers, body)
            data = json.dumps(reply).encode()
            writer.write(f"HTTP/1.0 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + data)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer(self, path: str, headers: dict, body: bytes) -> tuple[int, dict]:
        if path == "/__stats":
            return 200, {"calls": sum(self.seen.values()), "duplicates": sum(n - 1 for n in self.seen.values() if n > 1)}
        if path == "/__reset":
            self.seen.clear()
            return 200, {}
        await asyncio.sleep(self.delay)
        if path == "/xrpc/com.atproto.repo.createRecord":  # https://docs.bsky.app/docs/api/com-atproto-repo-create-record
            record = json.loads(body)
            self.seen[("bluesky", record["repo"], record["record"]["text"])] += 1
            uri = f"at://{record['repo']}/{record['collection']}/{record['rkey']}"
            return 200, {"uri": uri, "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
                         "validationStatus": "valid"}
        if path == "/api/v1/statuses":  # https://docs.joinmastodon.org/methods/statuses/#create
            text = parse_qs(body.decode())["status"][0]
            self.seen[("mastodon", headers["host"], text)] += 1
            status_id = str(abs(hash((headers["host"], text))) % 10**17)
            return 200, {"id": status_id, "uri": f"https://{headers['host']}/users/bench/statuses/{status_id}",
                         "url": f"https://{headers['host']}/@bench/{status_id}", "content": "<p>bench</p>",
                         "visibility": "public", "created_at": "2026-11-23T12:00:00.000Z"}
        if path.startswith("/bench/"):
            self.seen[(path, json.loads(body)["text"])] += 1
            return 200, {"id": headers["idempotency-key"]}
        return 404, {"error": f"no route for {path}"}


def serve(delay: float) -> None:
    async def main():
        platforms = Platforms(delay)
        server = await asyncio.start_server(platforms.handle, "127.0.0.1", 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]
        others = [await asyncio.start_server(platforms.handle, f"{net}.{n}", port, backlog=256)
                  for net in SERVER_NETS.values() for n in range(1, USERS + 1)]
        print(port, flush=True)
        await asyncio.gather(server.serve_forever(), *(s.serve_forever() for s in others))

    asyncio.run(main())


# -- the worker process: the real command, plus the bench-only publisher ------------------------
def bench_publishers(base: str) -> dict:
    from platforms import http
    from platforms.providers.base import Provider
    from publishing.interface import Published, Publisher

    class BenchPublisher(Publisher, Provider):
        """One real HTTP call through Hayon's http layer, with an idempotency key as a platform would."""

        publish_idempotent = True

        def __init__(self, name: str):
            self.name, self.label = name, name.title()

        def new_handle(self) -> dict:
            return {"key": secrets.token_hex(16)}

        def publish(self, *, doc, auth, post, handle):
            response = http.session().post(f"{base}/bench/{self.name}", json={"text": post.text},
                                           headers={"Idempotency-Key": handle.data["key"]})
            reply = http.expect_json(response, self.label)
            return Published(remote_id=reply["id"], url=f"https://{self.name}.bench/{reply['id']}")

    return {name: BenchPublisher(name) for name in BENCH_PUBLISHED}


def run_worker(base: str, args: list[str]) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    from platforms import providers

    publishers, original = bench_publishers(base), providers.get
    providers.get = lambda name: publishers.get(name) or original(name)
    call_command("worker", *args)


# -- seeding and driving (in a child process with the bench's environment) ----------------------
def jwt(sub: str, exp_in: int) -> str:
    def enc(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'ES256K'})}.{enc({'sub': sub, 'exp': int(time.time()) + exp_in})}.sig"


def seed(base: str) -> list:
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    from accounts.models import User
    from platforms import documents
    from platforms.documents import Connection, Profile
    from platforms.models import SocialAccount

    call_command("migrate", verbosity=0)
    port = urlsplit(base).port
    users = User.objects.bulk_create([User(username=f"bench{i}", password="!") for i in range(USERS)])
    rows = []
    for i, user in enumerate(users):
        row = SocialAccount(user=user, next_check_at=timezone.now() + timedelta(days=1))  # not due for upkeep
        profile = Profile(display_name=f"Bench {i}", handle=f"bench{i}")
        did = f"did:plc:bench{i:019d}"
        pds, instance = f"http://{SERVER_NETS['bluesky']}.{i + 1}:{port}", f"http://{SERVER_NETS['mastodon']}.{i + 1}:{port}"
        connections = {
            "bluesky": Connection(profile, did, {"did": did, "handle": f"bench{i}.test"},
                                  {"pds": pds, "accessJwt": jwt(did, 7200), "refreshJwt": jwt(did, 90 * 86400)}),
            "mastodon": Connection(profile, f"{instance}|{i}", {"instanceUrl": instance, "accountId": str(i)},
                                   {"accessToken": f"mastodon-{i}"}),
            "tumblr": Connection(profile, f"user:{i}", {"blogHostname": f"b{i}.tumblr.com", "blogUuid": f"t:{i}"},
                                 {"oauthToken": f"tumblr-{i}", "oauthTokenSecret": "s"}),
            "facebook": Connection(profile, f"page:{i}", {"platformId": str(i)}, {"pageToken": f"page-{i}"}),
            "instagram": Connection(profile, f"ig:{i}", {"platformId": f"ig{i}"}, {"pageToken": f"page-{i}"}),
            "threads": Connection(profile, str(i), {"platformId": str(i)}, {"accessToken": f"threads-{i}"}),
        }
        for name, connection in connections.items():
            row.set_document(name, documents.connected_document(connection))
        rows.append(row)
    SocialAccount.objects.bulk_create(rows)
    return users


def queue_posts(users: list, targets: tuple, posts: int) -> list[int]:
    """`posts` posts to `targets`, queued in one transaction as publishing/services.py does."""
    from django.db import transaction

    from publishing import tasks
    from publishing.models import Delivery, Post

    with transaction.atomic():
        made = Post.objects.bulk_create([Post(user=users[i % len(users)], text=f"Bench post {i} {secrets.token_hex(4)}")
                                         for i in range(posts)])
        deliveries = Delivery.objects.bulk_create([Delivery(post=p, platform=t) for p in made for t in targets])
        tasks.enqueue_deliveries([d.pk for d in deliveries])
    return [p.pk for p in made]


def wait_published(post_ids: list[int], started: float, worker, timeout: float = 120) -> float:
    from publishing.models import Delivery, Status

    pending = Delivery.objects.filter(post_id__in=post_ids).exclude(status__in=[Status.PUBLISHED, Status.FAILED,
                                                                                Status.NEEDS_ATTENTION])
    while pending.exists():
        if time.perf_counter() - started > timeout or worker.poll() is not None:
            left = Counter(pending.values_list("status", "error"))
            sys.exit(f"deliveries did not finish (worker exit code {worker.poll()}): {left.most_common(5)}")
        time.sleep(0.01)
    return time.perf_counter() - started


class Sampler:
    """Peak RSS (MB) of a process and the children it forked, read from /proc every 50 ms."""

    def __init__(self, pid: int):
        self.pid, self.peaks, self.cpu, self.pss = pid, {}, {}, {}

    def sample(self) -> None:
        for pid in [self.pid, *self._children(self.pid)]:
            try:
                with open(f"/proc/{pid}/status") as status:
                    rss = next(int(l.split()[1]) for l in status if l.startswith("VmRSS:")) / 1024
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                self.cpu[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
                with open(f"/proc/{pid}/smaps_rollup") as smaps:  # RSS with shared pages split among sharers
                    pss = next(int(l.split()[1]) for l in smaps if l.startswith("Pss:")) / 1024
                self.pss[pid] = max(self.pss.get(pid, 0), pss)
            except (OSError, StopIteration):
                continue
            self.peaks[pid] = max(self.peaks.get(pid, 0), rss)

    @staticmethod
    def _children(pid: int) -> list[int]:
        try:
            return [int(c) for t in os.listdir(f"/proc/{pid}/task")
                    for c in open(f"/proc/{pid}/task/{t}/children").read().split()]
        except OSError:
            return []


def drive(base: str, setup: str, trials: int, deliveries: int, delay: float) -> dict:
    """Runs in a child process with the bench's environment: seed, start the worker, measure."""
    import threading

    import django

    django.setup()
    import requests
    from django.db import connection

    from publishing.models import Delivery, Status

    users = seed(base)
    processes, threads = (int(n) for n in setup.split("x"))
    worker = subprocess.Popen([PYTHON, __file__, "worker", "--base", base, "--", "--processes", str(processes),
                               "--threads", str(threads), "--no-startup-delay", "-v", "0"], cwd=ROOT)
    sampler, stop = Sampler(worker.pid), threading.Event()

    def sampling():
        while not stop.wait(0.05):
            sampler.sample()

    threading.Thread(target=sampling, daemon=True).start()
    try:
        queue_posts(users, ("mastodon",), 1)  # warm up: the worker is up and has connected
        wait_published(list(Delivery.objects.values_list("post_id", flat=True)), time.perf_counter(), worker)
        time.sleep(1.5)
        idle = dict(sampler.peaks)
        requests.get(f"{base}/__reset", timeout=10)
        one, six = [], []
        for trial in range(trials):
            for targets, times in (((SIX[1],), one), (SIX, six)) if trial % 2 else ((SIX, six), ((SIX[1],), one)):
                started = time.perf_counter()
                times.append(wait_published(queue_posts(users[trial:], targets, 1), started, worker))
                time.sleep(random.uniform(0.2, 0.7))  # land anywhere in the worker's poll interval (0.25 s)
        posts = deliveries // len(FOUR)
        sampler.sample()
        cpu_before = sum(sampler.cpu.values())
        started = time.perf_counter()
        post_ids = queue_posts(users, FOUR, posts)
        wall = wait_published(post_ids, started, worker)
        sampler.sample()
        cpu = sum(sampler.cpu.values()) - cpu_before
        counts = Counter(Delivery.objects.values_list("status", flat=True))
        seen = requests.get(f"{base}/__stats", timeout=10).json()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        stop.set()
        connection.close()
    concurrency = processes * threads
    return {
        "setup": setup, "processes": processes, "threads": threads, "wall": wall, "deliveries": posts * len(FOUR),
        "ideal": posts * len(FOUR) * delay / concurrency, "one": statistics.median(one), "six": statistics.median(six),
        "one_all": one, "six_all": six, "published": counts.get(Status.PUBLISHED, 0), "total": sum(counts.values()),
        "calls": seen["calls"], "duplicates": seen["duplicates"], "cpu": cpu,
        "rss_peak": sorted(sampler.peaks.values(), reverse=True), "pss_peak": sum(sampler.pss.values()), "rss_idle": sorted(idle.values(), reverse=True),
    }


# -- running -----------------------------------------------------------------------------------
def environment(database_url: str) -> dict:
    return production_env(database_url, HAYON_ALLOW_PRIVATE_HOSTS="true", TUMBLR_CONSUMER_KEY="bench",
                          TUMBLR_CONSUMER_SECRET="bench", FACEBOOK_APP_ID="1234567890", FACEBOOK_APP_SECRET="bench",
                          THREADS_APP_ID="1", THREADS_APP_SECRET="bench", THREADS_REDIRECT_URI="https://hayon.bench/cb")


def bench_database(label: str, make_url, base: str, args) -> None:
    for setup in args.setups.split(","):
        with make_url() as url:
            out = subprocess.run([PYTHON, __file__, "drive", "--base", base, "--setup", setup, "--trials",
                                  str(args.trials), "--deliveries", str(args.deliveries), "--delay", str(args.delay)],
                                 cwd=ROOT, env=environment(url), check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        mb = lambda values: "+".join(f"{v:.0f}" for v in values)  # noqa: E731
        print(f"\n== {label}, worker --processes {r['processes']} --threads {r['threads']} "
              f"(concurrency {r['processes'] * r['threads']})")
        print(f"  throughput: {r['deliveries']} deliveries in {r['wall']:.1f} s ({r['deliveries'] / r['wall']:.0f}/s); "
              f"ideal {r['ideal']:.1f} s -> ratio {r['wall'] / r['ideal']:.2f}x (goal < 2x)")
        print(f"  fan-out: one post to six accounts {r['six'] * 1000:.0f} ms, to one account {r['one'] * 1000:.0f} ms "
              f"(medians of {args.trials}) -> ratio {r['six'] / r['one']:.2f}x (goal < 2x)")
        print(f"    six: {' '.join(f'{t * 1000:.0f}' for t in r['six_all'])} ms; "
              f"one: {' '.join(f'{t * 1000:.0f}' for t in r['one_all'])} ms")
        print(f"  worker CPU during the throughput run {r['cpu']:.1f} s ({r['cpu'] / r['deliveries'] * 1000:.1f} ms per delivery)")
        print(f"  published {r['published']} of {r['total']}; platform calls {r['calls']}, duplicates {r['duplicates']}")
        print(f"  peak RSS per process {mb(r['rss_peak'])} MB (idle worker: {mb(r['rss_idle'])} MB); "
              f"all processes' PSS (shared pages counted once) {r['pss_peak']:.0f} MB")


def main() -> None:
    from contextlib import contextmanager

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds each platform call takes")
    parser.add_argument("--setups", default="2x8,1x16,2x16", help="worker setups, PROCESSESxTHREADS; the first is the documented one")
    parser.add_argument("--trials", type=int, default=9, help="fan-out trials of each kind")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    args = parser.parse_args()

    server = subprocess.Popen([PYTHON, __file__, "serve", "--delay", str(args.delay)], stdout=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{server.stdout.readline().strip()}"
    try:
        print(f"{args.deliveries} deliveries ({args.deliveries // len(FOUR)} posts to {', '.join(FOUR)}); fan-out to "
              f"{', '.join(SIX)}; every platform call answered after {args.delay * 1000:.0f} ms; {os.cpu_count()} CPUs")
        if "sqlite" in args.databases:
            @contextmanager
            def sqlite():
                with tempfile.TemporaryDirectory() as tmp:
                    yield f"sqlite:///{tmp}/bench.sqlite3"

            bench_database("SQLite", sqlite, base, args)
        if "postgres" in args.databases:
            bench_database("PostgreSQL", lambda: scratch_postgres(args.postgres, "hayon_bench_publish"), base, args)
    finally:
        server.terminate()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("serve", "drive", "worker"):
        sub = argparse.ArgumentParser()
        sub.add_argument("mode")
        sub.add_argument("--delay", type=float, default=0.2)
        sub.add_argument("--base")
        sub.add_argument("--setup")
        sub.add_argument("--trials", type=int)
        sub.add_argument("--deliveries", type=int)
        options, rest = sub.parse_known_args()
        if options.mode == "serve":
            serve(options.delay)
        elif options.mode == "worker":
            run_worker(options.base, [a for a in rest if a != "--"])
        else:
            result = drive(options.base, options.setup, options.trials, options.deliveries, options.delay)
            print(json.dumps(result))
    else:
        main()
