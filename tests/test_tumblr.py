"""Tumblr OAuth 1.0a: request token held server-side, callback checks, blogs (security cases 18-19)."""
import importlib

import pytest
import requests
import responses
from django.test import Client

from platforms.models import PendingFlow
from platforms.services import account_for

from .conftest import SENTINEL
from .fixtures import tumblr as fx
from .oauth_helpers import callback, query_of, start

pytestmark = pytest.mark.django_db
WWW, API = "https://www.tumblr.com", "https://api.tumblr.com"


def serve(rsps):
    rsps.post(f"{WWW}/oauth/request_token", body=fx.REQUEST_TOKEN, content_type="application/x-www-form-urlencoded")
    rsps.post(f"{WWW}/oauth/access_token", body=fx.ACCESS_TOKEN, content_type="application/x-www-form-urlencoded")
    rsps.get(f"{API}/v2/user/info", json=fx.USER_INFO)


def stored(user):
    return account_for(user).document("tumblr")


def header(call) -> str:
    value = call.request.headers["Authorization"]
    return value.decode() if isinstance(value, bytes) else value


def calls_to(path):
    return [c for c in responses.calls if c.request.url.split("?")[0].endswith(path)]


@responses.activate
def test_connect_links_the_primary_blog(signed_in, user):
    serve(responses)
    url = start(signed_in, "tumblr")
    assert url == f"{WWW}/oauth/authorize?oauth_token=SENTINEL-7f3a9c-reqtoken"
    assert "oauth_callback" in header(calls_to("/oauth/request_token")[0])
    assert SENTINEL not in PendingFlow.objects.get().payload  # the request secret is encrypted
    response = callback(signed_in, "tumblr", oauth_token="SENTINEL-7f3a9c-reqtoken", oauth_verifier="SENTINEL-7f3a9c-verifier")
    assert response["Location"] == "/settings?success=tumblr_connected"
    signed = header(calls_to("/oauth/access_token")[0])
    assert 'oauth_verifier="SENTINEL-7f3a9c-verifier"' in signed and 'oauth_token="SENTINEL-7f3a9c-reqtoken"' in signed
    assert 'oauth_token="SENTINEL-7f3a9c-access"' in header(calls_to("/v2/user/info")[0])
    doc = stored(user)
    assert doc["blogHostname"] == "derekg.org" and doc["blogUuid"] == "t:primary-uuid"
    assert doc["accountKey"] == "t:primary-uuid"  # the primary blog's uuid: names can be renamed
    assert doc["profile"] == {"displayName": "Derek Gottfrid", "handle": "derekg", "avatar": f"{API}/v2/blog/derekg.org/avatar/128"}
    assert SENTINEL not in str(doc) and not PendingFlow.objects.exists()


@responses.activate
def test_flow_finishes_on_another_worker(user):
    """Case 18: nothing lives in process memory; a reloaded module and a new client finish the flow."""
    serve(responses)
    first = Client()
    first.force_login(user)
    start(first, "tumblr")
    import platforms.providers as registry
    import platforms.providers.tumblr as module

    importlib.reload(module)
    importlib.reload(registry)
    second = Client()
    second.cookies = first.cookies  # the same browser, served by another process
    response = callback(second, "tumblr", oauth_token="SENTINEL-7f3a9c-reqtoken", oauth_verifier="v")
    assert response["Location"] == "/settings?success=tumblr_connected"


@responses.activate
def test_token_and_verifier_from_another_session_or_anonymous_are_rejected(signed_in, user, other_user):
    """Case 19."""
    serve(responses)
    start(signed_in, "tumblr")
    attacker = Client()
    attacker.force_login(other_user)
    for client in (attacker, Client()):
        response = callback(client, "tumblr", oauth_token="SENTINEL-7f3a9c-reqtoken", oauth_verifier="v")
        assert response.status_code == 302 and "success" not in response["Location"]
    assert calls_to("/oauth/access_token") == []
    assert stored(user) == {} and stored(other_user) == {}


@pytest.mark.parametrize(
    "params, error",
    [
        ({"oauth_token": "SENTINEL-7f3a9c-reqtoken"}, "missing_code"),
        ({"oauth_token": "some-other-token", "oauth_verifier": "v"}, "invalid_state"),
        ({"denied": "SENTINEL-7f3a9c-reqtoken"}, "connection_cancelled"),
        ({"oauth_verifier": "v"}, "invalid_state"),
    ],
)
@responses.activate
def test_bad_callbacks_are_refused_without_exchange(signed_in, user, params, error):
    serve(responses)
    start(signed_in, "tumblr")
    assert callback(signed_in, "tumblr", **params)["Location"] == f"/settings?error={error}"
    assert calls_to("/oauth/access_token") == [] and stored(user) == {}


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 401, "body": "oauth_signature does not match expected value"},
        {"status": 500, "body": "<html>oops</html>"},
        {"status": 200, "body": "oauth_token=only-a-token"},
        {"body": requests.exceptions.ReadTimeout()},
    ],
)
@responses.activate
def test_access_token_step_failures_store_nothing(signed_in, user, reply):
    serve(responses)
    responses.replace(responses.POST, f"{WWW}/oauth/access_token", **reply)
    start(signed_in, "tumblr")
    response = callback(signed_in, "tumblr", oauth_token="SENTINEL-7f3a9c-reqtoken", oauth_verifier="v")
    assert response["Location"] == "/settings?error=platform_error"
    assert stored(user) == {}
    page = signed_in.get("/settings").content.decode()
    assert SENTINEL not in page


@responses.activate
def test_refresh_makes_one_call_and_keeps_the_chosen_blog(signed_in, user):
    serve(responses)
    start(signed_in, "tumblr")
    callback(signed_in, "tumblr", oauth_token="SENTINEL-7f3a9c-reqtoken", oauth_verifier="v")
    assert signed_in.post("/settings/tumblr/choose", {"choice": "t:second-uuid"})["Location"] == "/settings?success=tumblr_updated"
    assert stored(user)["blogHostname"] == "ihatehipstrz.tumblr.com"
    page = signed_in.get("/settings").content.decode()
    assert '<option value="t:second-uuid" selected>' in page and '<option value="t:primary-uuid">' in page
    before = len(responses.calls)
    signed_in.post("/settings/tumblr/refresh")
    assert len(responses.calls) == before + 1
    assert stored(user)["blogUuid"] == "t:second-uuid"
    assert signed_in.post("/settings/tumblr/choose", {"choice": "t:not-mine"})["Location"] == "/settings?error=invalid_input"


@responses.activate
def test_revoked_access_is_seen_at_refresh(signed_in, user):
    serve(responses)
    start(signed_in, "tumblr")
    callback(signed_in, "tumblr", oauth_token="SENTINEL-7f3a9c-reqtoken", oauth_verifier="v")
    before = stored(user)["auth"]
    responses.replace(responses.GET, f"{API}/v2/user/info", status=401,
                      json={"meta": {"status": 401, "msg": "Unauthorized"}, "response": []})
    signed_in.post("/settings/tumblr/refresh")
    doc = stored(user)
    assert doc["health"]["status"] == "revoked" and doc["health"]["needsReconnection"] and doc["auth"] == before


@responses.activate
def test_disconnect_forgets_and_points_to_tumblr_settings(signed_in, user):
    serve(responses)
    start(signed_in, "tumblr")
    callback(signed_in, "tumblr", oauth_token="SENTINEL-7f3a9c-reqtoken", oauth_verifier="v")
    calls = len(responses.calls)
    page = signed_in.post("/settings/tumblr/disconnect", follow=True).content.decode()
    assert "https://www.tumblr.com/settings/apps" in page and len(responses.calls) == calls
    assert stored(user) == {"connected": False}


def test_unconfigured_tumblr_says_so(signed_in, settings):
    settings.TUMBLR_CONSUMER_KEY = ""
    page = signed_in.get("/settings").content.decode()
    card = page.split('id="platform-tumblr"')[1].split("</article>")[0]
    assert "Not configured by the administrator" in card and "Connect Tumblr" not in card
    response = signed_in.post("/settings/tumblr/connect")
    assert response["Location"] == "/settings?error=not_configured"
