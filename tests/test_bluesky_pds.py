"""Bluesky against a real AT Protocol PDS on 127.0.0.1 (installed by `make test`, see tests/peers/pds)."""
import json
import uuid

import httpx
import pytest

from platforms.documents import read_auth
from platforms.services import account_for

from .pds_peer import PNG, revoke_app_password

def connect(api, identifier, password):
    return api.post("/api/platform/bluesky/connect", data=json.dumps({"identifier": identifier, "appPassword": password}),
                    content_type="application/json")


@pytest.mark.django_db
def test_whole_journey_against_a_real_pds(api, user, real_pds, pds_account, monkeypatch):
    response = connect(api, pds_account["handle"], pds_account["app_password"])
    assert response.status_code == 200, response.content
    data = response.json()["data"]
    assert data["did"] == pds_account["did"] and data["profile"]["handle"] == pds_account["handle"]
    assert data["profile"]["displayName"] == "Local Tester" and data["profile"]["description"] == "Lives on 127.0.0.1"
    avatar = httpx.get(data["profile"]["avatar"], timeout=10)
    assert avatar.status_code == 200 and avatar.content == PNG

    first = read_auth(account_for(user).document("bluesky"))
    # Make every access token "due" so each refresh really rotates the session.
    monkeypatch.setattr("platforms.providers.bluesky.RENEW_BEFORE", __import__("datetime").timedelta(days=1))
    for _ in range(2):
        refreshed = api.get("/api/platform/bluesky/refresh")
        assert refreshed.status_code == 200, refreshed.content
        assert refreshed.json()["data"]["health"]["status"] == "active"
    last = read_auth(account_for(user).document("bluesky"))
    assert last["refreshJwt"] != first["refreshJwt"]  # rotated (access JWTs minted in one second may match)

    assert api.delete("/api/platform/bluesky/disconnect").json()["message"].endswith("access revoked.")
    for token in (last["refreshJwt"],):
        dead = httpx.post(f"{real_pds['pdsUrl']}/xrpc/com.atproto.server.refreshSession",
                          headers={"authorization": f"Bearer {token}"}, timeout=10)
        assert dead.status_code in (400, 401) and dead.json()["error"] in ("ExpiredToken", "InvalidToken")
    assert account_for(user).document("bluesky") == {"connected": False}


@pytest.mark.django_db
def test_did_identifier_resolves_through_the_plc_directory(api, user, real_pds, pds_account):
    response = connect(api, pds_account["did"], pds_account["app_password"])
    assert response.status_code == 200, response.content
    assert read_auth(account_for(user).document("bluesky"))["pds"].endswith(real_pds["publicUrl"].split("//")[1])


@pytest.mark.django_db
def test_wrong_app_password_on_a_real_pds(api, user, real_pds, pds_account):
    response = connect(api, pds_account["handle"], "aaaa-bbbb-cccc-dddd")
    assert response.status_code == 502
    assert response.json()["message"] == "That handle and app password do not match a Bluesky account."
    assert account_for(user).document("bluesky") == {}


@pytest.mark.django_db
def test_revoked_app_password_is_seen_at_refresh(api, user, real_pds, pds_account, monkeypatch):
    """The user deletes the app password on Bluesky: the next renewal fails and asks to reconnect."""
    assert connect(api, pds_account["handle"], pds_account["app_password"]).status_code == 200
    revoke_app_password(real_pds["pdsUrl"], pds_account)
    monkeypatch.setattr("platforms.providers.bluesky.RENEW_BEFORE", __import__("datetime").timedelta(days=1))
    assert api.get("/api/platform/bluesky/refresh").status_code == 502
    health = account_for(user).document("bluesky")["health"]
    assert health["needsReconnection"] is True and health["status"] in ("expired", "revoked")


@pytest.mark.django_db
def test_a_handle_change_on_the_pds_is_followed_at_refresh(api, user, real_pds, pds_account):
    """Issue 12 item 15: the user renames themselves on the PDS; Refresh shows the new handle, once
    it resolves back to the DID (through the configured service: `.test` names have no DNS)."""
    assert connect(api, pds_account["handle"], pds_account["app_password"]).status_code == 200
    renamed = f"r{uuid.uuid4().hex[:10]}.test"
    with httpx.Client(base_url=real_pds["pdsUrl"], timeout=10) as http:
        session = http.post("/xrpc/com.atproto.server.createSession",
                            json={"identifier": pds_account["handle"], "password": pds_account["password"]}).json()
        http.post("/xrpc/com.atproto.identity.updateHandle", json={"handle": renamed},
                  headers={"authorization": f"Bearer {session['accessJwt']}"}).raise_for_status()
    refreshed = api.get("/api/platform/bluesky/refresh")
    assert refreshed.status_code == 200, refreshed.content
    doc = account_for(user).document("bluesky")
    assert doc["handle"] == doc["profile"]["handle"] == renamed
    assert doc["health"]["reason"] == ""
