#!/usr/bin/env python3
"""Benchmark of `manage.py refresh_connections` (production settings) against slow platforms.

    .venv/bin/python bench/upkeep.py [--accounts 10000] [--concurrency 32] [--delay 0.1]
                                     [--databases sqlite,postgres] [--postgres postgres://...]

Seeds N due connections spread over the five platforms, every platform played by one local HTTP
server (a separate process) that answers each call after `delay` seconds, and runs the real
command as cron would. The upkeep lets one user-chosen server hold at most an eighth of its
workers, so, as in production, each Mastodon server and each PDS has its own host: `--servers`
loopback addresses each (127.0.1.x for PDSes, 127.0.2.x for Mastodon; Linux routes all of
127/8 to loopback). Tumblr, Facebook and Threads stay on 127.0.0.1. Printed, per database:
  - wall time, accounts per second, and the ratio to the ideal N x delay / concurrency;
  - the ratio to a baseline measured in the same run: the same number of calls to the same
    server from a bare thread pool (no Django, no database), i.e. the floor on this machine;
  - peak RSS of the command, next to the peak RSS of the same command with nothing due;
  - on PostgreSQL, two copies at once (half the concurrency each): calls the server saw for the
    same account and endpoint more than once are duplicates, and must be 0.
"""
import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import DEFAULT_POSTGRES, ROOT, production_env, scratch_postgres  # noqa: E402

PYTHON = sys.executable
PLATFORMS = ("bluesky", "tumblr", "facebook", "threads", "mastodon")
SERVER_NETS = {"bluesky": "127.0.1", "mastodon": "127.0.2"}  # the user-chosen servers' loopback hosts


def server_hosts(servers: int) -> list[str]:
    return [f"{net}.{n}" for net in SERVER_NETS.values() for n in range(1, servers + 1)]


def server_url(base: str, platform: str, i: int, servers: int) -> str:
    """Account i's PDS or Mastodon server: the same port as `base`, on its own loopback address."""
    port = urlsplit(base).port
    return f"http://{SERVER_NETS[platform]}.{(i // len(PLATFORMS)) % servers + 1}:{port}"


# -- the platforms -----------------------------------------------------------------------------
def jwt(sub: str, exp_in: int, tag: str) -> str:
    def enc(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'ES256K'})}.{enc({'sub': sub, 'exp': int(time.time()) + exp_in, 'jti': tag})}.sig"


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def short_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class Platforms:
    """Every platform's upkeep endpoint, shaped like its documentation, answering after a delay.

    asyncio rather than http.server's thread per request: the platforms' CPU is not ours to
    measure, and on a 2-core machine a thread-per-request server would take a core from Hayon.
    """

    def __init__(self, delay: float):
        self.delay, self.seen, self.instance_reads = delay, Counter(), 0

    async def handle(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
            if int(headers.get("content-length") or 0):
                await reader.readexactly(int(headers["content-length"]))
            status, body = await self.answer(target, headers)
            data = json.dumps(body).encode()
            writer.write(f"HTTP/1.0 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + data)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer(self, target: str, headers: dict) -> tuple[int, dict]:
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/__stats":
            return 200, {"requests": sum(self.seen.values()), "instance_reads": self.instance_reads,
                         "duplicates": sum(n - 1 for n in self.seen.values() if n > 1)}
        if url.path == "/__reset":
            self.seen.clear()
            self.instance_reads = 0
            return 200, {}
        await asyncio.sleep(self.delay)
        if url.path == "/__baseline":
            return 200, {"ok": True}
        if url.path == "/api/v2/instance":  # one per Mastodon refresh, not per account: not a duplicate
            self.instance_reads += 1
            return 200, INSTANCE
        token, body = self.route(url.path, query, headers)
        self.seen[(url.path, token)] += 1
        return (404 if "error" in body else 200), body

    def route(self, path: str, query: dict, headers: dict) -> tuple[str, dict]:
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        if path.endswith("/com.atproto.server.refreshSession"):
            did = jwt_claims(bearer)["sub"]
            tag = short_id(bearer)
            return bearer, {"accessJwt": jwt(did, 7200, f"a{tag}"), "refreshJwt": jwt(did, 90 * 86400, f"r{tag}"),
                            "handle": "bench.test", "did": did, "active": True}
        if path.endswith("/debug_token"):
            return query["input_token"], {"data": {
                "app_id": "1234567890", "type": "PAGE", "application": "Hayon", "expires_at": 0, "is_valid": True,
                "data_access_expires_at": int(time.time()) + 80 * 86400, "scopes": ["pages_manage_posts"]}}
        if path.endswith("/v1.0/me"):
            token = query["access_token"]
            return token, {"id": short_id(token), "username": "bench", "name": "Bench",
                           "threads_profile_picture_url": "", "threads_biography": ""}
        if path.endswith("/v2/user/info"):
            token = re.search(r'oauth_token="([^"]+)"', headers.get("authorization", "")).group(1)
            blog = short_id(token)
            return token, {"meta": {"status": 200, "msg": "OK"}, "response": {"user": {"name": blog, "blogs": [
                {"name": f"b{blog}", "title": "Bench", "url": f"https://b{blog}.tumblr.com/", "primary": True,
                 "uuid": f"t:{blog}"}]}}}
        if path.endswith("/api/v1/accounts/verify_credentials"):
            return bearer, {"id": short_id(bearer), "username": "bench", "acct": "bench",
                            "display_name": "Bench", "avatar": "", "note": ""}
        return "", {"error": f"no route for {path}"}


# /api/v2/instance, trimmed to what Hayon reads (https://docs.joinmastodon.org/methods/instance/#v2)
INSTANCE = {"domain": "bench.test", "version": "4.3.0", "source_url": "https://github.com/mastodon/mastodon",
            "configuration": {"statuses": {"max_characters": 500, "max_media_attachments": 4,
                                           "characters_reserved_per_url": 23},
                              "media_attachments": {"supported_mime_types": ["image/jpeg", "image/png"],
                                                    "image_size_limit": 16777216, "image_matrix_limit": 33177600}}}


def serve(port: int, delay: float, servers: int) -> None:
    async def main():
        platforms = Platforms(delay)
        server = await asyncio.start_server(platforms.handle, "127.0.0.1", port, backlog=1024)
        port_taken = server.sockets[0].getsockname()[1]
        others = [await asyncio.start_server(platforms.handle, host, port_taken, backlog=256)
                  for host in server_hosts(servers)]
        print(port_taken, flush=True)
        await asyncio.gather(server.serve_forever(), *(s.serve_forever() for s in others))

    asyncio.run(main())


# -- seeding -----------------------------------------------------------------------------------
def seed(accounts: int, base: str, servers: int) -> None:
    """Runs in a child process with the benchmark's environment: migrate, then N due connections."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from accounts.models import User
    from platforms import documents
    from platforms.models import SocialAccount

    call_command("migrate", verbosity=0)
    SocialAccount.objects.all().delete()
    User.objects.all().delete()
    users = User.objects.bulk_create(
        [User(username=f"bench{i}", password="!") for i in range(accounts)], batch_size=1000
    )
    rows = []
    for i, user in enumerate(users):
        row = SocialAccount(user=user, next_check_at=documents.EPOCH)
        for name, connection in connections_for(i, base, timezone.now(), servers).items():
            row.set_document(name, documents.connected_document(connection))
        rows.append(row)
    SocialAccount.objects.bulk_create(rows, batch_size=500)


def connections_for(i: int, base: str, now, servers: int) -> dict:
    from datetime import timedelta

    from platforms.documents import Connection, Profile, iso

    profile = Profile(display_name=f"Bench {i}", handle=f"bench{i}")
    platform = PLATFORMS[i % len(PLATFORMS)]
    if platform == "bluesky":
        did = "did:plc:" + base64.b32encode(hashlib.sha256(str(i).encode()).digest()).decode().lower()[:24]
        auth = {"pds": server_url(base, platform, i, servers), "accessJwt": jwt(did, -60, f"a{i}"), "refreshJwt": jwt(did, 60 * 86400, f"r{i}")}
        return {"bluesky": Connection(profile, did, {"did": did, "handle": "bench.test"}, auth)}
    if platform == "tumblr":
        auth = {"oauthToken": f"tumblr-{i}", "oauthTokenSecret": "s"}
        return {"tumblr": Connection(profile, f"user:{i}", {"blogHostname": f"b{i}.tumblr.com", "blogUuid": f"t:{i}"}, auth)}
    if platform == "facebook":
        auth = {"pageToken": f"page-{i}", "userToken": f"user-{i}"}
        return {"facebook": Connection(profile, f"page:{i}", {"platformId": str(i)}, auth),
                "instagram": Connection(profile, f"ig:{i}", {"platformId": f"ig{i}"}, {})}
    if platform == "threads":
        auth = {"accessToken": f"threads-{i}", "issuedAt": iso(now - timedelta(days=2))}
        return {"threads": Connection(profile, str(i), {"platformId": str(i)}, auth, expires_at=now + timedelta(days=50))}
    auth = {"accessToken": f"mastodon-{i}"}
    server = server_url(base, platform, i, servers)
    return {"mastodon": Connection(profile, f"{server}|{i}", {"instanceUrl": server, "accountId": str(i)}, auth)}


# -- running -----------------------------------------------------------------------------------
def environment(database_url: str, base: str) -> dict:
    return production_env(
        database_url, HAYON_ALLOW_PRIVATE_HOSTS="true", HAYON_TUMBLR_UPKEEP_PER_HOUR="1000000",
        TUMBLR_CONSUMER_KEY="bench", TUMBLR_CONSUMER_SECRET="bench", TUMBLR_API_URL=base,
        FACEBOOK_APP_ID="1234567890", FACEBOOK_APP_SECRET="bench", FACEBOOK_GRAPH_URL=base,
        THREADS_APP_ID="1", THREADS_APP_SECRET="bench", THREADS_REDIRECT_URI="https://hayon.bench/cb",
        THREADS_GRAPH_URL=base,
    )


def command(env: dict, *args: str) -> subprocess.Popen:
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([PYTHON, str(ROOT / "manage.py"), "refresh_connections", "--no-progress", *args],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def finish(proc: subprocess.Popen) -> dict:
    """Wait for one command; its output, peak RSS (MB) and how many connections it checked."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.log.seek(0)
    output = proc.log.read()
    if proc.returncode:
        sys.exit(f"refresh_connections failed ({proc.returncode}):\n{output}")
    total = next(line for line in output.splitlines() if line.startswith("total"))
    return {"output": output, "rss_mb": usage.ru_maxrss / 1024, "checked": int(total.split()[1]),
            "cpu": usage.ru_utime + usage.ru_stime}


def run_copies(env: dict, copies: int, concurrency: int) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    procs = [command(env, "--concurrency", str(concurrency)) for _ in range(copies)]
    results = [finish(p) for p in procs]
    return time.perf_counter() - started, results


def baseline(base: str, calls: int, concurrency: int) -> float:
    """The same number of calls to the same server from a bare thread pool: the floor here."""
    import requests

    def call(_):
        with requests.Session() as session:  # a connection per call, as Hayon makes them
            session.get(f"{base}/__baseline", timeout=10).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(call, range(calls)))
    return time.perf_counter() - started


def stats(base: str, reset: bool = False) -> dict:
    import requests

    result = requests.get(f"{base}/__stats", timeout=10).json()
    if reset:
        requests.get(f"{base}/__reset", timeout=10)
    return result


def bench_database(label: str, url: str, base: str, args, floor: float) -> None:
    env = environment(url, base)
    ideal = args.accounts * args.delay / args.concurrency
    plans = [(1, args.concurrency)] + ([(2, args.concurrency // 2)] if url.startswith("postgres") else [])
    for copies, concurrency in plans:
        subprocess.run([PYTHON, __file__, "seed", "--accounts", str(args.accounts), "--base", base,
                        "--servers", str(args.servers)],
                       cwd=ROOT, env=env, check=True)
        stats(base, reset=True)
        wall, results = run_copies(env, copies, concurrency)
        seen = stats(base)
        idle = finish(command(env))["rss_mb"]  # the same command with nothing due
        checked = sum(r["checked"] for r in results)
        name = (f"{label}, {copies} cop{'y' if copies == 1 else 'ies'} of the command x concurrency {concurrency}"
                f" (processes: the command's default for {label})")
        print(f"\n== {name}")
        print(f"  checked {checked} of {args.accounts} connections in {wall:.1f} s "
              f"({args.accounts / wall:.0f} accounts/s)")
        print(f"  ideal {ideal:.1f} s -> ratio {wall / ideal:.2f}x (goal <= 2x); "
              f"bare-pool baseline {floor:.1f} s -> ratio {wall / floor:.2f}x")
        peaks = ", ".join(f"{r['rss_mb']:.0f}" for r in results)
        print(f"  peak RSS {peaks} MB "
              f"(the same command with nothing due: {idle:.0f} MB)")
        cpu = sum(r["cpu"] for r in results)
        print(f"  CPU time of the command {cpu:.1f} s ({cpu / args.accounts * 1000:.1f} ms per account)")
        print(f"  platform calls {seen['requests']} (+ {seen['instance_reads']} Mastodon /api/v2/instance reads: "
              f"the ideal for every call made is {(seen['requests'] + seen['instance_reads']) * args.delay / args.concurrency:.1f} s), "
              f"duplicates {seen['duplicates']}")
        if copies == 1:
            print("  " + "\n  ".join(results[0]["output"].strip().splitlines()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.1, help="seconds each platform call takes")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--servers", type=int, default=50, help="Mastodon servers, and PDSes, each on its own host")
    args = parser.parse_args()

    server = subprocess.Popen([PYTHON, __file__, "serve", "--delay", str(args.delay), "--servers", str(args.servers)],
                              stdout=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{server.stdout.readline().strip()}"
    try:
        print(f"{args.accounts} connections over {', '.join(PLATFORMS)}; every call answered after "
              f"{args.delay * 1000:.0f} ms; {args.servers} Mastodon servers and {args.servers} PDSes, "
              f"each its own host; {os.cpu_count()} CPUs")
        floor = baseline(base, args.accounts, args.concurrency)
        print(f"bare-pool baseline: {args.accounts} calls at concurrency {args.concurrency} in {floor:.1f} s")
        if "sqlite" in args.databases:
            with tempfile.TemporaryDirectory() as tmp:
                bench_database("SQLite", f"sqlite:///{tmp}/bench.sqlite3", base, args, floor)
        if "postgres" in args.databases:
            with scratch_postgres(args.postgres, "hayon_bench") as url:
                bench_database("PostgreSQL", url, base, args, floor)
    finally:
        server.terminate()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("serve", "seed"):
        sub = argparse.ArgumentParser()
        sub.add_argument("mode")
        sub.add_argument("--delay", type=float, default=0.1)
        sub.add_argument("--accounts", type=int)
        sub.add_argument("--base")
        sub.add_argument("--servers", type=int, default=50)
        options = sub.parse_args()
        if options.mode == "serve":
            serve(0, options.delay, options.servers)
        else:
            sys.path.insert(0, str(ROOT))
            seed(options.accounts, options.base, options.servers)
    else:
        main()
