"""Security case 39 (issue 13, item 1): the OAuth mix-up across Mastodon servers, end to end.

Two servers on 127.0.0.1: A is hostile, B is honest. The attacker begins a flow for B in their own
Hayon account; when the victim connects A, A forwards the victim's browser to B's authorization
URL from the attacker's flow, with the victim's state and the attacker's PKCE challenge. Before
the fix every server shared one redirect URI: Hayon found the victim's flow for A and posted B's
code to A's token endpoint, and the attacker replayed it with their own state to link the victim's
B account to their Hayon account.
"""
from urllib.parse import urlsplit

import pytest
import requests
from django.test import Client

from platforms.services import account_for

from .fakes.mastodon import FakeHostileMastodon, FakeMastodon
from .oauth_helpers import query_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def servers(settings):
    settings.HAYON_ALLOW_PRIVATE_HOSTS = True  # both fakes are on loopback; never in production
    settings.MASTODON_INSTANCE_URL = ""
    with FakeHostileMastodon() as hostile, FakeMastodon(auto_approve=True) as honest:
        yield hostile, honest


def browse(url: str) -> str:
    """Follow the servers' redirects as a browser would, until one points back at Hayon."""
    for _ in range(5):
        if url.startswith("http://testserver/"):
            return url
        response = requests.get(url, allow_redirects=False, timeout=5)
        assert response.status_code == 302, response.text
        url = response.headers["Location"]
    raise AssertionError("the servers never sent the browser back")


def hayon_get(client, url: str):
    parts = urlsplit(url)
    return client.get(f"{parts.path}?{parts.query}")


def signed_in_as(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_hostile_server_cannot_mix_up_a_victims_flow_with_an_honest_server(servers, user, other_user):
    hostile, honest = servers
    victim, attacker = signed_in_as(user), signed_in_as(other_user)

    # The attacker begins a flow for B in their own Hayon account and hands its URL to A.
    hostile.forward_to = attacker.post("/settings/mastodon/connect", {"instance": honest.url})["Location"]
    attacker_state = query_of(hostile.forward_to)["state"]
    b_redirect_uri = query_of(hostile.forward_to)["redirect_uri"]

    # The victim connects A. A forwards to B; B authorizes and sends the browser to B's redirect URI.
    authorize_at_a = victim.post("/settings/mastodon/connect", {"instance": hostile.url})["Location"]
    back = browse(authorize_at_a)
    assert back.startswith(f"{b_redirect_uri}?") and len(honest.codes) == 1
    victims_code = next(iter(honest.codes))
    refused = hayon_get(victim, back)

    # The attacker replays the victim's answer in their own browser (leaked, say, from a history)...
    assert hayon_get(attacker, back)["Location"] == "/settings?error=invalid_state"
    # ...and every code A's token endpoint received, with their own state, at B's redirect URI
    # (where their flow expects it) and at A's.
    for code in hostile.codes_received:
        for redirect_uri in (b_redirect_uri, query_of(authorize_at_a)["redirect_uri"]):
            hayon_get(attacker, f"{redirect_uri}?code={code}&state={attacker_state}")

    assert not account_for(other_user).document("mastodon").get("connected")  # the attack's aim
    assert not account_for(user).document("mastodon").get("connected")
    assert hostile.codes_received == [] and victims_code not in str(hostile.calls)  # B's code never went to A
    assert honest.token_requests == [] and victims_code in honest.codes  # and was never exchanged at all
    assert refused["Location"] == "/settings?error=invalid_state"  # the victim's flow was for A
    assert "different server than the one you chose" in victim.get(refused["Location"]).content.decode()


def test_each_server_is_registered_with_its_own_redirect_uri(servers, user):
    hostile, honest = servers
    client = signed_in_as(user)
    for server in (hostile, honest):
        client.post("/settings/mastodon/connect", {"instance": server.url})
    (a_app,), (b_app,) = hostile.apps.values(), honest.apps.values()
    assert a_app["redirect_uris"] != b_app["redirect_uris"]
    for app in (a_app, b_app):
        (uri,) = app["redirect_uris"]
        assert uri.startswith("http://testserver/api/platform/mastodon/callback/")
