"""Security case 45 for Bluesky: a broken or hostile PDS never gets a 500 out of Hayon.

Each reply below comes from a real HTTP server on 127.0.0.1 (tests/fakes/hostile_pds.py), so the
SDK's own transport and validation run as they do in production. The API answers a JSON error
(or connects, when the oddity does not matter), the settings page shows a readable message.
"""
import json

import pytest
from django.core.cache import cache

from platforms.services import account_for

from .conftest import TXT_RECORDS
from .fakes.hostile_pds import FakePlc, HostilePds, did_document
from .fakes.server import Reply

pytestmark = pytest.mark.django_db
APP_PASSWORD = "abcd-efgh-ijkl-mnop"
DID = "did:plc:selfhostedselfhostedself"
HANDLE = "mallory.example"


def post_connect(client, identifier=HANDLE):
    return client.post("/api/platform/bluesky/connect", content_type="application/json",
                       data=json.dumps({"identifier": identifier, "appPassword": APP_PASSWORD}))


def stored(user):
    return account_for(user).document("bluesky")


@pytest.fixture
def plc(settings):
    with FakePlc() as directory:
        settings.BLUESKY_PLC_URL = directory.url
        settings.HAYON_ALLOW_PRIVATE_HOSTS = True  # the fakes are on loopback; never in production
        cache.clear()
        yield directory
    TXT_RECORDS.clear()


@pytest.fixture
def pds(plc):
    """A self-hosted PDS that owns its account honestly; each test makes it misbehave one way."""
    with HostilePds(did=DID, handle=HANDLE) as server:
        plc.documents[DID] = did_document(DID, handle=HANDLE, pds=server.url)
        TXT_RECORDS[HANDLE] = DID
        yield server


@pytest.mark.parametrize("exp", [1e20, -5, "soon", None, [1], float("inf")])
def test_a_refresh_jwt_with_an_unusable_exp_connects_with_no_expiry(api, user, pds, exp):
    """exp=1e20 raised OverflowError (a 500); a negative one was stored as 1969."""
    pds.refresh_exp = exp if exp != float("inf") else 1e400  # json.dumps writes Infinity for inf
    response = post_connect(api)
    assert response.status_code == 200, response.content
    doc = stored(user)
    assert doc["connected"] and doc["expiresAt"] is None and doc["health"]["status"] == "active"


def test_an_oversized_header_is_a_clear_error(api, user, pds):
    """httpx.RemoteProtocolError is not wrapped by the SDK: it came out as a 500."""
    pds.session_headers = {"X-Padding": "a" * 150_000}  # past h11's 100 KiB limit for a head
    response = post_connect(api)
    assert response.status_code == 502 and response.json()["message"] == "Bluesky could not be reached. Please try again."
    assert stored(user) == {}


def test_an_oversized_header_on_the_settings_page_shows_an_error(signed_in, user, pds):
    pds.session_headers = {"X-Padding": "a" * 150_000}
    page = signed_in.post("/settings/bluesky/connect", {"identifier": HANDLE, "appPassword": APP_PASSWORD}, follow=True)
    assert page.status_code == 200 and "Bluesky could not be reached. Please try again." in page.content.decode()
    assert stored(user) == {}


@pytest.mark.parametrize("extra", [{"did": 42}, {"accessJwt": None}, {"handle": ["a", "b"]}])
def test_a_session_reply_that_fails_validation_is_a_clear_error(api, user, pds, extra):
    pds.session_extra = extra
    response = post_connect(api)
    assert response.status_code == 502 and response.json()["message"] == "Bluesky sent a reply Hayon could not use."
    assert stored(user) == {}


def test_a_did_the_session_names_that_is_not_a_did_is_refused(api, user, pds):
    """A "DID" with a path in it would be pasted into the PLC directory's URL."""
    pds.session_extra = {"did": "did:plc:../../export"}
    response = post_connect(api)
    assert response.status_code == 502 and "identity" in response.json()["message"]
    assert all("export" not in call.path for call in pds.calls) and stored(user) == {}


def test_a_deeply_nested_did_document_is_a_clear_error(api, user, pds, plc):
    """json.loads raised RecursionError on the directory's reply: a 500."""
    plc.documents[DID] = b"[" * 100_000 + b"]" * 100_000
    response = post_connect(api)
    assert response.status_code == 502 and response.json()["success"] is False
    assert stored(user) == {}


@pytest.mark.parametrize("record", [
    {"displayName": ["a", "list"], "description": {"a": "dict"}, "avatar": "https://evil.example/a.png"},
    {"displayName": 12, "description": None, "avatar": {"ref": "bafkreinotadict"}},
    {"displayName": "Mallory", "avatar": {"ref": {"$link": "bafk&did=did:plc:other"}}},
    {"displayName": "x" * 100_000, "avatar": ["no"]},
])
def test_a_profile_record_of_the_wrong_shape_gives_plain_text(api, user, pds, record):
    pds.record = {"$type": "app.bsky.actor.profile", **record}
    response = post_connect(api)
    assert response.status_code == 200, response.content
    profile = stored(user)["profile"]
    assert all(isinstance(value, str) for value in profile.values())
    assert profile["displayName"] in ("Mallory", HANDLE) or len(profile["displayName"]) <= 640
    assert profile["avatar"] == "" and profile.get("description", "") == ""


def test_a_profile_view_that_fails_validation_is_a_clear_error(api, user, pds):
    pds.profile = Reply(body={"did": DID, "handle": HANDLE, "displayName": ["not", "text"]})
    response = post_connect(api)
    assert response.status_code == 502 and response.json()["message"] == "Bluesky sent a reply Hayon could not use."
    assert stored(user) == {} and pds.deleted() == pds.issued


def test_an_oversized_header_at_refresh_keeps_the_connection_and_answers_json(api, user, pds):
    assert post_connect(api).status_code == 200
    pds.profile = Reply(body={"did": DID, "handle": HANDLE}, headers={"X-Padding": "a" * 150_000})
    response = api.get("/api/platform/bluesky/refresh")
    assert response.status_code == 502 and response.json()["message"] == "Bluesky could not be reached. Please try again."
    health = stored(user)["health"]
    assert stored(user)["connected"] and health["needsReconnection"] is False
