"""Threads: code -> short-lived -> long-lived token -> profile; renewal after 24 hours; no revoke API."""
from contextlib import contextmanager
from datetime import timedelta
from unittest.mock import patch

import pytest
import requests
import responses
from django.utils import timezone
from responses import matchers

from platforms.documents import iso, parse_iso, read_auth
from platforms.services import account_for

from .conftest import SENTINEL
from .fixtures import meta as fx
from .oauth_helpers import callback, form_of, query_of, start

pytestmark = pytest.mark.django_db
GRAPH = "https://graph.threads.net"


def serve(rsps):
    rsps.post(f"{GRAPH}/oauth/access_token", json=fx.THREADS_SHORT)
    rsps.get(f"{GRAPH}/access_token", json=fx.THREADS_LONG,
             match=[matchers.query_param_matcher({"grant_type": "th_exchange_token"}, strict_match=False)])
    rsps.get(f"{GRAPH}/v1.0/me", json=fx.THREADS_ME)
    rsps.get(f"{GRAPH}/refresh_access_token", json=fx.THREADS_RENEWED)


def assert_expires_in(value: str, seconds: int) -> None:
    """`value` is what Threads said: `seconds` from now (give or take the test's own run time)."""
    expected = timezone.now() + timedelta(seconds=seconds)
    assert abs((parse_iso(value) - expected).total_seconds()) < 60, value


@contextmanager
def freeze_in(*, days: int):
    """Hayon's clock `days` ahead (the platform replies are recorded, so they do not age)."""
    moved = timezone.now() + timedelta(days=days)
    with patch("django.utils.timezone.now", return_value=moved):
        yield


def connect(client):
    url = start(client, "threads")
    return url, callback(client, "threads", code="SENTINEL-7f3a9c-code#_", state=query_of(url)["state"])


def stored(user):
    return account_for(user).document("threads")


@responses.activate
def test_connect_exchanges_for_a_long_lived_token(signed_in, user):
    serve(responses)
    url, response = connect(signed_in)
    params = query_of(url)
    assert url.startswith("https://threads.net/oauth/authorize?")
    assert params["scope"] == "threads_basic,threads_content_publish,threads_manage_insights"
    assert params["redirect_uri"] == "http://testserver/api/platform/threads/callback"
    assert response["Location"] == "/settings?success=threads_connected"
    token_form = form_of(responses.calls[0])
    assert token_form["code"] == "SENTINEL-7f3a9c-code"  # Meta's trailing "#_" removed
    assert token_form["client_secret"] == "threads-app-secret"
    assert "access_token=SENTINEL-7f3a9c-threads-short" in responses.calls[1].request.url
    doc = stored(user)
    assert doc["platformId"] == "17841400000000001" and doc["profile"]["handle"] == "threadsuser"
    assert doc["profile"]["description"] == "Short bio"
    assert_expires_in(doc["expiresAt"], fx.THREADS_LONG["expires_in"])
    assert read_auth(doc)["accessToken"] == "SENTINEL-7f3a9c-threads-long" and SENTINEL not in str(doc)
    page = signed_in.get("/settings").content.decode()
    assert "Token expires" in page


@pytest.mark.parametrize("reply", [{"status": 400, "json": fx.error(190, 463)}, {"status": 500, "body": "<html>"},
                                   {"body": requests.exceptions.ConnectTimeout()}, {"status": 200, "json": {"token_type": "bearer"}}])
@responses.activate
def test_failed_long_lived_exchange_stores_nothing(signed_in, user, reply):
    serve(responses)
    responses.replace(responses.GET, f"{GRAPH}/access_token", **reply)
    _, response = connect(signed_in)
    assert response["Location"] == "/settings?error=platform_error"
    assert stored(user) == {}


def seeded(user, *, age_hours, expires_in_days=50):
    serve(responses)
    from .conftest import seed_connection

    issued = timezone.now() - timedelta(hours=age_hours)
    account = seed_connection(user, "threads", handle="threadsuser",
                              auth={"accessToken": "SENTINEL-7f3a9c-threads-long", "issuedAt": iso(issued)},
                              identifiers={"platformId": "17841400000000001"})
    doc = account.document("threads")
    doc["expiresAt"] = iso(timezone.now() + timedelta(days=expires_in_days))
    account.set_document("threads", doc)
    account.save()


@responses.activate
def test_token_younger_than_a_day_is_not_renewed(api, user):
    seeded(user, age_hours=2)
    assert api.get("/api/platform/threads/refresh").status_code == 200
    assert not any("refresh_access_token" in c.request.url for c in responses.calls)


@responses.activate
def test_token_older_than_a_day_is_renewed(api, user):
    seeded(user, age_hours=30)
    data = api.get("/api/platform/threads/refresh").json()["data"]
    assert [c for c in responses.calls if "refresh_access_token" in c.request.url]
    assert read_auth(stored(user))["accessToken"] == "SENTINEL-7f3a9c-threads-renewed"
    assert data["health"]["status"] == "active"
    assert_expires_in(data["expiresAt"], fx.THREADS_RENEWED["expires_in"])
    assert stored(user)["expiresAt"] == data["expiresAt"]


@responses.activate
def test_a_renewal_followed_by_a_failure_keeps_the_new_token_and_its_expiry(api, user):
    """Issue 12, item 2: Threads renewed the token, then the profile call failed."""
    seeded(user, age_hours=30, expires_in_days=1)
    responses.replace(responses.GET, f"{GRAPH}/v1.0/me", status=500, body="<html>oops</html>")
    assert api.get("/api/platform/threads/refresh").status_code == 502
    doc = stored(user)
    auth = read_auth(doc)
    assert auth["accessToken"] == "SENTINEL-7f3a9c-threads-renewed"
    assert abs((parse_iso(auth["issuedAt"]) - timezone.now()).total_seconds()) < 60
    assert_expires_in(doc["expiresAt"], fx.THREADS_RENEWED["expires_in"])  # not the old one, a day away
    assert doc["health"]["status"] == "active" and "will be retried" in doc["health"]["reason"]
    # Two days on, the old expiry has passed: the next check asks Threads instead of calling it expired.
    responses.replace(responses.GET, f"{GRAPH}/v1.0/me", json=fx.THREADS_ME)
    with freeze_in(days=2):
        assert api.get("/api/platform/threads/refresh").status_code == 200
    assert stored(user)["health"]["status"] == "active"


@responses.activate
def test_an_expired_token_reads_as_expired_on_the_card(signed_in, user):
    seeded(user, age_hours=24 * 70, expires_in_days=-3)
    page = signed_in.get("/settings").content.decode()
    assert "(expired 3 days ago)" in page and "(in less than a minute)" not in page


@responses.activate
def test_expired_token_needs_reconnection_without_a_call(api, user):
    seeded(user, age_hours=24 * 70, expires_in_days=-1)
    assert api.get("/api/platform/threads/refresh").status_code == 502
    assert len(responses.calls) == 0
    health = stored(user)["health"]
    assert health["status"] == "expired" and health["needsReconnection"]


@pytest.mark.parametrize("error, status", [(fx.error(190, 460), "revoked"), (fx.error(190, 463), "expired"), (fx.error(2), "active")])
@responses.activate
def test_meta_errors_map_to_health(api, user, error, status):
    seeded(user, age_hours=2)
    before = stored(user)["auth"]
    responses.replace(responses.GET, f"{GRAPH}/v1.0/me", status=400, json=error)
    api.get("/api/platform/threads/refresh")
    doc = stored(user)
    assert doc["health"]["status"] == status and doc["auth"] == before


@responses.activate
def test_disconnect_links_to_threads_settings_and_calls_nothing(api, user):
    seeded(user, age_hours=2)
    message = api.delete("/api/platform/threads/disconnect").json()["message"]
    assert "threads.net/settings" in message and len(responses.calls) == 0
    assert stored(user) == {"connected": False}


@responses.activate
def test_disconnecting_threads_leaves_facebook_alone(api, user):
    from .conftest import seed_connection

    seed_connection(user, "facebook", handle="page", identifiers={"platformId": "101"})
    seeded(user, age_hours=2)
    api.delete("/api/platform/threads/disconnect")
    assert account_for(user).document("facebook")["connected"] is True


@pytest.mark.parametrize("picture", ["javascript:alert(document.cookie)", "data:image/svg+xml;base64,PHN2Zz4=",
                                     "//evil.example/a.png", "  JAVASCRIPT:alert(1)"])
@responses.activate
def test_an_avatar_that_is_not_a_web_address_is_dropped(api, signed_in, user, picture):
    """Issue 13, item 14: only http(s) avatars are stored, so no page ever renders another scheme."""
    seeded(user, age_hours=2)
    responses.replace(responses.GET, f"{GRAPH}/v1.0/me", json={**fx.THREADS_ME, "threads_profile_picture_url": picture})
    assert api.get("/api/platform/threads/refresh").json()["data"]["profile"]["avatar"] == ""
    assert stored(user)["profile"]["avatar"] == ""
    assert picture.strip() not in signed_in.get("/settings").content.decode()
