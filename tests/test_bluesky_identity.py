"""Security case 44: a PDS cannot claim a DID or a handle it does not own.

The attacker runs their own PDS (tests/fakes/hostile_pds.py) and their own DID, whose document
honestly names that PDS, so Hayon logs in there; the PDS then answers createSession with a
victim's DID or handle. Hayon resolves the DID itself (the PLC directory), requires its document
to name the PDS it logged in to and the handle to resolve back to the DID, and otherwise refuses,
stores nothing and deletes the session it was handed.
"""
import json

import pytest
from django.core.cache import cache

from platforms.documents import read_auth
from platforms.services import account_for

from .conftest import TXT_RECORDS
from .fakes.hostile_pds import FakePlc, HostilePds, did_document

pytestmark = pytest.mark.django_db
APP_PASSWORD = "abcd-efgh-ijkl-mnop"
ATTACKER = "did:plc:attackerattackerattacker"
VICTIM = "did:plc:victimvictimvictimvictim"
VICTIM_PDS = "https://pds.example"


def post_connect(client, identifier, password=APP_PASSWORD):
    return client.post("/api/platform/bluesky/connect", content_type="application/json",
                       data=json.dumps({"identifier": identifier, "appPassword": password}))


@pytest.fixture
def plc(settings):
    with FakePlc() as directory:
        settings.BLUESKY_PLC_URL = directory.url
        settings.HAYON_ALLOW_PRIVATE_HOSTS = True  # the hostile PDS is on loopback; never in production
        cache.clear()
        yield directory
    TXT_RECORDS.clear()


@pytest.fixture
def hostile(plc):
    """The attacker's PDS, reached honestly: their DID's document names it."""
    with HostilePds(did=VICTIM, handle="victim.example") as pds:
        plc.documents[ATTACKER] = did_document(ATTACKER, handle="mallory.example", pds=pds.url)
        plc.documents[VICTIM] = did_document(VICTIM, handle="victim.example", pds=VICTIM_PDS)
        TXT_RECORDS["victim.example"] = VICTIM
        yield pds


def test_a_pds_claiming_someone_elses_did_is_refused(api, user, hostile):
    response = post_connect(api, ATTACKER)  # Hayon logs in at the attacker's PDS, which says "victim"
    assert response.status_code == 502 and response.json()["success"] is False
    assert "names another server" in response.json()["message"]
    assert account_for(user).document("bluesky") == {}
    assert hostile.deleted() == hostile.issued  # the session it handed out is ended again


def test_the_settings_page_explains_the_refusal(signed_in, user, hostile):
    page = signed_in.post("/settings/bluesky/connect", {"identifier": ATTACKER, "appPassword": APP_PASSWORD}, follow=True)
    text = page.content.decode()
    assert page.status_code == 200 and "names another server (pds.example)" in text and "Hayon did not connect it." in text
    assert account_for(user).document("bluesky") == {}


def test_a_handle_that_does_not_resolve_to_the_did_is_refused(api, user, plc):
    """The attacker's own DID and PDS, but the session claims the victim's handle."""
    with HostilePds(did=ATTACKER, handle="victim.example") as pds:
        plc.documents[ATTACKER] = did_document(ATTACKER, handle="victim.example", pds=pds.url)
        TXT_RECORDS["victim.example"] = VICTIM
        response = post_connect(api, ATTACKER)
        assert response.status_code == 502
        assert "@victim.example does not point to this account" in response.json()["message"]
        assert pds.deleted() == pds.issued
    assert account_for(user).document("bluesky") == {}


def test_a_did_document_that_does_not_claim_the_handle_is_refused(api, user, plc):
    """Both directions must agree (https://atproto.com/specs/handle): the handle's DNS record alone
    is not enough when the DID document names another handle."""
    with HostilePds(did=ATTACKER, handle="victim.example") as pds:
        plc.documents[ATTACKER] = did_document(ATTACKER, handle="mallory.example", pds=pds.url)
        TXT_RECORDS["victim.example"] = ATTACKER  # the victim's domain does not say this; a test shortcut
        response = post_connect(api, ATTACKER)
    assert response.status_code == 502 and "does not point to this account" in response.json()["message"]
    assert account_for(user).document("bluesky") == {}


def test_an_honest_self_hosted_pds_connects(api, user, plc):
    with HostilePds(did=ATTACKER, handle="mallory.example") as pds:  # hostile in name only: it tells the truth
        plc.documents[ATTACKER] = did_document(ATTACKER, handle="mallory.example", pds=pds.url)
        TXT_RECORDS["mallory.example"] = ATTACKER
        response = post_connect(api, "mallory.example")
        assert response.status_code == 200, response.content
        assert not pds.deleted()
    doc = account_for(user).document("bluesky")
    assert doc["did"] == ATTACKER and doc["handle"] == "mallory.example"
    assert read_auth(doc)["pds"] == pds.url


def test_an_unknown_did_refuses_rather_than_trusting_the_pds(api, user, plc, settings):
    """The directory does not know the DID the PDS names: nothing vouches for it, so nothing is stored."""
    with HostilePds(did=ATTACKER, handle="mallory.example") as pds:
        settings.BLUESKY_SERVICE_URL = pds.url  # an email logs in at the configured service
        TXT_RECORDS["mallory.example"] = ATTACKER
        response = post_connect(api, "mallory@example.com")
        assert response.status_code == 502 and "identity record" in response.json()["message"]
        assert pds.deleted() == pds.issued
    assert account_for(user).document("bluesky") == {}


# -- the real PDS --------------------------------------------------------------------------------
@pytest.fixture
def passthrough_plc(real_pds, settings):
    """The real local PLC, plus one document the attacker registered (their DID names their PDS)."""
    with FakePlc(upstream=real_pds["plcUrl"]) as directory:
        settings.BLUESKY_PLC_URL = directory.url
        yield directory


def test_a_hostile_pds_cannot_claim_a_real_accounts_did(api, user, other_user, real_pds, pds_account, passthrough_plc):
    with HostilePds(did=pds_account["did"], handle=pds_account["handle"]) as pds:
        passthrough_plc.documents[ATTACKER] = did_document(ATTACKER, handle="mallory.example", pds=pds.url)
        response = post_connect(api, ATTACKER)
        assert response.status_code == 502, response.content
        assert pds.deleted() == pds.issued
    assert account_for(user).document("bluesky") == {}

    # The real owner connects their account afterwards, from another Hayon user.
    from django.test import Client

    from accounts.models import ApiToken

    owner = Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user=other_user, name='owner')[1]}")
    mine = post_connect(owner, pds_account["handle"], pds_account["app_password"])
    assert mine.status_code == 200, mine.content
    assert account_for(other_user).document("bluesky")["did"] == pds_account["did"]
