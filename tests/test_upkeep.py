"""`manage.py refresh_connections`: what each platform needs, health you can trust, safe copies."""
# The command checks accounts on worker threads with their own database connections, so these
# tests commit (transactional_db): a test transaction would hide the rows from the workers.
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import requests
import responses
import respx
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from httpx import Response

from accounts.models import User
from platforms import quotas, services, upkeep
from platforms.documents import iso, read_auth
from platforms.models import SocialAccount
from platforms.services import account_for

from .conftest import seed_connection, this_database_url
from .fixtures import bluesky as bsky
from .fixtures import mastodon as mfx
from .fixtures import meta as metafx
from .fakes.mastodon import FakeMastodon
from .fixtures import tumblr as tfx
from .test_mastodon import serve_server

M = "https://social.example"
THREADS = "https://graph.threads.net"
GRAPH = "https://graph.facebook.com/v24.0"


def run(*args) -> str:
    """One process, so that the mocks of this process see every call (forking is tested below)."""
    out = io.StringIO()
    call_command("refresh_connections", "--no-progress", "--processes", "1", *args, stdout=out, stderr=out)
    return out.getvalue()


def summary(output: str) -> dict[str, dict[str, int]]:
    """The summary table as {platform: {column: count}}."""
    lines = [line for line in output.splitlines() if line and not line.endswith(".")]
    header = [h for h in lines[0].split("  ") if h.strip()]
    header = [h.strip() for h in header]
    table = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        table[cells[0]] = dict(zip(header[1:], map(int, cells[1:])))
    return table


def mastodon_user(name: str, *, token=None):
    user = User.objects.create_user(name, f"{name}@example.com", "a long enough password")
    seed_connection(user, "mastodon", handle=name, auth={"accessToken": token or f"SENTINEL-7f3a9c-{name}"},
                    identifiers={"instanceUrl": M, "accountId": "1"})
    return user


def set_doc(user, name, **fields):
    account = account_for(user)
    doc = account.document(name)
    doc.update(fields)
    account.set_document(name, doc)
    account.save()


def doc(user, name):
    return account_for(user).document(name)


def checks_made() -> list[str]:
    """The tokens Mastodon's verify_credentials was called with (other calls, such as the
    instance's limits, are not checks of an account)."""
    return [c.request.headers["Authorization"] for c in responses.calls if "verify_credentials" in c.request.url]


# -- what is due -----------------------------------------------------------------------------------
@responses.activate
def test_only_due_connections_are_checked_and_then_scheduled(transactional_db):
    responses.get(f"{M}/api/v1/accounts/verify_credentials", json=mfx.ACCOUNT)
    due, later = mastodon_user("due"), mastodon_user("later")
    set_doc(later, "mastodon", nextCheckAt=iso(timezone.now() + timedelta(hours=3)))
    table = summary(run())
    assert table["mastodon"]["checked"] == 1 and table["mastodon"]["ok"] == 1
    assert checks_made() == ["Bearer SENTINEL-7f3a9c-due"]
    checked = doc(due, "mastodon")
    assert checked["health"]["status"] == "active" and checked["health"]["checkedAt"]
    assert SocialAccount.objects.get(user=due).next_check_at > timezone.now() + timedelta(hours=23)
    assert summary(run())["total"]["checked"] == 0  # nothing is due any more


@responses.activate
def test_dry_run_lists_what_is_due_and_calls_nothing(transactional_db):
    user = mastodon_user("due")
    before = doc(user, "mastodon")
    output = run("--dry-run")
    assert summary(output)["mastodon"]["due"] == 1 and "1 accounts due" in output
    assert len(responses.calls) == 0 and doc(user, "mastodon") == before


@responses.activate
def test_platform_and_user_options_narrow_the_run(transactional_db):
    responses.get(f"{M}/api/v1/accounts/verify_credentials", json=mfx.ACCOUNT)
    alice, bob = mastodon_user("alice"), mastodon_user("bob")
    seed_connection(bob, "tumblr", handle="bob")
    untouched = doc(alice, "mastodon"), doc(bob, "tumblr")
    assert summary(run("--platform", "mastodon", "--user", "bob"))["total"]["checked"] == 1
    assert checks_made() == ["Bearer SENTINEL-7f3a9c-bob"]
    assert (doc(alice, "mastodon"), doc(bob, "tumblr")) == untouched
    with pytest.raises(Exception, match="No user 'nobody'"):
        run("--user", "nobody")


@responses.activate
def test_a_row_claimed_by_another_copy_is_left_alone_until_the_claim_runs_out(transactional_db):
    responses.get(f"{M}/api/v1/accounts/verify_credentials", json=mfx.ACCOUNT)
    user = mastodon_user("claimed")
    SocialAccount.objects.filter(user=user).update(claimed_until=timezone.now() + timedelta(minutes=5))
    assert summary(run())["total"]["checked"] == 0
    SocialAccount.objects.filter(user=user).update(claimed_until=timezone.now() - timedelta(minutes=1))
    assert summary(run())["total"]["checked"] == 1
    assert SocialAccount.objects.get(user=user).claimed_until is None


# -- what each platform needs ----------------------------------------------------------------------
def threads_user(*, age_hours, expires_in_days):
    user = User.objects.create_user("t", "t@example.com", "a long enough password")
    seed_connection(user, "threads", handle="threadsuser",
                    auth={"accessToken": "SENTINEL-7f3a9c-threads-long",
                          "issuedAt": iso(timezone.now() - timedelta(hours=age_hours))},
                    identifiers={"platformId": "17841400000000001"})
    set_doc(user, "threads", expiresAt=iso(timezone.now() + timedelta(days=expires_in_days)))
    return user


def serve_threads(rsps):
    rsps.get(f"{THREADS}/refresh_access_token", json=metafx.THREADS_RENEWED)
    rsps.get(f"{THREADS}/v1.0/me", json=metafx.THREADS_ME)


@pytest.mark.parametrize(
    "age_hours, expires_in_days, renewed",
    [(30, 10, True), (30, 50, False), (5, 10, False)],
    ids=["old-and-expiring", "old-but-far-from-expiry", "expiring-but-younger-than-a-day"],
)
@responses.activate
def test_threads_tokens_are_renewed_when_old_enough_and_expiring(transactional_db, age_hours, expires_in_days, renewed):
    serve_threads(responses)
    user = threads_user(age_hours=age_hours, expires_in_days=expires_in_days)
    table = summary(run())
    renew_calls = [c for c in responses.calls if "refresh_access_token" in c.request.url]
    assert len(renew_calls) == int(renewed) and table["threads"]["renewed"] == int(renewed)
    stored = doc(user, "threads")
    token = read_auth(stored)["accessToken"]
    assert token == ("SENTINEL-7f3a9c-threads-renewed" if renewed else "SENTINEL-7f3a9c-threads-long")
    assert stored["health"]["status"] == "active"
    if renewed:  # a fresh 60-day token: the next look is near its renewal window, not tomorrow's expiry
        assert timezone.now() + timedelta(days=40) < timezone.datetime.fromisoformat(stored["expiresAt"].replace("Z", "+00:00"))


@responses.activate
def test_an_expired_threads_token_is_marked_without_a_call(transactional_db):
    user = threads_user(age_hours=24 * 70, expires_in_days=-1)
    assert summary(run())["threads"]["expired"] == 1
    assert len(responses.calls) == 0
    health = doc(user, "threads")["health"]
    assert health["status"] == "expired" and health["needsReconnection"] is True


def bluesky_user(refresh_in_days=60):
    user = User.objects.create_user("b", "b@example.com", "a long enough password")
    session = bsky.session(access_in=-60, refresh_in=refresh_in_days * 86400, tag="old")
    seed_connection(user, "bluesky", handle=bsky.HANDLE,
                    auth={"pds": bsky.PDS, "accessJwt": session["accessJwt"], "refreshJwt": session["refreshJwt"]},
                    identifiers={"did": bsky.DID, "handle": bsky.HANDLE})
    return user


def test_bluesky_session_is_kept_alive_with_one_refresh_session(transactional_db):
    user = bluesky_user()
    with respx.mock() as mock:
        route = mock.post(f"{bsky.PDS}/xrpc/com.atproto.server.refreshSession").mock(
            return_value=Response(200, json=bsky.session(tag="new")))
        table = summary(run())
    assert route.call_count == 1 and table["bluesky"]["renewed"] == 1
    auth = read_auth(doc(user, "bluesky"))
    assert auth["refreshJwt"].endswith("refreshnew") and auth["pds"] == bsky.PDS
    assert doc(user, "bluesky")["profile"]["handle"] == bsky.HANDLE  # the profile is kept as it was


@pytest.mark.parametrize("name, status", [("ExpiredToken", "expired"), ("InvalidToken", "expired")])
def test_a_dead_bluesky_session_needs_reconnection(transactional_db, name, status):
    user = bluesky_user()
    before = doc(user, "bluesky")["auth"]
    with respx.mock() as mock:
        mock.post(f"{bsky.PDS}/xrpc/com.atproto.server.refreshSession").mock(
            return_value=Response(400, json=bsky.error(name, "Token has expired")))
        assert summary(run())["bluesky"][status] == 1
    stored = doc(user, "bluesky")
    assert stored["health"]["needsReconnection"] is True and stored["auth"] == before


def facebook_user():
    user = User.objects.create_user("f", "f@example.com", "a long enough password")
    seed_connection(user, "facebook", handle="page", auth={"pageToken": "SENTINEL-7f3a9c-page", "userToken": "u"},
                    identifiers={"platformId": "101"})
    seed_connection(user, "instagram", handle="ig", auth={}, identifiers={"platformId": "1784101"})
    return user


def debug_token(**data):
    return {"data": {"app_id": "1234567890", "type": "PAGE", "application": "Hayon", "expires_at": 0,
                     "is_valid": True, "scopes": ["pages_manage_posts"], **data}}


@responses.activate
def test_facebook_is_checked_with_debug_token_and_instagram_follows(transactional_db):
    lapses = int((timezone.now() + timedelta(days=80)).timestamp())
    responses.get(f"{GRAPH}/debug_token", json=debug_token(data_access_expires_at=lapses))
    user = facebook_user()
    assert summary(run())["facebook"]["ok"] == 1
    (call,) = responses.calls
    assert "input_token=SENTINEL-7f3a9c-page" in call.request.url and "access_token=1234567890%7C" in call.request.url
    for name in ("facebook", "instagram"):
        assert doc(user, name)["health"]["status"] == "active" and doc(user, name)["nextCheckAt"]
    assert SocialAccount.objects.get(user=user).next_check_at > timezone.now() + timedelta(hours=23)


@responses.activate
def test_facebook_data_access_about_to_lapse_is_told_to_the_user(transactional_db):
    lapses = int((timezone.now() + timedelta(days=5)).timestamp())
    responses.get(f"{GRAPH}/debug_token", json=debug_token(data_access_expires_at=lapses))
    user = facebook_user()
    run()
    health = doc(user, "facebook")["health"]
    assert health["status"] == "active" and "unless you reconnect" in health["reason"]


@pytest.mark.parametrize("subcode, status", [(460, "revoked"), (463, "expired")])
@responses.activate
def test_facebook_invalid_token_marks_facebook_and_instagram(transactional_db, subcode, status):
    error = {"code": 190, "subcode": subcode, "message": "Error validating access token"}
    responses.get(f"{GRAPH}/debug_token", json=debug_token(is_valid=False, error=error))
    user = facebook_user()
    assert summary(run())["facebook"][status] == 1
    for name in ("facebook", "instagram"):
        health = doc(user, name)["health"]
        assert health["status"] == status and health["needsReconnection"] is True, name


@responses.activate
def test_tumblr_upkeep_stays_within_its_hourly_share(transactional_db, settings):
    settings.HAYON_TUMBLR_UPKEEP_PER_HOUR = 2
    cache.clear()  # nothing left over from other tests (the hourly count itself is in the database)
    responses.get("https://api.tumblr.com/v2/user/info", json=tfx.USER_INFO)
    for name in ("t1", "t2", "t3"):
        seed_connection(User.objects.create_user(name, f"{name}@example.com", "a long enough password"),
                        "tumblr", handle=name, auth={"oauthToken": f"SENTINEL-7f3a9c-{name}", "oauthTokenSecret": "s"})
    table = summary(run("--concurrency", "1"))
    assert len(responses.calls) == 2 and table["tumblr"]["checked"] == 2 and table["tumblr"]["deferred"] == 1
    assert SocialAccount.objects.filter(next_check_at__lte=timezone.now()).count() == 1  # still due next run


# -- health you can trust --------------------------------------------------------------------------
@responses.activate
def test_transient_failures_keep_active_then_escalate_and_a_success_clears(transactional_db):
    user = mastodon_user("flaky")
    responses.get(f"{M}/api/v1/accounts/verify_credentials", status=503, body="<html>down</html>")

    def due_now():
        set_doc(user, "mastodon", nextCheckAt=iso(timezone.now() - timedelta(seconds=1)))

    assert summary(run())["mastodon"]["retrying"] == 1
    health = doc(user, "mastodon")["health"]
    assert health["status"] == "active" and health["needsReconnection"] is False and "retried" in health["reason"]
    retry = timezone.datetime.fromisoformat(doc(user, "mastodon")["nextCheckAt"].replace("Z", "+00:00"))
    assert timezone.now() + timedelta(minutes=10) < retry < timezone.now() + timedelta(hours=1)
    due_now()
    run()
    due_now()
    assert summary(run())["mastodon"]["errors"] == 1
    health = doc(user, "mastodon")["health"]
    assert health["status"] == "error" and health["consecutiveFailures"] == 3 and not health["needsReconnection"]
    responses.replace(responses.GET, f"{M}/api/v1/accounts/verify_credentials", json=mfx.ACCOUNT)
    due_now()
    run()
    health = doc(user, "mastodon")["health"]
    assert health == {**health, "status": "active", "reason": "", "consecutiveFailures": 0}
    assert read_auth(doc(user, "mastodon"))["accessToken"] == "SENTINEL-7f3a9c-flaky"


@responses.activate
def test_revoked_mastodon_token_needs_reconnection_at_once_and_the_card_says_so(transactional_db, client):
    user = mastodon_user("gone")
    responses.get(f"{M}/api/v1/accounts/verify_credentials", status=401, json={"error": "The access token was revoked"})
    assert summary(run())["mastodon"]["revoked"] == 1
    client.force_login(user)
    page = client.get("/settings").content.decode()
    assert "Needs reconnection" in page and "Reconnect Mastodon" in page
    found = client.get("/api/platform/find").json()["data"]["mastodon"]
    assert found["health"]["status"] == "revoked" and found["health"]["checkedAt"] and found["health"]["reason"]
    serve_server(responses)  # Reconnect starts the OAuth flow on the user's server again
    reconnect = client.post("/settings/mastodon/connect", {"instance": "social.example"})
    assert reconnect.status_code == 302 and reconnect["Location"].startswith(f"{M}/oauth/authorize?")


@responses.activate
def test_one_failing_account_never_stops_the_rest(transactional_db, monkeypatch):
    responses.get(f"{M}/api/v1/accounts/verify_credentials", json=mfx.ACCOUNT)
    users = [mastodon_user(f"u{i}") for i in range(5)]
    from platforms.providers import mastodon

    original = mastodon.MastodonProvider.upkeep

    def explode_for_u2(self, *, doc, auth):
        if auth["accessToken"].endswith("u2"):
            raise RuntimeError("SENTINEL-7f3a9c-u2 in a message that must not be logged")
        return original(self, doc=doc, auth=auth)

    monkeypatch.setattr(mastodon.MastodonProvider, "upkeep", explode_for_u2)
    table = summary(run("--concurrency", "2"))
    assert table["mastodon"]["ok"] == 4 and table["mastodon"]["errors"] == 1
    assert doc(users[2], "mastodon")["health"]["consecutiveFailures"] == 1
    assert all(doc(u, "mastodon")["health"]["consecutiveFailures"] == 0 for u in users if u != users[2])


@responses.activate
def test_a_connection_changed_during_the_check_is_not_overwritten(transactional_db, monkeypatch):
    """The network call runs without a lock; the write re-checks the stored credentials."""
    user = mastodon_user("racing")
    from platforms.providers import mastodon

    original = mastodon.MastodonProvider.upkeep

    def reconnect_meanwhile(self, *, doc, auth):
        result = original(self, doc=doc, auth=auth)
        seed_connection(user, "mastodon", handle="racing", auth={"accessToken": "SENTINEL-7f3a9c-newer"},
                        identifiers={"instanceUrl": M, "accountId": "1"})
        return result

    responses.get(f"{M}/api/v1/accounts/verify_credentials", json=mfx.ACCOUNT)
    monkeypatch.setattr(mastodon.MastodonProvider, "upkeep", reconnect_meanwhile)
    assert summary(run())["mastodon"]["changed meanwhile"] == 1
    assert read_auth(doc(user, "mastodon"))["accessToken"] == "SENTINEL-7f3a9c-newer"


# -- several copies --------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_two_copies_at_once_check_every_account_exactly_once():
    seen, lock = [], threading.Lock()

    def slow_reply(request):
        time.sleep(0.02)  # long enough for the copies to overlap
        with lock:
            seen.append(request.headers["Authorization"])
        return 200, {}, json.dumps(mfx.ACCOUNT)

    users = [mastodon_user(f"c{i}") for i in range(30)]
    options = upkeep.Options(concurrency=4)
    reports = []
    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.GET, f"{M}/api/v1/accounts/verify_credentials", callback=slow_reply)

        def copy():
            try:
                reports.append(upkeep.run(options))
            finally:
                connection.close()

        copies = [threading.Thread(target=copy) for _ in range(2)]
        [t.start() for t in copies]
        [t.join() for t in copies]
    assert sorted(seen) == sorted(f"Bearer SENTINEL-7f3a9c-{u.username}" for u in users)
    assert sum(r.counts[("mastodon", "ok")] for r in reports) == 30


@pytest.mark.skipif("connection.vendor != 'sqlite'")
def test_on_sqlite_a_second_copy_does_not_start(transactional_db):
    with upkeep.single_copy():
        output = run()
    assert "Another refresh_connections is running" in output


@pytest.mark.skipif("connection.vendor == 'sqlite'")
@pytest.mark.django_db(transaction=True)
def test_forked_processes_share_the_work_and_report_it_together():
    """--processes forks copies that coordinate through claims; every account is checked once.

    The command runs as cron runs it, in a process of its own (forking this test process, which
    has threads, would be unsafe: the command refuses to), against a Mastodon on 127.0.0.1.
    """
    with FakeMastodon() as server:
        users = []
        for i in range(12):
            token = f"SENTINEL-7f3a9c-fork-{i}"
            server.tokens[token] = "client"
            user = User.objects.create_user(f"p{i}", f"p{i}@example.com", "a long enough password")
            seed_connection(user, "mastodon", handle=f"p{i}", auth={"accessToken": token},
                            identifiers={"instanceUrl": server.url, "accountId": "42"})
            users.append(user)
        env = {**os.environ, "DJANGO_ENV": "test", "DATABASE_URL": this_database_url(), "HAYON_ALLOW_PRIVATE_HOSTS": "true"}
        command = [sys.executable, "manage.py", "refresh_connections", "--no-progress", "--processes", "2", "--concurrency", "4"]
        result = subprocess.run(command, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert summary(result.stdout)["mastodon"]["ok"] == 12 and "12 accounts checked by 2 processes." in result.stdout
    checks = [r.bearer() for r in server.calls if r.path == "/api/v1/accounts/verify_credentials"]
    assert sorted(checks) == sorted(f"SENTINEL-7f3a9c-fork-{i}" for i in range(12))  # each once
    for user in users:
        assert doc(user, "mastodon")["health"]["status"] == "active"


# -- a server that never finishes (issue 13, item 3) -----------------------------------------------
class StallingServer:
    """Answers every request with headers and a long body, one byte at a time, never finishing
    (until `close`): no read ever waits long enough to time out. Notes when each request came."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stop, self.lock = threading.Event(), threading.Lock()
        self.arrivals: list[float] = []  # time.monotonic() of each connection
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(client,), daemon=True).start()

    def _trickle(self, client):
        with self.lock:
            self.arrivals.append(time.monotonic())
        try:
            client.recv(65536)
            client.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
            while not self.stop.wait(0.3):
                client.sendall(b" ")
        except OSError:
            pass
        finally:
            client.close()

    def close(self):
        self.stop.set()
        self.listener.close()


def join_left_behind():
    """Threads the run left to a stalled call end once their call does (the test ends it first)."""
    for thread in upkeep.LEFT_BEHIND:
        thread.join(timeout=30)
    upkeep.LEFT_BEHIND.clear()


def test_stalled_servers_hold_up_neither_the_run_nor_the_healthy_accounts(transactional_db, settings):
    settings.HAYON_ALLOW_PRIVATE_HOSTS = True  # both servers are on 127.0.0.1
    settings.HAYON_HTTP_TIMEOUT = 60  # a read never waits that long: only the account deadline ends them
    stalling = StallingServer()
    try:
        with FakeMastodon() as healthy:
            users = {}
            for name, server in [("s1", stalling), ("h1", healthy), ("s2", stalling), ("h2", healthy), ("h3", healthy)]:
                token = f"SENTINEL-7f3a9c-{name}"
                healthy.tokens[token] = "client"
                users[name] = User.objects.create_user(name, f"{name}@example.com", "a long enough password")
                seed_connection(users[name], "mastodon", handle=name, auth={"accessToken": token},
                                identifiers={"instanceUrl": server.url, "accountId": "42"})
            started = time.monotonic()
            table = summary(run("--concurrency", "2", "--account-deadline", "2"))
            took = time.monotonic() - started
            checked = sorted(r.bearer() for r in healthy.calls if r.path == "/api/v1/accounts/verify_credentials")
    finally:
        stalling.close()
        join_left_behind()
    assert took < 25, f"the run took {took:.0f}s"  # two stalls one after the other: about 2 x (2 + 2) s
    assert checked == ["SENTINEL-7f3a9c-h1", "SENTINEL-7f3a9c-h2", "SENTINEL-7f3a9c-h3"]
    assert table["mastodon"]["checked"] == 5 and table["mastodon"]["ok"] == 3
    for name in ("s1", "s2"):
        health = doc(users[name], "mastodon")["health"]
        assert health["consecutiveFailures"] == 1 and "did not" in health["reason"], health
    # Concurrency 2: the server may hold one worker, so the second account waited for the first.
    first, second = stalling.arrivals[0], next(t for t in stalling.arrivals if t - stalling.arrivals[0] > 0.5)
    assert second - first >= 1.5 and len([t for t in stalling.arrivals if t - first < 1]) == 1


@responses.activate
def test_an_account_stuck_where_no_timeout_reaches_is_left_behind_and_recorded(transactional_db, monkeypatch):
    """The per-account deadline holds on its own: the run stops waiting for that account."""
    responses.get(f"{M}/api/v1/accounts/verify_credentials", json=mfx.ACCOUNT)
    users = [mastodon_user(name) for name in ("stuck", "fine1", "fine2")]
    from platforms.providers import mastodon

    original, release = mastodon.MastodonProvider.upkeep, threading.Event()

    def hang_for_stuck(self, *, doc, auth):
        if auth["accessToken"].endswith("stuck"):
            release.wait(20)  # longer than the run may take: the run must not wait for it
        return original(self, doc=doc, auth=auth)

    monkeypatch.setattr(mastodon.MastodonProvider, "upkeep", hang_for_stuck)
    started = time.monotonic()
    try:
        table = summary(run("--concurrency", "2", "--account-deadline", "1"))
        took = time.monotonic() - started
    finally:
        release.set()
        join_left_behind()
    assert took < 15 and table["mastodon"]["ok"] == 2 and table["mastodon"]["timed out"] == 1
    assert checks_made().count("Bearer SENTINEL-7f3a9c-fine1") == 1


# -- the Tumblr share, counted once for every run (issue 12, item 7) --------------------------------
@responses.activate
def test_two_runs_share_the_hourly_tumblr_count(transactional_db, settings):
    settings.HAYON_TUMBLR_UPKEEP_PER_HOUR = 2
    responses.get("https://api.tumblr.com/v2/user/info", json=tfx.USER_INFO)
    for name in ("t1", "t2", "t3"):
        seed_connection(User.objects.create_user(name, f"{name}@example.com", "a long enough password"),
                        "tumblr", handle=name, auth={"oauthToken": f"SENTINEL-7f3a9c-{name}", "oauthTokenSecret": "s"})
    assert summary(run("--concurrency", "1"))["tumblr"]["deferred"] == 1
    cache.clear()  # a second cron run is a new process: nothing it counted in memory survives
    second = summary(run("--concurrency", "1"))
    assert len(responses.calls) == 2 and second["tumblr"]["checked"] == 0 and second["tumblr"]["deferred"] == 1
    assert quotas.used("upkeep-tumblr", seconds=3600) == 2


# -- review items ----------------------------------------------------------------------------------
def test_a_surprise_after_a_reconnect_is_not_recorded_against_the_new_connection(transactional_db, monkeypatch):
    """The catch-all records its failure against the credential version the check started from."""
    user = mastodon_user("racing")

    def reconnect_then_fail(*, account, provider):
        seed_connection(user, "mastodon", handle="racing", auth={"accessToken": "SENTINEL-7f3a9c-newer"},
                        identifiers={"instanceUrl": M, "accountId": "1"})
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "upkeep_connection", reconnect_then_fail)
    assert summary(run())["mastodon"]["errors"] == 1
    health = doc(user, "mastodon")["health"]
    assert health["status"] == "active" and health["consecutiveFailures"] == 0


def test_the_upkeep_lock_file_is_not_part_of_the_tree():
    """Issue 12, item 16: `git status` stays clean after a run on the development database."""
    if shutil.which("git") is None or not (settings.BASE_DIR / ".git").exists():
        pytest.skip("not a git checkout")
    for name in ("db.sqlite3.upkeep-lock", "db.sqlite3-wal", "db.sqlite3-shm"):
        ignored = subprocess.run(["git", "check-ignore", "-q", name], cwd=settings.BASE_DIR)
        assert ignored.returncode == 0, name


@pytest.mark.django_db
def test_a_quota_window_opened_by_another_process_meanwhile_is_not_taken_for_spent(monkeypatch):
    """Two copies opening the hour's window at once: the one that lost the race still counts its call."""
    from platforms.models import QuotaUse

    filter_rows, raced = QuotaUse.objects.filter, []

    class AnotherProcessOpensTheWindow:
        def __init__(self, rows):
            self.rows = rows

        def update(self, **changes):
            if not raced:  # between this UPDATE finding no row and the next look, another copy creates it
                raced.append(QuotaUse.objects.create(name="race", window=int(time.time()) // 3600, used=0))
                return 0
            return self.rows.update(**changes)

        def __getattr__(self, name):
            return getattr(self.rows, name)

    monkeypatch.setattr(QuotaUse.objects, "filter", lambda *a, **k: AnotherProcessOpensTheWindow(filter_rows(*a, **k)))
    assert quotas.spend("race", limit=5, seconds=3600) is True
    assert quotas.used("race", seconds=3600) == 1
