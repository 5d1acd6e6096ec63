"""Mastodon on any server: registration, PKCE, callback, refresh, disconnect (recorded replies)."""
import html

import pytest
import requests
import responses
from django.test import Client
from responses import matchers

from platforms import crypto
from platforms.models import MastodonApp, SocialAccount
from platforms.providers.mastodon import server_id
from platforms.providers.mastodon_instance import DEFAULT_LIMITS
from platforms.services import account_for

from .conftest import SENTINEL, seed_connection
from .fixtures import mastodon as fx
from .oauth_helpers import callback, form_of, query_of, start

pytestmark = pytest.mark.django_db
S = "https://social.example"
CALLBACK = "http://testserver/api/platform/mastodon/callback"
LIMITS_V2 = {  # what fx.INSTANCE_V2 says, as the composer will read it
    "maxCharacters": 1000, "maxMediaAttachments": 6, "charactersReservedPerUrl": 23,
    "imageSizeLimit": 16777216, "imageMatrixLimit": 33177600, "videoSizeLimit": 103809024, "videoMatrixLimit": 8294400,
    "supportedMimeTypes": fx.INSTANCE_V2["configuration"]["media_attachments"]["supported_mime_types"],
}


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
    assert params["redirect_uri"] == f"{CALLBACK}/{server_id(S)}"  # this server's own (case 39)
    assert form_of(next(c for c in responses.calls if c.request.url == f"{S}/api/v1/apps"))["redirect_uris"] == (
        params["redirect_uri"])
    assert params["scope"] == "profile write:statuses write:media"  # `profile` is advertised: the narrowest
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43

    token_call = next(c for c in responses.calls if c.request.url == f"{S}/oauth/token")
    form = form_of(token_call)
    assert form["code"] == "SENTINEL-7f3a9c-code" and form["redirect_uri"] == params["redirect_uri"]
    assert form["client_secret"] == fx.APP["client_secret"] and len(form["code_verifier"]) >= 43

    doc = stored(user)
    assert doc["connected"] and doc["instanceUrl"] == S and doc["accountId"] == "109876543210"
    assert doc["accountKey"] == "https://social.example/users/yourname"  # the account's own URI (case 48)
    assert doc["profile"] == {
        "displayName": "Your Name", "handle": "yourname",
        "avatar": "https://files.social.example/accounts/avatars/static.png",
        "description": "Writes about things.",
    }
    assert doc["limits"] == LIMITS_V2 and doc["software"] == {"name": "Mastodon", "version": "4.4.0"}
    assert SENTINEL not in str(doc)
    app = MastodonApp.objects.get(server=S)
    assert SENTINEL not in app.client_secret  # encrypted

    # A second user on the same server reuses the registration.
    other = Client()
    other.force_login(type(user).objects.create_user("bob", password="pw-long-enough-1"))
    connect(other, instance="@bob@social.example", code="SENTINEL-7f3a9c-code2")
    assert sum(c.request.url == f"{S}/api/v1/apps" for c in responses.calls) == 1


@responses.activate
def test_older_server_without_discovery_still_gets_pkce_and_granular_scopes(signed_in, user):
    """Issue 12, item 10: S256 always (Takahē and GoToSocial serve no discovery document), and
    granular scopes where `profile` is not advertised; never `push`."""
    serve_server(responses, "https://old.example", well_known=False, v2=False)
    url, response = connect(signed_in, instance="https://old.example/")
    params = query_of(url)
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["scope"] == "read:accounts write:statuses write:media"
    registered = form_of(next(c for c in responses.calls if c.request.url.endswith("/api/v1/apps")))
    assert registered["scopes"] == params["scope"]
    assert len(form_of(next(c for c in responses.calls if c.request.url.endswith("/oauth/token")))["code_verifier"]) >= 43
    assert stored(user)["limits"] == {**DEFAULT_LIMITS, "maxCharacters": 640, "maxMediaAttachments": 4}


@responses.activate
def test_a_server_refusing_granular_scopes_is_registered_with_read_write(signed_in, user):
    serve_server(responses, "https://old.example", well_known=False, v2=False)
    responses.replace(responses.POST, "https://old.example/api/v1/apps", status=422,
                      json={"error": "Validation failed: Scopes must be valid"},
                      match=[matchers.urlencoded_params_matcher({"scopes": "read:accounts write:statuses write:media"},
                                                                allow_blank=False, strict_match=False)])
    responses.post("https://old.example/api/v1/apps", json=fx.APP)
    url, response = connect(signed_in, instance="old.example")
    assert query_of(url)["scope"] == "read write" and response["Location"].endswith("success=mastodon_connected")
    assert MastodonApp.objects.get(server="https://old.example").scopes == "read write"


@responses.activate
def test_the_scopes_setting_overrides_the_automatic_choice(signed_in, user, settings):
    settings.MASTODON_SCOPES = "read write push"
    serve_server(responses)
    url, _ = connect(signed_in)
    assert query_of(url)["scope"] == "read write push"
    assert form_of(next(c for c in responses.calls if c.request.url.endswith("/api/v1/apps")))["scopes"] == "read write push"


@responses.activate
def test_other_software_with_text_ids_and_missing_fields(signed_in, user):
    serve_server(responses, "https://gts.example", well_known=False, account=fx.ACCOUNT_OTHER_SOFTWARE)
    responses.replace(responses.GET, "https://gts.example/api/v2/instance", json={"domain": "gts.example"})
    connect(signed_in, instance="gts.example")
    doc = stored(user)
    assert doc["accountId"] == "01HB8W3Z1N5Q5VJ0S1A2B3C4D5"
    assert doc["profile"] == {"displayName": "ulid_user", "handle": "ulid_user", "avatar": "https://gts.example/fileserver/avatar.webp"}
    assert doc["limits"] == DEFAULT_LIMITS and "software" not in doc
    assert doc["accountKey"] == "https://gts.example|01HB8W3Z1N5Q5VJ0S1A2B3C4D5"  # no URI sent: server and id
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
    assert query_of(url)["redirect_uri"] == CALLBACK  # the administrator's registration, as configured
    assert query_of(url)["scope"] == "read:accounts write:statuses write:media"
    assert response["Location"] == "/settings?success=mastodon_connected"
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
    assert not stored(user).get("connected")
    responses.replace(responses.POST, f"{S}/oauth/token", json=fx.TOKEN)
    connect(signed_in)
    assert stored(user)["connected"]
    assert sum(c.request.url == f"{S}/api/v1/apps" for c in responses.calls) == 2
    assert MastodonApp.objects.count() == 1


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
    assert "unexpected problem" not in page  # Hayon read the reply and says what was wrong with it
    assert stored(user) == before


@pytest.mark.parametrize(
    "reply, status, needs",
    [
        ({"status": 401, "json": {"error": "The access token was revoked"}}, "revoked", True),
        # Issue 12, item 8: Takahē says so with a 400; OAuth's own code; a disabled account.
        ({"status": 400, "json": {"error": "Invalid Bearer token"}}, "revoked", True),
        ({"status": 400, "json": {"error": "invalid_token"}}, "revoked", True),
        ({"status": 401, "body": "", "headers": {"WWW-Authenticate": 'Bearer error="invalid_token"'}}, "revoked", True),
        ({"status": 403, "json": {"error": "Your login is currently disabled"}}, "revoked", True),
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
    serve_server(responses)
    other = Client()
    other.force_login(other_user)
    assert connect(other, instance="social.example:443")[1]["Location"] == "/settings?success=mastodon_connected"
    _, response = connect(signed_in, instance="https://SOCIAL.example/")
    assert response["Location"] == "/settings?error=account_in_use"
    assert not stored(user).get("connected")
    assert stored(other_user)["accountKey"] == "https://social.example/users/yourname"


# -- one app per server, however it is typed (issue 12, item 13) --------------------------------------
@responses.activate
def test_one_registration_per_server_however_it_is_typed(signed_in):
    serve_server(responses)
    for typed in ("social.example", "https://social.example/", "social.example:443", "SOCIAL.example.", "@me@social.example"):
        url = start(signed_in, "mastodon", instance=typed)
        assert url.startswith(f"{S}/oauth/authorize?")
    assert sum(c.request.url == f"{S}/api/v1/apps" for c in responses.calls) == 1
    assert list(MastodonApp.objects.values_list("server", flat=True)) == [S]


@responses.activate
def test_a_registration_with_the_old_shared_redirect_uri_is_replaced_and_its_tokens_stay_revocable(signed_in, user):
    """Apps registered before case 39 all share one redirect URI: registered again with this server's
    own; the old secret is kept so that tokens issued under it can still be revoked."""
    MastodonApp.objects.create(server=S, client_id="old-client", client_secret=crypto.encrypt({"secret": "old-secret"}),
                               scopes="read write push", redirect_uri=CALLBACK)
    serve_server(responses)
    url = start(signed_in, "mastodon", instance="social.example")
    app = MastodonApp.objects.get(server=S)
    assert app.client_id == fx.APP["client_id"] and app.redirect_uri == f"{CALLBACK}/{server_id(S)}"
    assert query_of(url)["redirect_uri"] == app.redirect_uri
    seed_connection(user, "mastodon", auth={"accessToken": f"{SENTINEL}-old", "clientId": "old-client"},
                    identifiers={"instanceUrl": S, "accountId": "1"})
    page = signed_in.post("/settings/mastodon/disconnect", follow=True).content.decode()
    assert "access revoked" in page
    revoke = form_of(next(c for c in responses.calls if c.request.url == f"{S}/oauth/revoke"))
    assert revoke == {"client_id": "old-client", "client_secret": "old-secret", "token": f"{SENTINEL}-old"}


# -- what the composer needs, read again on refresh (issue 12, item 9) ----------------------------------
@responses.activate
def test_refresh_rereads_the_limits_and_keeps_them_when_the_server_will_not_say(api, user):
    connected(user)
    base = "https://mastodon.example"
    responses.get(f"{base}/api/v1/accounts/verify_credentials", json={**fx.ACCOUNT, "id": "1"})
    raised = {**fx.INSTANCE_V2, "configuration": {**fx.INSTANCE_V2["configuration"], "statuses": {
        "max_characters": 5000, "max_media_attachments": 6, "characters_reserved_per_url": 23}}}
    responses.get(f"{base}/api/v2/instance", json=raised)
    assert api.get("/api/platform/mastodon/refresh").status_code == 200
    assert stored(user)["limits"] == {**LIMITS_V2, "maxCharacters": 5000}
    assert api.get("/api/platform/find").json()["data"]["mastodon"]["limits"]["maxCharacters"] == 5000

    responses.replace(responses.GET, f"{base}/api/v2/instance", status=503, body="<html>down</html>")
    responses.get(f"{base}/api/v1/instance", status=404, json={"error": "Record not found"})
    response = api.get("/api/platform/mastodon/refresh")
    assert response.status_code == 200 and response.json()["success"] is True  # limits do not fail a refresh
    after = stored(user)
    assert after["limits"]["maxCharacters"] == 5000 and after["health"]["status"] == "active"
    assert after["software"] == {"name": "Mastodon", "version": "4.4.0"}


def test_limits_and_software_of_other_servers():
    from platforms.providers.mastodon_instance import extract_limits, extract_software

    takahe = extract_limits(fx.INSTANCE_V2_TAKAHE)
    assert takahe["videoSizeLimit"] == 0 and not [t for t in takahe["supportedMimeTypes"] if t.startswith("video/")]
    assert takahe["charactersReservedPerUrl"] == 23 and takahe["imageMatrixLimit"] == 4000000
    assert extract_software(fx.INSTANCE_V2_TAKAHE) == {"name": "Takahē", "version": "0.11.0"}
    gts = extract_limits(fx.INSTANCE_V2_GOTOSOCIAL)
    assert gts["charactersReservedPerUrl"] == 25 and gts["maxCharacters"] == 5000 and "video/mp4" in gts["supportedMimeTypes"]
    assert extract_software(fx.INSTANCE_V2_GOTOSOCIAL) == {"name": "GoToSocial", "version": "0.19.0"}
    assert extract_software({"version": "2.7.2 (compatible; Pleroma 2.5.0)"}) == {"name": "Pleroma", "version": "2.5.0"}
    assert extract_software({"version": "4.4.0", "source_url": "javascript:alert(1)//<b>"}) is None


@pytest.mark.parametrize(
    "v2",
    [
        {"json": {**fx.INSTANCE_V2, "configuration": []}},  # issue 13, item 7: a list
        {"json": [fx.INSTANCE_V2]},
        {"json": {"configuration": {"statuses": [], "media_attachments": "big"}}},
        {"json": {"configuration": {"statuses": {"max_characters": "lots", "max_media_attachments": True,
                                                 "characters_reserved_per_url": -5}}}},
        {"body": "[" * 100000},
    ],
)
@responses.activate
def test_a_malformed_instance_reply_never_fails_a_connect(signed_in, user, v2):
    serve_server(responses, v2=False)
    responses.replace(responses.GET, f"{S}/api/v2/instance", **v2)
    responses.replace(responses.GET, f"{S}/api/v1/instance", status=404, json={"error": "Record not found"})
    _, response = connect(signed_in)
    assert response["Location"] == "/settings?success=mastodon_connected"
    limits = stored(user)["limits"]
    assert limits["maxCharacters"] == 500 and limits["maxMediaAttachments"] == 4 and limits["charactersReservedPerUrl"] == 23
    assert not any(c.request.url == f"{S}/oauth/revoke" for c in responses.calls)


@responses.activate
def test_a_malformed_v2_falls_back_to_v1(signed_in, user):
    serve_server(responses, v2=False)
    responses.replace(responses.GET, f"{S}/api/v2/instance", json={**fx.INSTANCE_V2, "configuration": []})
    connect(signed_in)
    assert stored(user)["limits"]["maxCharacters"] == 640


@pytest.mark.parametrize("failure", ["account", "unexpected"])
@responses.activate
def test_a_failure_after_the_code_exchange_revokes_the_new_token(signed_in, user, monkeypatch, failure):
    """Issue 13, item 7: nothing stores the token, so nothing may leave it alive."""
    serve_server(responses)
    if failure == "account":
        responses.replace(responses.GET, f"{S}/api/v1/accounts/verify_credentials", status=502, body="<html>oops</html>")
    else:
        def explode(data):
            raise RuntimeError("a reply nobody foresaw")
        monkeypatch.setattr("platforms.providers.mastodon.extract_profile", explode)
    _, response = connect(signed_in)
    assert response["Location"] == "/settings?error=platform_error"
    assert not stored(user).get("connected")
    revokes = [form_of(c) for c in responses.calls if c.request.url == f"{S}/oauth/revoke"]
    assert revokes == [{"client_id": fx.APP["client_id"], "client_secret": fx.APP["client_secret"],
                        "token": fx.TOKEN["access_token"]}]


# -- the server's words are the server's (issue 13, item 11) ---------------------------------------------
@responses.activate
def test_an_error_description_is_quoted_and_attributed_never_spoken_by_hayon(signed_in, user):
    serve_server(responses)
    state = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    hostile = ("Your Hayon session expired. Sign in again at https://hayon-login.example/signin to keep your "
               "accounts connected, then come back here and press Connect once more.")
    response = callback(signed_in, "mastodon", state=state, error="server_error", error_description=hostile)
    assert response["Location"] == "/settings?error=authorization_failed"
    page = html.unescape(signed_in.get(response["Location"]).content.decode())
    flash = page[page.index("social.example did not authorize Hayon"):]
    flash = flash[: flash.index("</")]
    assert flash.startswith("social.example did not authorize Hayon (error code: server_error). Please connect again. "
                            "social.example said: “Your Hayon session expired.")
    assert flash.endswith("…”") and len(flash) < 200  # Hayon's sentence first; theirs quoted, shortened
    assert "hayon-login.example" not in page and "press Connect once more" not in page  # no links; shortened
    assert not any(c.request.url.endswith("/oauth/token") for c in responses.calls)


@responses.activate
def test_an_error_code_that_is_not_a_code_is_not_repeated(signed_in):
    serve_server(responses)
    state = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    response = callback(signed_in, "mastodon", state=state, error="Your Hayon session expired. Sign in again")
    page = signed_in.get(response["Location"]).content.decode()
    assert "(error code: unknown)" in page and "Hayon session expired" not in page


# -- the mix-up defence at the callback (issue 13, item 1; case 39) ------------------------------------------
@responses.activate
def test_an_answer_at_another_servers_redirect_uri_is_refused_before_any_exchange(signed_in, user):
    serve_server(responses)
    serve_server(responses, "https://old.example")
    start(signed_in, "mastodon", instance="old.example")  # registers old.example: its URI exists
    state = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    response = signed_in.get(f"/api/platform/mastodon/callback/{server_id('https://old.example')}",
                             {"code": "c", "state": state})
    assert response["Location"] == "/settings?error=invalid_state"
    assert not any(c.request.url.endswith("/oauth/token") for c in responses.calls)
    assert not stored(user).get("connected")


@responses.activate
def test_the_plain_callback_takes_only_the_default_servers_flows(signed_in, user):
    serve_server(responses)
    serve_server(responses, "https://mastodon.example", well_known=False)
    state = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    assert signed_in.get("/api/platform/mastodon/callback", {"code": "c", "state": state})["Location"] == (
        "/settings?error=invalid_state")
    # The administrator's server, at its configured URI: fine; at a per-server URI: refused.
    state = query_of(start(signed_in, "mastodon", instance=""))["state"]
    assert signed_in.get(f"/api/platform/mastodon/callback/{server_id(S)}", {"code": "c", "state": state})[
        "Location"] == "/settings?error=invalid_state"
    state = query_of(start(signed_in, "mastodon", instance=""))["state"]
    assert signed_in.get("/api/platform/mastodon/callback", {"code": "c", "state": state})["Location"] == (
        "/settings?success=mastodon_connected")
    assert [c.request.url for c in responses.calls if c.request.url.endswith("/oauth/token")] == [
        "https://mastodon.example/oauth/token"]


@pytest.mark.parametrize(
    "advertised, iss, outcome",
    [
        (False, None, "success=mastodon_connected"),  # most servers send none and do not say they would
        (True, "https://social.example/", "success=mastodon_connected"),
        (False, "https://social.example", "success=mastodon_connected"),
        (True, None, "error=invalid_state"),  # advertised, so required
        (False, "https://evil.example/", "error=invalid_state"),
        (True, "https://social.example.evil.example/", "error=invalid_state"),
    ],
)
@responses.activate
def test_rfc9207_iss_is_checked_where_the_server_sends_it(signed_in, user, advertised, iss, outcome):
    serve_server(responses)
    responses.replace(responses.GET, f"{S}/.well-known/oauth-authorization-server",
                      json={**fx.WELL_KNOWN, "authorization_response_iss_parameter_supported": advertised})
    state = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    params = {"code": "c", "state": state, **({"iss": iss} if iss else {})}
    response = callback(signed_in, "mastodon", **params)
    assert response["Location"] == f"/settings?{outcome}"
    exchanged = any(c.request.url.endswith("/oauth/token") for c in responses.calls)
    assert exchanged is outcome.startswith("success")


@responses.activate
def test_a_discovery_document_naming_another_issuer_is_ignored(signed_in, user):
    """RFC 8414 §3.3: server A cannot declare B's issuer, so B's `iss` never passes for A."""
    serve_server(responses)
    responses.replace(responses.GET, f"{S}/.well-known/oauth-authorization-server",
                      json={**fx.WELL_KNOWN, "issuer": "https://honest.example/"})
    state = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    response = callback(signed_in, "mastodon", code="c", state=state, iss="https://honest.example/")
    assert response["Location"] == "/settings?error=invalid_state"


# -- naming the server, and the account's own identity ---------------------------------------------------
@responses.activate
def test_messages_name_the_server_and_its_software(signed_in, user):
    connected(user)
    account = SocialAccount.objects.get(user=user)
    doc = account.document("mastodon")
    doc["software"] = {"name": "Takahē", "version": "0.11.0"}
    account.set_document("mastodon", doc)
    account.save()
    responses.get("https://mastodon.example/api/v1/accounts/verify_credentials", status=400,
                  json={"error": "Invalid Bearer token"})
    page = html.unescape(signed_in.post("/settings/mastodon/refresh", follow=True).content.decode())
    assert "mastodon.example (Takahē) says Hayon's access was revoked." in page
    assert stored(user)["health"]["reason"] == "mastodon.example (Takahē) says Hayon's access was revoked."


@responses.activate
def test_a_server_cannot_claim_an_account_on_another_server(signed_in, user, other_user):
    """A hostile server reporting someone else's actor URI gets a key of its own, not theirs."""
    serve_server(responses, account={**fx.ACCOUNT, "uri": "https://mastodon.social/users/Gargron",
                                     "url": "https://mastodon.social/@Gargron"})
    connect(signed_in)
    assert stored(user)["accountKey"] == f"{S}|109876543210"
