"""Threads: code -> short-lived -> long-lived token -> profile; renewal after 24 hours; no revoke API."""
from datetime import timedelta

import pytest
import requests
import responses
from django.utils import timezone
from responses import matchers

from platforms.documents import iso, read_auth
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
    expires = doc["expiresAt"]
    assert expires and timezone.now() + timedelta(days=59) < __import__("platforms.documents").documents.parse_iso(expires)
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
    assert data["health"]["status"] == "active" and data["expiresAt"]


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
