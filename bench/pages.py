#!/usr/bin/env python3
"""Benchmark of the pages under load: gunicorn with the production settings on PostgreSQL.

    .venv/bin/python bench/pages.py [--clients 50] [--duration 30] [--rounds 5] [--soak 120] [--workers N]

Seeds a user with every platform connected, serves Hayon with gunicorn on 127.0.0.1 and drives it
from a load generator on the same machine (asyncio, `clients` connections each sending one
request after another). Measured in the same run, target by target:
  /settings                 against a baseline page that authenticates by session and reads the
                            user's SocialAccount row (bench/pages_urls.py), and
  /api/platform/find        against a baseline API view that authenticates by Bearer token and
                            reads the same row.
Printed: queries per request, requests per second and its ratio to the baseline (goal >= 70%),
p50/p99 latency (goal p99 < 50 ms), and errors; then a soak of both pages for `soak` seconds
(goal: zero errors).
"""
import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import DEFAULT_POSTGRES, ROOT, production_env, scratch_postgres  # noqa: E402

PYTHON = sys.executable
TARGETS = [  # (label, path, authenticates with, compared with)
    ("baseline page", "/bench/baseline/page", "session", None),
    ("/settings", "/settings", "session", "baseline page"),
    ("baseline API", "/bench/baseline/api", "token", None),
    ("/api/platform/find", "/api/platform/find", "token", "baseline API"),
]


# -- seeding (in a child process with the production environment) -----------------------------
def seed() -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.models import ApiToken, User
    from platforms import documents
    from platforms.services import account_for

    call_command("migrate", verbosity=0)
    call_command("collectstatic", verbosity=0, interactive=False)
    user = User.objects.create_user("loaded", "loaded@example.com", "a long enough password")
    account = account_for(user)
    for name in ("bluesky", "tumblr", "facebook", "instagram", "threads", "mastodon"):
        connection_doc = documents.Connection(
            profile=documents.Profile(display_name=f"Bench {name}", handle=f"bench-{name}",
                                      avatar="https://cdn.example/a.png"),
            account_key=f"{name}|bench", identifiers={"platformId": "1"}, auth={"accessToken": "bench-token"},
        )
        account.set_document(name, documents.connected_document(connection_doc))
    account.save()
    token = ApiToken.issue(user=user, name="bench")[1]
    client = Client(HTTP_HOST="hayon.bench", secure=True)
    client.force_login(user)
    queries = {}
    for label, path, auth, _ in TARGETS:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if auth == "token" else {}
        with CaptureQueriesContext(connection) as captured:
            assert client.get(path, **headers).status_code == 200, path
        queries[label] = len(captured)
    cookies = {name: client.cookies[name].value for name in ("sessionid", "csrftoken")}
    print(json.dumps({"cookies": cookies, "token": token, "queries": queries}))


# -- load ----------------------------------------------------------------------------------------
async def one_request(port: int, request: bytes) -> tuple[float, bool]:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        reply = await reader.read()  # gunicorn's sync workers close after each reply
        writer.close()
        ok = reply.startswith(b"HTTP/1.1 200") or reply.startswith(b"HTTP/1.0 200")
    except OSError:
        ok = False
    return time.perf_counter() - started, ok


async def load(port: int, requests: list[bytes], clients: int, duration: float) -> dict:
    latencies, errors, deadline = [], 0, time.perf_counter() + duration

    async def client(n: int):
        nonlocal errors
        i = n
        while time.perf_counter() < deadline:
            elapsed, ok = await one_request(port, requests[i % len(requests)])
            latencies.append(elapsed)
            errors += not ok
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return {"latencies": latencies, "wall": time.perf_counter() - started, "errors": errors}


async def paced(port: int, request: bytes, clients: int, rate: float, duration: float) -> dict:
    """Open loop: `clients` clients sending `rate` requests a second between them, on a schedule.

    Latency runs from the scheduled start, so a late request counts its wait (no coordinated
    omission); a client that falls behind sends its next request at once.
    """
    latencies, errors, interval = [], 0, clients / rate
    started = time.perf_counter()

    async def client(n: int):
        nonlocal errors
        due = started + n * interval / clients
        while due < started + duration:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            _, ok = await one_request(port, request)
            latencies.append(time.perf_counter() - due)
            errors += not ok
            due += interval

    await asyncio.gather(*(client(n) for n in range(clients)))
    return {"latencies": latencies, "wall": time.perf_counter() - started, "errors": errors}


def merge(parts: list[dict]) -> dict:
    """Requests per second over all rounds, latency percentiles over all requests."""
    latencies = sorted(latency for part in parts for latency in part["latencies"])
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"requests": len(latencies), "rps": len(latencies) / sum(part["wall"] for part in parts),
            "p50": pick(0.50), "p99": pick(0.99), "errors": sum(part["errors"] for part in parts)}


def http_request(path: str, auth: str, secrets: dict) -> bytes:
    # A signed-in browser sends the session and the CSRF cookie it was given with its first form.
    cookies = "; ".join(f"{name}={value}" for name, value in secrets["cookies"].items())
    credential = f"Cookie: {cookies}" if auth == "session" else f"Authorization: Bearer {secrets['token']}"
    return (f"GET {path} HTTP/1.1\r\nHost: hayon.bench\r\nX-Forwarded-Proto: https\r\n{credential}\r\n"
            f"Connection: close\r\n\r\n").encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    sys.exit("gunicorn did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30, help="seconds per target")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of the targets")
    parser.add_argument("--soak", type=float, default=120, help="seconds of both pages together")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    args = parser.parse_args()

    with scratch_postgres(args.postgres, "hayon_pages") as url:
        env = production_env(url, DJANGO_SETTINGS_MODULE="bench.pages_settings", SECURE_SSL_REDIRECT="false",
                             ALLOWED_HOSTS="hayon.bench", FACEBOOK_APP_ID="1", FACEBOOK_APP_SECRET="x",
                             TUMBLR_CONSUMER_KEY="x", TUMBLR_CONSUMER_SECRET="x", THREADS_APP_ID="1",
                             THREADS_APP_SECRET="x", THREADS_REDIRECT_URI="https://hayon.bench/cb")
        seeded = subprocess.run([PYTHON, __file__, "seed"], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        secrets = json.loads(seeded.stdout.strip().splitlines()[-1])
        port = free_port()
        server = subprocess.Popen(
            [str(Path(PYTHON).parent / "gunicorn"), "hayon.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.workers), "--log-level", "warning"],
            cwd=ROOT, env=env,
        )
        try:
            wait_for(port)
            report(port, secrets, args)
        finally:
            server.terminate()
            server.wait()


def report(port: int, secrets: dict, args) -> None:
    print(f"gunicorn, {args.workers} sync workers, production settings, PostgreSQL; {os.cpu_count()} CPUs; "
          f"{args.clients} clients on the same machine, {args.duration:.0f} s per target in {args.rounds} rounds")
    requests = {label: http_request(path, auth, secrets) for label, path, auth, _ in TARGETS}
    for label in requests:
        asyncio.run(load(port, [requests[label]], args.clients, 2))  # warm up: connections, caches
    # Rounds alternate the targets, so a slow spell on a shared machine falls on all of them alike.
    rounds = {label: [] for label in requests}
    for _ in range(args.rounds):
        for label, request in requests.items():
            rounds[label].append(asyncio.run(load(port, [request], args.clients, args.duration / args.rounds)))
    results = {label: merge(parts) for label, parts in rounds.items()}
    print(f"{'target':<22}{'queries':>8}{'req/s':>9}{'vs baseline':>13}{'p50 ms':>8}{'p99 ms':>8}{'errors':>8}")
    for label, _, _, baseline in TARGETS:
        r = results[label]
        ratio = f"{r['rps'] / results[baseline]['rps']:.0%}" if baseline else "-"
        print(f"{label:<22}{secrets['queries'][label]:>8}{r['rps']:>9.0f}{ratio:>13}{r['p50']:>8.1f}{r['p99']:>8.1f}"
              f"{r['errors']:>8}")
    # Back to back, latency is clients / throughput (Little's law). At a given offered rate it is
    # what a user waits: shown at fractions of the throughput just measured.
    print(f"{args.clients} clients at a steady rate (open loop, {args.duration / 2:.0f} s each):")
    for label in ("/settings", "/api/platform/find"):
        for share in (0.25, 0.5, 0.75):
            rate = results[label]["rps"] * share
            r = merge([asyncio.run(paced(port, requests[label], args.clients, rate, args.duration / 2))])
            print(f"  {label:<20} {rate:>5.0f} req/s ({share:.0%} of its throughput): p50 {r['p50']:.1f} ms, "
                  f"p99 {r['p99']:.1f} ms, {r['errors']} errors")
    if args.soak:
        both = [http_request("/settings", "session", secrets), http_request("/api/platform/find", "token", secrets)]
        soak = merge([asyncio.run(load(port, both, args.clients, args.soak))])
        print(f"soak: /settings and /api/platform/find for {args.soak:.0f} s: {soak['requests']} requests, "
              f"{soak['rps']:.0f} req/s, p99 {soak['p99']:.1f} ms, {soak['errors']} errors")


if __name__ == "__main__":
    if sys.argv[1:] == ["seed"]:
        seed()
    else:
        main()
