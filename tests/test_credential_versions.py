"""Credentials that survive concurrency (issue 12, items 1, 5, 6; issue 13, item 7).

Every write of a refresh or an upkeep check is kept only if the credential version it started
from is still stored; a rotating credential is renewed by one lease holder at a time, with no
transaction open across a platform call; what Hayon will not keep is revoked.
"""
import threading
import time
from datetime import timedelta

import httpx
import pytest
import respx
from django.core.management import call_command
from django.db import connection
from django.test import Client

from accounts.models import ApiToken, User
from platforms import services, upkeep
from platforms.documents import read_auth
from platforms.providers import bluesky as bluesky_module
from platforms.providers import get as provider

from platforms.models import AccountClaim

from .conftest import TXT_RECORDS, seed_connection
from .fixtures import bluesky as fx

ROTATED_KEY = "dGVzdC1rZXktcm90YXRlZC0wMDAwMDAwMDAwMDAwMDA="


def bluesky_user(name="b", *, access_in=-60, tag="1"):
    user = User.objects.create_user(name, f"{name}@example.com", "a long enough password")
    session = fx.session(access_in=access_in, tag=tag)
    seed_connection(user, "bluesky", handle=fx.HANDLE, identifiers={"did": fx.DID, "handle": fx.HANDLE},
                    auth={"pds": fx.PDS, "accessJwt": session["accessJwt"], "refreshJwt": session["refreshJwt"]})
    return user


def stored(user, name="bluesky"):
    return services.account_for(user).document(name)


def api_client(user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user=user, name='script')[1]}")


def in_thread(target) -> threading.Thread:
    def run():
        try:
            target()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


# -- item 1: the version, not the ciphertext, decides ----------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_after_a_user_refresh_races_upkeep_the_stored_refresh_jwt_is_the_last_the_pds_issued(
        real_pds, pds_account, monkeypatch):
    """Upkeep rotates R1 -> R2 at a real PDS while the user presses Refresh; R2 must be stored."""
    user = User.objects.create_user("racer", "racer@example.com", "a long enough password")
    client = api_client(user)
    connected = client.post("/api/platform/bluesky/connect", content_type="application/json",
                            data={"identifier": pds_account["handle"], "appPassword": pds_account["app_password"]})
    assert connected.status_code == 200, connected.content
    account = services.account_for(user)
    account.set_document("bluesky", {**account.document("bluesky"), "nextCheckAt": "2000-01-01T00:00:00Z"})
    account.save()  # due for upkeep now
    issued, statuses = [], []
    real_renew = bluesky_module.BlueskyProvider.renew

    def renew_while_the_user_refreshes(self, auth):
        renewed = real_renew(self, auth)
        issued.append(renewed["refreshJwt"])
        if len(issued) == 1:  # upkeep's renewal: the user presses Refresh before upkeep writes
            pressed = in_thread(lambda: statuses.append(client.get("/api/platform/bluesky/refresh").status_code))
            pressed.join(timeout=1.5)  # long enough for a refresh that is not held back to finish
            threads.append(pressed)
        return renewed

    threads = []
    monkeypatch.setattr(bluesky_module.BlueskyProvider, "renew", renew_while_the_user_refreshes)
    report = upkeep.run(upkeep.Options(concurrency=1))
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200] and report.counts[("bluesky", "renewed")] == 1
    kept = read_auth(stored(user))["refreshJwt"]
    assert issued and kept == issued[-1]  # the last one the PDS issued, not the one it retired
    alive = httpx.post(f"{real_pds['pdsUrl']}/xrpc/com.atproto.server.refreshSession",
                       headers={"authorization": f"Bearer {kept}"}, timeout=10)
    assert alive.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_key_rotation_during_a_check_neither_bumps_the_version_nor_loses_the_renewal(settings):
    user = bluesky_user()
    version = stored(user).get("credentialVersion")

    def rotate_keys_while_at_the_pds(request):
        settings.TOKEN_ENCRYPTION_KEYS = [ROTATED_KEY, *settings.TOKEN_ENCRYPTION_KEYS]
        call_command("rotate_token_keys", stdout=open("/dev/null", "w"))
        return httpx.Response(200, json=fx.session(tag="new"))

    with respx.mock() as pds:
        pds.post(f"{fx.PDS}/xrpc/com.atproto.server.refreshSession").mock(side_effect=rotate_keys_while_at_the_pds)
        report = upkeep.run(upkeep.Options(concurrency=1))
    assert report.counts[("bluesky", "renewed")] == 1
    doc = stored(user)
    assert read_auth(doc)["refreshJwt"].endswith("refreshnew")
    assert doc["credentialVersion"] == version + 1  # the renewal counted once; the re-encryption not at all
    settings.TOKEN_ENCRYPTION_KEYS = [ROTATED_KEY]  # only the new key: the rotation really re-encrypted
    assert read_auth(stored(user))["refreshJwt"].endswith("refreshnew")


@pytest.mark.django_db
def test_the_version_moves_only_when_the_credential_changes(user):
    seed_connection(user, "bluesky", handle=fx.HANDLE, identifiers={"did": fx.DID, "handle": fx.HANDLE},
                    auth={"pds": fx.PDS, **{k: v for k, v in fx.session(access_in=7200).items() if k.endswith("Jwt")}})
    first = stored(user)["credentialVersion"]
    with respx.mock() as pds:
        pds.get(f"{fx.PDS}/xrpc/app.bsky.actor.getProfile").respond(json=fx.PROFILE)
        renew = pds.post(f"{fx.PDS}/xrpc/com.atproto.server.refreshSession").respond(json=fx.session(tag="2"))
        services.refresh_connection(user=user, provider=provider("bluesky"))  # fresh access JWT: no renewal
        assert renew.call_count == 0 and stored(user)["credentialVersion"] == first
        services.upkeep_connection(account=services.account_for(user), provider=provider("bluesky"))  # renews
        assert renew.call_count == 1 and stored(user)["credentialVersion"] == first + 1


# -- item 6: no transaction across a platform call -------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_another_users_write_is_not_blocked_while_a_bluesky_refresh_waits_on_a_slow_pds():
    """File SQLite: a writer holding the lock across the PDS call would make this insert wait."""
    user = bluesky_user()
    at_pds = threading.Event()

    def slow_pds(request):
        at_pds.set()
        time.sleep(3)
        return httpx.Response(200, json=fx.session(tag="new"))

    with respx.mock() as pds:
        pds.post(f"{fx.PDS}/xrpc/com.atproto.server.refreshSession").mock(side_effect=slow_pds)
        pds.get(f"{fx.PDS}/xrpc/app.bsky.actor.getProfile").respond(json=fx.PROFILE)
        refreshing = in_thread(lambda: services.refresh_connection(user=user, provider=provider("bluesky")))
        assert at_pds.wait(10)
        started = time.monotonic()
        other = User.objects.create_user("other", "other@example.com", "a long enough password")
        seed_connection(other, "mastodon", handle="other", identifiers={"instanceUrl": "https://social.example"})
        waited = time.monotonic() - started
        refreshing.join(timeout=30)
    assert waited < 1.5, f"another user's write waited {waited:.1f}s behind the PDS call"
    assert read_auth(stored(user))["refreshJwt"].endswith("refreshnew")


@pytest.mark.django_db(transaction=True)
def test_two_refreshes_at_once_renew_once_the_second_waits_for_the_lease():
    user = bluesky_user(access_in=30)
    client = api_client(user)
    statuses = []

    def slow_renewal(request):
        time.sleep(0.5)
        return httpx.Response(200, json=fx.session(tag="new"))

    with respx.mock() as pds:
        renew = pds.post(f"{fx.PDS}/xrpc/com.atproto.server.refreshSession").mock(side_effect=slow_renewal)
        pds.get(f"{fx.PDS}/xrpc/app.bsky.actor.getProfile").respond(json=fx.PROFILE)
        both = [in_thread(lambda: statuses.append(client.get("/api/platform/bluesky/refresh").status_code)) for _ in range(2)]
        for thread in both:
            thread.join(timeout=30)
    assert statuses == [200, 200] and renew.call_count == 1
    doc = stored(user)
    assert read_auth(doc)["refreshJwt"].endswith("refreshnew") and "renewingUntil" not in doc


# -- issue 13, item 7: a rotated credential is kept whatever fails after ---------------------------
@pytest.mark.django_db
def test_a_rotated_session_survives_an_unexpected_failure_after_renewal(user, monkeypatch):
    """getProfile chokes (deeply nested JSON, say): the new refresh JWT is stored, health says error."""
    client = api_client(user)
    seed_connection(user, "bluesky", handle=fx.HANDLE, identifiers={"did": fx.DID, "handle": fx.HANDLE},
                    auth={"pds": fx.PDS, **{k: v for k, v in fx.session(access_in=-60).items() if k.endswith("Jwt")}})

    def choke(self, auth, *, did, handle):
        raise RecursionError("maximum recursion depth exceeded while decoding a JSON object")

    monkeypatch.setattr(bluesky_module.BlueskyProvider, "fetch_profile", choke)
    with respx.mock() as pds:
        pds.post(f"{fx.PDS}/xrpc/com.atproto.server.refreshSession").respond(json=fx.session(tag="2"))
        response = client.get("/api/platform/bluesky/refresh")
    assert response.status_code == 502 and response.json()["success"] is False
    doc = stored(user)
    assert read_auth(doc)["refreshJwt"].endswith("refresh2")
    assert doc["health"]["status"] == "error" and "could not use" in doc["health"]["reason"]
    assert doc["expiresAt"] and doc["credentialVersion"] == 2


@pytest.mark.django_db
def test_an_unexpected_exception_in_any_provider_becomes_health_error(user, monkeypatch):
    from platforms.providers import mastodon

    seed_connection(user, "mastodon", handle="me", identifiers={"instanceUrl": "https://social.example", "accountId": "1"})

    def explode(self, *, doc, auth):
        raise AttributeError("'list' object has no attribute 'get'")

    monkeypatch.setattr(mastodon.MastodonProvider, "refresh", explode)
    response = api_client(user).get("/api/platform/mastodon/refresh")
    assert response.status_code == 502 and response.json()["success"] is False
    health = stored(user, "mastodon")["health"]
    assert health["status"] == "error" and health["reason"] and not health["needsReconnection"]


# -- item 5: revoke what Hayon will not keep ----------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_disconnect_racing_a_rotation_revokes_what_was_current_at_the_end():
    user = bluesky_user(tag="old")

    def disconnect_while_at_the_pds(request):
        services.disconnect(user=user, provider=provider("bluesky"))
        return httpx.Response(200, json=fx.session(tag="new"))

    with respx.mock() as pds:
        pds.post(f"{fx.PDS}/xrpc/com.atproto.server.refreshSession").mock(side_effect=disconnect_while_at_the_pds)
        deleted = pds.post(f"{fx.PDS}/xrpc/com.atproto.server.deleteSession").respond(200)
        report = upkeep.run(upkeep.Options(concurrency=1))
    assert report.counts[("bluesky", "superseded")] == 1
    revoked = [call.request.headers["Authorization"].rsplit("-", 1)[-1] for call in deleted.calls]
    assert sorted(revoked) == ["refreshnew", "refreshold"]  # the one disconnect saw, and the one that replaced it
    assert stored(user) == {"connected": False}


def seed_bluesky(user, tag: str) -> None:
    """A stored Bluesky connection keyed and claimed as a connect would have left it."""
    seed_connection(user, "bluesky", handle=fx.HANDLE, identifiers={"did": fx.DID, "handle": fx.HANDLE},
                    auth={"pds": fx.PDS, **{k: v for k, v in fx.session(tag=tag).items() if k.endswith("Jwt")}})
    account = services.account_for(user)
    account.set_document("bluesky", {**account.document("bluesky"), "accountKey": fx.DID})
    account.save()
    AccountClaim.objects.create(platform="bluesky", account_key=fx.DID, user=user)


def connect_over_api(user, *, tag: str):
    """Connect through the API against recorded PDS replies; returns (response, deleteSession route)."""
    TXT_RECORDS[fx.HANDLE] = fx.DID
    try:
        with respx.mock(assert_all_called=False) as pds:
            pds.get(f"https://plc.directory/{fx.DID}").respond(json=fx.PLC_DOCUMENT)
            pds.post(f"{fx.PDS}/xrpc/com.atproto.server.createSession").respond(json=fx.session(tag=tag))
            pds.get(f"{fx.PDS}/xrpc/app.bsky.actor.getProfile").respond(json=fx.PROFILE)
            deleted = pds.post(f"{fx.PDS}/xrpc/com.atproto.server.deleteSession").respond(200)
            response = api_client(user).post("/api/platform/bluesky/connect", content_type="application/json",
                                             data={"identifier": fx.HANDLE, "appPassword": "abcd-efgh-ijkl-mnop"})
    finally:
        TXT_RECORDS.clear()
    return response, [c.request.headers["Authorization"].rsplit("-", 1)[-1] for c in deleted.calls]


@pytest.mark.django_db
def test_a_reconnect_revokes_the_session_it_replaces(user):
    seed_bluesky(user, "first")
    response, revoked = connect_over_api(user, tag="second")
    assert response.status_code == 200, response.content
    assert revoked == ["refreshfirst"]
    assert read_auth(stored(user))["refreshJwt"].endswith("refreshsecond")


@pytest.mark.django_db
def test_a_connect_refused_as_in_use_revokes_the_new_session(user, other_user):
    seed_bluesky(other_user, "theirs")
    response, revoked = connect_over_api(user, tag="mine")
    assert response.status_code == 409 and "another Hayon user" in response.json()["message"]
    assert revoked == ["refreshmine"]
    assert read_auth(stored(other_user))["refreshJwt"].endswith("refreshtheirs") and not stored(user).get("connected")


@pytest.mark.django_db
def test_a_failed_revocation_of_an_unkept_session_is_logged_without_the_secret(user, caplog):
    seed_connection(user, "bluesky", handle=fx.HANDLE, identifiers={"did": fx.DID, "handle": fx.HANDLE},
                    auth={"pds": fx.PDS, **{k: v for k, v in fx.session(tag="old").items() if k.endswith("Jwt")}})
    unkept = {"pds": fx.PDS, **{k: v for k, v in fx.session(tag="unkept").items() if k.endswith("Jwt")}}
    with respx.mock() as pds:
        pds.post(f"{fx.PDS}/xrpc/com.atproto.server.deleteSession").respond(503, json=fx.error("NotEnoughResources"))
        services._revoke_unkept(provider("bluesky"), stored(user), unkept, why="replaced credential")
    assert "revoking a replaced credential failed" in caplog.text and "SENTINEL" not in caplog.text


# -- review: choose() says when its write was superseded -------------------------------------------
@pytest.mark.django_db
def test_choosing_a_blog_while_the_connection_changes_reports_failure(user, monkeypatch):
    from platforms.providers import tumblr

    blogs = [{"uuid": "t:1", "name": "one", "title": "One", "hostname": "one.tumblr.com", "primary": True},
             {"uuid": "t:2", "name": "two", "title": "Two", "hostname": "two.tumblr.com", "primary": False}]
    seed_connection(user, "tumblr", handle="one", auth={"oauthToken": "SENTINEL-7f3a9c-t", "oauthTokenSecret": "s"},
                    identifiers={"blogUuid": "t:1", "blogHostname": "one.tumblr.com"}, blogs=blogs, userName="u")
    real_choose = tumblr.TumblrProvider.choose

    def reconnected_meanwhile(self, *, doc, auth, value):
        result = real_choose(self, doc=doc, auth=auth, value=value)
        seed_connection(user, "tumblr", handle="one", auth={"oauthToken": "SENTINEL-7f3a9c-t2", "oauthTokenSecret": "s"},
                        identifiers={"blogUuid": "t:1", "blogHostname": "one.tumblr.com"}, blogs=blogs, userName="u")
        return result

    monkeypatch.setattr(tumblr.TumblrProvider, "choose", reconnected_meanwhile)
    client = Client()
    client.force_login(user)
    page = client.post("/settings/tumblr/choose", {"choice": "t:2"}, follow=True).content.decode()
    assert "now uses" not in page and "changed while switching" in page
    assert stored(user, "tumblr")["blogUuid"] == "t:1"
