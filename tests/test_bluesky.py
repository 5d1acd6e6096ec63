"""Bluesky with recorded XRPC replies (respx): every error path of connect, refresh, disconnect."""
import json
import logging

import httpx
import pytest
import respx
from django.core.cache import cache
from django.test import Client

from platforms.documents import read_auth
from platforms.services import account_for

from .conftest import SENTINEL, TXT_RECORDS
from .fixtures import bluesky as fx

pytestmark = pytest.mark.django_db
APP_PASSWORD = "abcd-efgh-ijkl-mnop"
SERVICE = "https://bsky.social"


@pytest.fixture(autouse=True)
def fresh_limits():
    cache.clear()


def post_connect(client, identifier=fx.HANDLE, password=APP_PASSWORD, **extra):
    return client.post("/api/platform/bluesky/connect", data=json.dumps({"identifier": identifier, "appPassword": password}),
                       content_type="application/json", **extra)


def stored(user):
    return account_for(user).document("bluesky")


@pytest.fixture
def pds():
    """The account's PDS, reached after resolving alice.example through DNS and the PLC directory."""
    TXT_RECORDS[fx.HANDLE] = fx.DID
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"https://plc.directory/{fx.DID}").respond(json=fx.PLC_DOCUMENT)
        mock.post(f"{fx.PDS}/xrpc/com.atproto.server.createSession").respond(json=fx.session())
        mock.get(f"{fx.PDS}/xrpc/app.bsky.actor.getProfile").respond(json=fx.PROFILE)
        mock.post(f"{fx.PDS}/xrpc/com.atproto.server.deleteSession").respond(200)
        mock.post(f"{SERVICE}/xrpc/com.atproto.server.createSession").respond(
            401, json=fx.error("AuthenticationRequired", "Invalid identifier or password"))
        mock.get(f"{SERVICE}/xrpc/com.atproto.identity.resolveHandle").respond(
            400, json=fx.error("InvalidRequest", "Unable to resolve handle"))
        yield mock
    TXT_RECORDS.clear()


def test_connect_resolves_the_handle_to_its_own_pds_and_stores_the_session(api, user, pds):
    response = post_connect(api)
    assert response.status_code == 200, response.content
    data = response.json()["data"]
    assert data["connected"] and data["did"] == fx.DID and data["handle"] == fx.HANDLE
    assert data["profile"] == {"displayName": "Alice", "handle": fx.HANDLE, "avatar": fx.PROFILE["avatar"],
                               "description": "Posts about birds."}
    sent = json.loads(pds.calls[1].request.content)  # [0] is the PLC directory
    assert sent == {"identifier": fx.HANDLE, "password": APP_PASSWORD}
    doc = stored(user)
    assert doc["expiresAt"] and SENTINEL not in json.dumps(doc) and APP_PASSWORD not in json.dumps(doc)
    assert SENTINEL not in response.content.decode()


def test_email_logs_in_at_the_configured_service(api, user, pds):
    """The entryway (bsky.social) signs in accounts that live on another PDS: the DID's own
    document names that PDS, and the PDS confirms the session is that DID's (getSession)."""
    login = pds.post(f"{SERVICE}/xrpc/com.atproto.server.createSession").respond(json=fx.session())
    confirm = pds.get(f"{fx.PDS}/xrpc/com.atproto.server.getSession").respond(
        json={"did": fx.DID, "handle": fx.HANDLE, "active": True})
    assert post_connect(api, identifier="alice@example.com").status_code == 200
    assert login.called and confirm.called
    assert stored(user)["did"] == fx.DID and read_auth(stored(user))["pds"] == fx.PDS


def test_the_entryway_cannot_hand_over_an_account_its_pds_does_not_confirm(api, user, pds):
    pds.post(f"{SERVICE}/xrpc/com.atproto.server.createSession").respond(json=fx.session())
    pds.get(f"{fx.PDS}/xrpc/com.atproto.server.getSession").respond(400, json=fx.error("InvalidToken", "Bad token"))
    response = post_connect(api, identifier="alice@example.com")
    assert response.status_code == 502 and "names another server" in response.json()["message"]
    assert stored(user) == {}


def test_bare_pds_profile_comes_from_the_repo_record(api, user, pds):
    pds.get(f"{fx.PDS}/xrpc/app.bsky.actor.getProfile").respond(
        400, json=fx.error("InvalidRequest", "No service configured for app.bsky.actor.getProfile"))
    pds.get(f"{fx.PDS}/xrpc/com.atproto.repo.getRecord").respond(json={
        "uri": f"at://{fx.DID}/app.bsky.actor.profile/self", "cid": "bafyreib",
        "value": {"$type": "app.bsky.actor.profile", "displayName": "Self-hosted Alice", "description": "Own PDS",
                  "avatar": {"$type": "blob", "ref": {"$link": "bafkreiavatar"}, "mimeType": "image/png", "size": 10}},
    })
    data = post_connect(api).json()["data"]
    assert data["profile"]["displayName"] == "Self-hosted Alice"
    assert data["profile"]["avatar"] == f"{fx.PDS}/xrpc/com.atproto.sync.getBlob?did={fx.DID}&cid=bafkreiavatar"


@pytest.mark.parametrize("password", ["my main password", "abcd-efgh-ijkl", "ABCD_EFGH_IJKL_MNOP", "", "abcd-efgh-ijkl-mnop-qrst"])
def test_a_value_that_is_not_an_app_password_is_never_sent(api, user, password):
    """Case 29."""
    with respx.mock() as mock:  # any request would fail the test: no route is defined
        response = post_connect(api, password=password)
        assert not mock.calls
    assert response.status_code == 400 and "app password" in response.json()["message"]
    assert password not in response.content.decode() or password == ""
    assert stored(user) == {}


def test_unknown_handle_and_wrong_password_give_the_same_reply(api, user, pds):
    """Case 30."""
    pds.post(f"{fx.PDS}/xrpc/com.atproto.server.createSession").respond(
        401, json=fx.error("AuthenticationRequired", "Invalid identifier or password"))
    wrong = post_connect(api)
    pds.post(f"{SERVICE}/xrpc/com.atproto.server.createSession").respond(
        400, json=fx.error("InvalidRequest", "Unable to resolve handle"))
    unknown = post_connect(api, identifier="nobody.example")
    assert wrong.status_code == unknown.status_code == 502
    assert wrong.json()["message"] == unknown.json()["message"]
    assert stored(user) == {}


def test_email_code_accounts_are_told_to_use_an_app_password(api, pds):
    pds.post(f"{fx.PDS}/xrpc/com.atproto.server.createSession").respond(
        401, json=fx.error("AuthFactorTokenRequired", "A sign in code has been sent to your email address"))
    assert "app password" in post_connect(api).json()["message"]


@pytest.mark.parametrize("reply", [httpx.Response(502, text="<html>bad gateway</html>"), httpx.ConnectTimeout("slow"),
                                   httpx.Response(200, text="not json", headers={"content-type": "text/html"})])
def test_pds_failure_gives_a_generic_error_and_stores_nothing(api, user, pds, reply):
    route = pds.post(f"{fx.PDS}/xrpc/com.atproto.server.createSession")
    route.side_effect = reply if isinstance(reply, Exception) else None
    if not isinstance(reply, Exception):
        route.return_value = reply
    response = post_connect(api)
    assert response.status_code == 502 and response.json()["success"] is False
    assert stored(user) == {}


def test_pds_endpoint_on_a_private_network_is_refused(api, user):
    """Case 31: a DID document pointing at an internal address is not followed."""
    TXT_RECORDS[fx.HANDLE] = fx.DID
    document = {**fx.PLC_DOCUMENT, "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                                                 "serviceEndpoint": "https://169.254.169.254"}]}
    with respx.mock() as mock:
        mock.get(f"https://plc.directory/{fx.DID}").respond(json=document)
        fallback = mock.post(f"{SERVICE}/xrpc/com.atproto.server.createSession").respond(
            401, json=fx.error("AuthenticationRequired"))
        post_connect(api)
        assert fallback.called and all("169.254" not in str(c.request.url) for c in mock.calls)
    TXT_RECORDS.clear()


def test_rate_limits_per_identifier_user_and_ip(user, other_user, pds):
    """Case 28: 429 with Retry-After and no outbound call; X-Forwarded-For does not reset it."""
    client = Client()
    client.force_login(user)
    pds.post(f"{fx.PDS}/xrpc/com.atproto.server.createSession").respond(401, json=fx.error("AuthenticationRequired"))
    for _ in range(10):
        post_connect(client)
    calls = len(pds.calls)
    limited = post_connect(client, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    assert len(pds.calls) == calls
    other = Client()
    other.force_login(other_user)
    assert post_connect(other).status_code == 429  # same identifier from another user
    for i in range(10):
        post_connect(other, identifier=f"x{i}.example")
    assert post_connect(other, identifier="fresh.example").status_code == 429  # the IP's budget is spent


def test_a_forged_forwarded_for_does_not_buy_a_fresh_ip_budget(django_user_model, pds):
    """Case 28: the per-IP budget counts the address the connection came from, whatever the client
    writes in X-Forwarded-For (no trusted proxy is configured)."""
    pds.post(f"{fx.PDS}/xrpc/com.atproto.server.createSession").respond(401, json=fx.error("AuthenticationRequired"))
    clients = []
    for n in range(3):
        client = Client()
        client.force_login(django_user_model.objects.create_user(f"neighbour{n}", password="a long enough pw"))
        clients.append(client)
    for n in range(20):  # two users, ten distinct identifiers each: the IP's 20 in five minutes
        assert post_connect(clients[n // 10], identifier=f"someone{n}.example").status_code != 429
    calls = len(pds.calls)
    forged = post_connect(clients[2], identifier="fresh.example", HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.7")
    assert forged.status_code == 429 and len(pds.calls) == calls


def test_app_password_is_in_no_log_line(api, pds, caplog):
    caplog.set_level(logging.DEBUG)
    post_connect(api)
    pds.post(f"{fx.PDS}/xrpc/com.atproto.server.createSession").respond(401, json=fx.error("AuthenticationRequired"))
    post_connect(api)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert APP_PASSWORD not in text and SENTINEL not in text


def test_settings_form_never_renders_the_app_password_back(signed_in, pds):
    pds.post(f"{fx.PDS}/xrpc/com.atproto.server.createSession").respond(401, json=fx.error("AuthenticationRequired"))
    response = signed_in.post("/settings/bluesky/connect", {"identifier": fx.HANDLE, "appPassword": APP_PASSWORD}, follow=True)
    page = response.content.decode()
    assert "do not match a Bluesky account" in page and APP_PASSWORD not in page


# -- refresh ---------------------------------------------------------------------------------------
def connect_with(api, pds, **session):
    pds.post(f"{fx.PDS}/xrpc/com.atproto.server.createSession").respond(json=fx.session(**session))
    assert post_connect(api).status_code == 200


def test_refresh_renews_a_due_access_token_and_stores_the_rotated_pair(api, user, pds):
    connect_with(api, pds, access_in=60)  # the access JWT expires within the renewal margin
    before = stored(user)["auth"]
    renew = pds.post(f"{fx.PDS}/xrpc/com.atproto.server.refreshSession").respond(json=fx.session(tag="2"))
    response = api.get("/api/platform/bluesky/refresh")
    assert response.status_code == 200 and renew.call_count == 1
    assert renew.calls[0].request.headers["Authorization"].endswith("SENTINEL-7f3a9c-refresh1")
    assert stored(user)["auth"] != before and stored(user)["health"]["status"] == "active"
    api.get("/api/platform/bluesky/refresh")  # now fresh: no second renewal
    assert renew.call_count == 1


def test_expired_access_token_is_renewed_once_and_retried(api, user, pds):
    connect_with(api, pds)
    pds.get(f"{fx.PDS}/xrpc/app.bsky.actor.getProfile").mock(side_effect=[
        httpx.Response(400, json=fx.error("ExpiredToken", "Token has expired")), httpx.Response(200, json=fx.PROFILE)])
    renew = pds.post(f"{fx.PDS}/xrpc/com.atproto.server.refreshSession").respond(json=fx.session(tag="2"))
    assert api.get("/api/platform/bluesky/refresh").status_code == 200
    assert renew.call_count == 1 and stored(user)["health"]["status"] == "active"


@pytest.mark.parametrize("name", ["ExpiredToken", "InvalidToken"])
def test_dead_refresh_token_means_reconnect(api, user, pds, name):
    """Case 21: ExpiredToken on refreshSession -> expired + needsReconnection, old tokens kept."""
    connect_with(api, pds, access_in=60)
    before = stored(user)["auth"]
    pds.post(f"{fx.PDS}/xrpc/com.atproto.server.refreshSession").respond(400, json=fx.error(name, "Token has been revoked"))
    assert api.get("/api/platform/bluesky/refresh").status_code == 502
    doc = stored(user)
    assert doc["health"]["status"] == "expired" and doc["health"]["needsReconnection"] is True
    assert doc["auth"] == before
    page = api.get("/api/platform/find").json()["data"]["bluesky"]
    assert page["health"]["needsReconnection"] is True


def test_rotated_tokens_survive_a_failure_after_renewal(api, user, pds):
    """The PDS retired the old refresh JWT: the new pair is stored even though the profile call failed."""
    connect_with(api, pds, access_in=60)
    pds.post(f"{fx.PDS}/xrpc/com.atproto.server.refreshSession").respond(json=fx.session(tag="2"))
    pds.get(f"{fx.PDS}/xrpc/app.bsky.actor.getProfile").respond(503, json=fx.error("NotEnoughResources"))
    pds.get(f"{fx.PDS}/xrpc/com.atproto.repo.getRecord").respond(503, json=fx.error("NotEnoughResources"))
    assert api.get("/api/platform/bluesky/refresh").status_code == 502
    doc = stored(user)
    assert doc["health"]["status"] == "active" and doc["health"]["needsReconnection"] is False
    assert "will be retried" in doc["health"]["reason"]
    assert read_auth(doc)["refreshJwt"].endswith("refresh2")


def test_disconnect_deletes_the_session_with_the_refresh_token(api, user, pds):
    connect_with(api, pds)
    response = api.delete("/api/platform/bluesky/disconnect")
    assert response.status_code == 200 and "revoked" in response.json()["message"]
    delete = [c for c in pds.calls if c.request.url.path.endswith("deleteSession")]
    assert len(delete) == 1 and delete[0].request.headers["Authorization"].endswith("SENTINEL-7f3a9c-refresh1")
    assert stored(user) == {"connected": False}


def test_failed_delete_session_still_disconnects(api, user, pds):
    connect_with(api, pds)
    pds.post(f"{fx.PDS}/xrpc/com.atproto.server.deleteSession").mock(side_effect=httpx.ReadTimeout("slow"))
    response = api.delete("/api/platform/bluesky/disconnect")
    assert response.status_code == 200 and "failed" in response.json()["message"]
    assert stored(user) == {"connected": False}


# -- the handle follows the account (issue 12 item 15) ---------------------------------------------
def test_refresh_follows_a_handle_change_that_resolves_to_the_did(api, user, pds):
    connect_with(api, pds)
    TXT_RECORDS["alice2.example"] = fx.DID
    pds.get(f"https://plc.directory/{fx.DID}").respond(json={**fx.PLC_DOCUMENT, "alsoKnownAs": ["at://alice2.example"]})
    pds.get(f"{fx.PDS}/xrpc/app.bsky.actor.getProfile").respond(json={**fx.PROFILE, "handle": "alice2.example"})
    assert api.get("/api/platform/bluesky/refresh").status_code == 200
    doc = stored(user)
    assert doc["handle"] == doc["profile"]["handle"] == "alice2.example"
    assert api.get("/api/platform/find").json()["data"]["bluesky"]["handle"] == "alice2.example"


def test_refresh_keeps_the_verified_handle_when_the_reported_one_does_not_resolve(api, user, pds):
    """The AppView (or a PDS) reports a handle that does not point back to the DID: not believed."""
    connect_with(api, pds)
    pds.get(f"{fx.PDS}/xrpc/app.bsky.actor.getProfile").respond(json={**fx.PROFILE, "handle": "mallory.example"})
    assert api.get("/api/platform/bluesky/refresh").status_code == 200
    doc = stored(user)
    assert doc["handle"] == doc["profile"]["handle"] == fx.HANDLE
    assert doc["health"]["status"] == "active" and "@mallory.example" in doc["health"]["reason"]


# -- every hop of handle -> DID -> DID document -> PDS passes the SSRF guard (case 31) ----------------
@pytest.mark.parametrize("did", ["did:web:metadata.example", "did:web:intranet.example", "did:web:sneaky.example",
                                 "did:web:localhost%3A8080", "did:web:169.254.169.254"])
def test_a_did_web_host_on_a_private_network_is_never_fetched(api, user, did):
    TXT_RECORDS[fx.HANDLE] = did
    with respx.mock() as mock:
        login = mock.post(f"{SERVICE}/xrpc/com.atproto.server.createSession").respond(401, json=fx.error("AuthenticationRequired"))
        assert post_connect(api).status_code == 502
        assert login.called and len(mock.calls) == 1  # the configured service, and nothing else
    TXT_RECORDS.clear()


@pytest.mark.parametrize("handle", ["intranet.example", "metadata.example", "sneaky.example"])
def test_a_handle_whose_host_is_private_is_not_asked_for_its_did(api, user, handle):
    with respx.mock() as mock:
        login = mock.post(f"{SERVICE}/xrpc/com.atproto.server.createSession").respond(401, json=fx.error("AuthenticationRequired"))
        post_connect(api, identifier=handle)
        assert login.called and len(mock.calls) == 1


def test_a_did_document_naming_a_private_pds_refuses_the_session(api, user, pds):
    """After sign-in at the entryway, the PDS the account's own document names must be public too."""
    pds.post(f"{SERVICE}/xrpc/com.atproto.server.createSession").respond(json=fx.session())
    pds.get(f"https://plc.directory/{fx.DID}").respond(json={**fx.PLC_DOCUMENT, "service": [
        {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://169.254.169.254"}]})
    response = post_connect(api, identifier="alice@example.com")
    assert response.status_code == 502 and "names no server Hayon may connect to" in response.json()["message"]
    assert all("169.254" not in str(call.request.url) for call in pds.calls)
    assert stored(user) == {}
