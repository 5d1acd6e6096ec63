"""Mastodon on any server: registration, PKCE, callback, refresh, disconnect (recorded replies)."""
import pytest
import requests
import responses
from django.test import Client

from platforms.models import MastodonApp, SocialAccount
from platforms.services import account_for

from .conftest import SENTINEL, seed_connection
from .fixtures import mastodon as fx
from .oauth_helpers import callback, form_of, query_of, start

pytestmark = pytest.mark.django_db
S = "https://social.example"


def serve_server(rsps, base=S, *, well_known=True, account=fx.ACCOUNT, v2=True):
    if well_known:
        rsps.get(f"{base}/.well-known/oauth-authorization-server", json=fx.WELL_KNOWN)
    else:
        rsps.get(f"{base}/.well-known/oauth-authorization-server", status=404, body="<html>Not Found</html>")
    rsps.post(f"{base}/api/v1/apps", json=fx.APP)
    rsps.post(f"{base}/oauth/token", json=fx.TOKEN)
    rsps.get(f"{base}/api/v1/accounts/verify_credentials", json=account)
    if v2:
        rsps.get(f"{base}/api/v2/instance", json=fx.INSTANCE_V2)
    else:
        rsps.get(f"{base}/api/v2/instance", status=404, json={"error": "Record not found"})
        rsps.get(f"{base}/api/v1/instance", json=fx.INSTANCE_V1)
    rsps.post(f"{base}/oauth/revoke", json={})


def connect(client, instance="social.example", code="SENTINEL-7f3a9c-code"):
    url = start(client, "mastodon", instance=instance)
    return url, callback(client, "mastodon", code=code, state=query_of(url)["state"])


def stored(user, platform="mastodon"):
    return account_for(user).document(platform)


@responses.activate
def test_connect_registers_once_uses_pkce_and_stores_profile_and_limits(signed_in, user):
    serve_server(responses)
    url, response = connect(signed_in)
    assert response.status_code == 302 and response["Location"] == "/settings?success=mastodon_connected"

    params = query_of(url)
    assert url.startswith(f"{S}/oauth/authorize?")
    assert params["client_id"] == fx.APP["client_id"]
    assert params["redirect_uri"] == "http://testserver/api/platform/mastodon/callback"
    assert params["scope"] == "profile write:media write:statuses"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43

    token_call = next(c for c in responses.calls if c.request.url == f"{S}/oauth/token")
    form = form_of(token_call)
    assert form["code"] == "SENTINEL-7f3a9c-code" and form["redirect_uri"] == params["redirect_uri"]
    assert form["client_secret"] == fx.APP["client_secret"] and len(form["code_verifier"]) >= 43

    doc = stored(user)
    assert doc["connected"] and doc["instanceUrl"] == S and doc["accountId"] == "109876543210"
    assert doc["profile"] == {
        "displayName": "Your Name", "handle": "yourname",
        "avatar": "https://files.social.example/accounts/avatars/static.png",
        "description": "Writes about things.",
    }
    assert doc["limits"] == {"maxCharacters": 1000, "maxMediaAttachments": 6}
    assert SENTINEL not in str(doc)
    app = MastodonApp.objects.get(server=S)
    assert SENTINEL not in app.client_secret  # encrypted

    # A second user on the same server reuses the registration.
    other = Client()
    other.force_login(type(user).objects.create_user("bob", password="pw-long-enough-1"))
    connect(other, instance="@bob@social.example", code="SENTINEL-7f3a9c-code2")
    assert sum(c.request.url == f"{S}/api/v1/apps" for c in responses.calls) == 1


@responses.activate
def test_older_server_without_discovery_works_without_pkce(signed_in, user):
    serve_server(responses, "https://old.example", well_known=False, v2=False)
    url, response = connect(signed_in, instance="https://old.example/")
    params = query_of(url)
    assert "code_challenge" not in params and params["scope"] == "read write push"
    assert "code_verifier" not in form_of(next(c for c in responses.calls if c.request.url.endswith("/oauth/token")))
    assert stored(user)["limits"] == {"maxCharacters": 640, "maxMediaAttachments": 4}


@responses.activate
def test_other_software_with_text_ids_and_missing_fields(signed_in, user):
    serve_server(responses, "https://gts.example", well_known=False, account=fx.ACCOUNT_OTHER_SOFTWARE)
    responses.replace(responses.GET, "https://gts.example/api/v2/instance", json={"domain": "gts.example"})
    connect(signed_in, instance="gts.example")
    doc = stored(user)
    assert doc["accountId"] == "01HB8W3Z1N5Q5VJ0S1A2B3C4D5"
    assert doc["profile"] == {"displayName": "ulid_user", "handle": "ulid_user", "avatar": "https://gts.example/fileserver/avatar.webp"}
    assert doc["limits"] == {"maxCharacters": 500, "maxMediaAttachments": 4}
    # Revoke answering an empty body is a success.
    responses.replace(responses.POST, "https://gts.example/oauth/revoke", body="")
    response = signed_in.post("/settings/mastodon/disconnect", follow=True)
    assert "access revoked" in response.content.decode()


@responses.activate
def test_administrators_default_server_is_used_when_none_is_typed(signed_in, user):
    base = "https://mastodon.example"
    serve_server(responses, base, well_known=False)
    url, response = connect(signed_in, instance="")
    assert query_of(url)["client_id"] == "mastodon-default-client-id"
    assert query_of(url)["scope"] == "read write push"
    assert not any(c.request.url.endswith("/api/v1/apps") for c in responses.calls)
    assert form_of(next(c for c in responses.calls if c.request.url.endswith("/oauth/token")))["client_secret"] == (
        "mastodon-default-client-secret"
    )
    assert stored(user)["instanceUrl"] == base


@responses.activate
def test_forgotten_registration_is_replaced_on_next_connect(signed_in, user):
    serve_server(responses)
    responses.replace(responses.POST, f"{S}/oauth/token", status=401,
                      json={"error": "invalid_client", "error_description": "Client authentication failed"})
    _, response = connect(signed_in)
    assert response["Location"] == "/settings?error=platform_error"
    assert not MastodonApp.objects.exists() and not stored(user).get("connected")
    responses.replace(responses.POST, f"{S}/oauth/token", json=fx.TOKEN)
    connect(signed_in)
    assert stored(user)["connected"]
    assert sum(c.request.url == f"{S}/api/v1/apps" for c in responses.calls) == 2


@pytest.mark.parametrize(
    "instance",
    [
        "http://social.example", "127.0.0.1", "https://10.0.0.8", "169.254.169.254", "metadata.example",
        "intranet.example", "sneaky.example", "user@social.example:443@evil", "https://me:pw@social.example",
        "social.example:8443", "https://social.example/path", "localhost", "[::1]", "not a host", "unknown.example",
    ],
)
@responses.activate
def test_unsafe_servers_are_refused_before_any_request(signed_in, user, instance):
    """Security case 31."""
    response = signed_in.post("/settings/mastodon/connect", {"instance": instance})
    assert response.status_code == 302 and response["Location"] == "/settings?error=invalid_server"
    assert len(responses.calls) == 0


@responses.activate
def test_api_connect_returns_the_authorization_url(api):
    serve_server(responses)
    response = api.get("/api/platform/mastodon/connect", {"instance": "social.example"})
    assert response.status_code == 200
    assert response.json()["data"]["url"].startswith(f"{S}/oauth/authorize?")
    assert api.get("/api/platform/mastodon/connect", {"instance": "10.0.0.1"}).status_code == 400


def connected(user):
    seed_connection(user, "mastodon", handle="yourname",
                    auth={"accessToken": f"{SENTINEL}-access", "clientId": "mastodon-default-client-id"},
                    identifiers={"instanceUrl": "https://mastodon.example", "accountId": "1"},
                    limits={"maxCharacters": 500, "maxMediaAttachments": 4})
    return stored(user)


@responses.activate
def test_refresh_updates_the_profile(signed_in, user):
    connected(user)
    responses.get("https://mastodon.example/api/v1/accounts/verify_credentials",
                  json={**fx.ACCOUNT, "id": "1", "display_name": "New Name"})
    response = signed_in.post("/settings/mastodon/refresh")
    assert response["Location"] == "/settings?success=mastodon_refreshed"
    assert stored(user)["profile"]["displayName"] == "New Name"
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {SENTINEL}-access"


@pytest.mark.parametrize(
    "reply",
    [{"status": 500, "json": {}}, {"status": 502, "body": "<html>Bad gateway</html>"},
     {"body": requests.exceptions.ReadTimeout()}, {"body": requests.exceptions.ConnectionError("reset")},
     {"status": 200, "body": "not json"}, {"status": 200, "json": {"token_type": "Bearer", "scope": "read"}},
     {"status": 200, "json": {"error": "server_error"}}],
)
@responses.activate
def test_a_failed_code_exchange_says_so_and_keeps_the_connection(signed_in, user, reply):
    """Case 20: whatever the token endpoint does wrong, a readable message and nothing written."""
    seed_connection(user, "mastodon", handle="yourname", identifiers={"instanceUrl": S, "accountId": "1"})
    before = stored(user)
    serve_server(responses)
    responses.replace(responses.POST, f"{S}/oauth/token", **reply)
    _, response = connect(signed_in)
    assert response["Location"] == "/settings?error=platform_error"
    page = signed_in.get(response["Location"]).content.decode()
    assert "Mastodon" in page and "flash error" in page
    assert stored(user) == before


@pytest.mark.parametrize(
    "reply, status, needs",
    [
        ({"status": 401, "json": {"error": "The access token was revoked"}}, "revoked", True),
        # Transient failures keep the status until they repeat (platforms/health.py).
        ({"status": 503, "body": "<html>Bad gateway</html>"}, "active", False),
        ({"status": 200, "body": "not json"}, "active", False),
        ({"body": requests.exceptions.ConnectTimeout()}, "active", False),
        ({"body": requests.exceptions.ConnectionError("reset")}, "active", False),
    ],
)
@responses.activate
def test_failed_refresh_sets_health_and_keeps_old_tokens(api, user, reply, status, needs):
    before = connected(user)
    responses.get("https://mastodon.example/api/v1/accounts/verify_credentials", **reply)
    response = api.get("/api/platform/mastodon/refresh")
    assert response.status_code == 502 and response.json()["success"] is False
    after = stored(user)
    assert after["auth"] == before["auth"] and after["connected"]
    assert after["health"]["status"] == status and after["health"]["needsReconnection"] is needs
    assert after["health"]["reason"]
    assert api.get("/api/platform/find").json()["data"]["mastodon"]["health"]["status"] == status


@responses.activate
def test_repeated_transient_failures_escalate_to_error_and_a_success_clears_them(api, user):
    connected(user)
    responses.get("https://mastodon.example/api/v1/accounts/verify_credentials", status=502)
    statuses = [api.get("/api/platform/mastodon/refresh") and stored(user)["health"]["status"] for _ in range(3)]
    assert statuses == ["active", "active", "error"]
    assert stored(user)["health"]["needsReconnection"] is False
    responses.replace(responses.GET, "https://mastodon.example/api/v1/accounts/verify_credentials",
                      json={**fx.ACCOUNT, "id": "1"})
    api.get("/api/platform/mastodon/refresh")
    assert stored(user)["health"] == {**stored(user)["health"], "status": "active", "reason": "", "consecutiveFailures": 0}


@responses.activate
def test_disconnect_revokes_the_token_once(signed_in, user):
    connected(user)
    responses.post("https://mastodon.example/oauth/revoke", json={})
    response = signed_in.post("/settings/mastodon/disconnect", follow=True)
    assert "access revoked" in response.content.decode()
    assert len(responses.calls) == 1
    assert form_of(responses.calls[0]) == {
        "client_id": "mastodon-default-client-id",
        "client_secret": "mastodon-default-client-secret",
        "token": f"{SENTINEL}-access",
    }
    assert stored(user) == {"connected": False}


@pytest.mark.parametrize("reply", [{"status": 500}, {"body": requests.exceptions.ReadTimeout()}])
@responses.activate
def test_failed_revocation_still_forgets_and_says_so(signed_in, user, reply):
    """Security case 26."""
    connected(user)
    responses.post("https://mastodon.example/oauth/revoke", **reply)
    page = signed_in.post("/settings/mastodon/disconnect", follow=True).content.decode()
    assert "revoking its access at Mastodon failed" in page
    assert stored(user) == {"connected": False}


def test_disconnect_is_post_only(signed_in):
    assert signed_in.get("/settings/mastodon/disconnect").status_code == 405


@responses.activate
def test_account_linked_to_another_user_is_refused(signed_in, user, other_user):
    """Security case 11."""
    seed_connection(other_user, "mastodon", handle="yourname", identifiers={"instanceUrl": S})
    account = SocialAccount.objects.get(user=other_user)
    doc = account.document("mastodon")
    doc["accountKey"] = f"{S}|109876543210"
    account.set_document("mastodon", doc)
    account.save()
    serve_server(responses)
    _, response = connect(signed_in)
    assert response["Location"] == "/settings?error=account_in_use"
    assert not stored(user).get("connected")
    assert stored(other_user)["accountKey"] == f"{S}|109876543210"
