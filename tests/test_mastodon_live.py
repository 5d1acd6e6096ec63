"""Mastodon against Mastodon- and Takahē-shaped servers on 127.0.0.1 (real HTTP, real OAuth).

Account keys on the account's own URI (issue 13, item 10), Takahē's 400 for a revoked token
(issue 12, item 8), limits read again by upkeep (issue 12, item 9), and a fake that refuses what a
real server refuses.
"""
import io
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from accounts.models import User
from platforms.documents import iso
from platforms.models import SocialAccount
from platforms.services import account_for

from .fakes.mastodon import FakeMastodon


@pytest.fixture
def private_hosts(settings, fake_dns, monkeypatch):
    settings.HAYON_ALLOW_PRIVATE_HOSTS = True  # the fakes are on loopback; never in production
    settings.MASTODON_INSTANCE_URL = ""
    monkeypatch.setitem(fake_dns, "localhost", ["127.0.0.1"])


def signed_in_as(name: str) -> tuple[User, Client]:
    user = User.objects.create_user(name, f"{name}@example.com", "a long enough password")
    client = Client()
    client.force_login(user)
    return user, client


def connect(client, instance: str) -> str:
    """Connect, let the server approve, come back: where Hayon lands."""
    url = client.post("/settings/mastodon/connect", {"instance": instance})["Location"]
    for _ in range(5):
        if url.startswith("http://testserver/"):
            break
        url = requests.get(url, allow_redirects=False, timeout=5).headers["Location"]
    parts = urlsplit(url)
    return client.get(f"{parts.path}?{parts.query}")["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize("first, second", [("localhost", "127.0.0.1"), ("127.0.0.1", "localhost")])
def test_one_account_cannot_be_linked_twice_through_two_spellings_of_its_server(private_hosts, first, second):
    with FakeMastodon(auto_approve=True) as server:
        port = urlsplit(server.url).port
        alice, alice_client = signed_in_as("alice")
        bob, bob_client = signed_in_as("bob")
        assert connect(alice_client, f"http://{first}:{port}") == "/settings?success=mastodon_connected"
        assert connect(bob_client, f"http://{second}:{port}") == "/settings?error=account_in_use"
    assert account_for(alice).document("mastodon")["accountKey"] == f"http://127.0.0.1:{port}/users/tester"
    assert not account_for(bob).document("mastodon").get("connected")


@pytest.mark.django_db
def test_takahe_revocation_answered_with_400_needs_reconnection(private_hosts):
    with FakeMastodon(software="takahe", auto_approve=True) as server:
        user, client = signed_in_as("alice")
        assert connect(client, server.url) == "/settings?success=mastodon_connected"
        doc = account_for(user).document("mastodon")
        assert doc["software"] == {"name": "Takahē", "version": "0.11.0"}
        assert doc["limits"]["videoSizeLimit"] == 0 and "image/avif" in doc["limits"]["supportedMimeTypes"]
        (app,) = server.apps.values()
        assert app["scopes"] == ["read:accounts", "write:statuses", "write:media"]  # no discovery: granular
        server.revoke_all()
        client.post("/settings/mastodon/refresh")
    health = account_for(user).document("mastodon")["health"]
    host = urlsplit(server.url).netloc
    assert health["status"] == "revoked" and health["needsReconnection"] is True
    assert health["reason"] == f"{host} (Takahē) says Hayon's access was revoked."


@pytest.mark.django_db(transaction=True)
def test_upkeep_reads_the_limits_again(private_hosts):
    with FakeMastodon(auto_approve=True) as server:
        user, client = signed_in_as("alice")
        connect(client, server.url)
        assert account_for(user).document("mastodon")["limits"]["maxCharacters"] == 700
        server.max_characters = 1000  # the administrator raises the limit
        account = SocialAccount.objects.get(user=user)
        doc = account.document("mastodon")
        doc["nextCheckAt"] = iso(timezone.now() - timedelta(minutes=1))
        account.set_document("mastodon", doc)
        account.save()
        call_command("refresh_connections", "--no-progress", "--processes", "1", stdout=io.StringIO(),
                     stderr=io.StringIO())
    assert account_for(user).document("mastodon")["limits"]["maxCharacters"] == 1000


@pytest.mark.django_db
def test_the_fake_refuses_what_a_real_server_refuses(private_hosts):
    """So that a wrong client secret, redirect URI or PKCE verifier fails a test, as it would in life."""
    with FakeMastodon() as server:
        registered = requests.post(f"{server.url}/api/v1/apps", timeout=5, data={
            "client_name": "t", "redirect_uris": "http://testserver/cb", "scopes": "profile"}).json()

        def code(**extra):
            decided = requests.get(f"{server.url}/oauth/decide", allow_redirects=False, timeout=5, params={
                "decision": "approve", "client_id": registered["client_id"], "redirect_uri": "http://testserver/cb",
                "state": "s", **extra})
            return decided.headers["Location"].split("code=")[1].split("&")[0]

        def token(**changes):
            form = {"grant_type": "authorization_code", "client_id": registered["client_id"],
                    "client_secret": registered["client_secret"], "redirect_uri": "http://testserver/cb", **changes}
            return requests.post(f"{server.url}/oauth/token", data=form, timeout=5).status_code

        assert token(code=code(), client_secret="wrong") == 401
        assert token(code=code(), redirect_uri="http://testserver/other") == 400
        challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636 appendix B
        assert token(code=code(code_challenge=challenge), code_verifier="not-the-verifier") == 400
        assert token(code=code(code_challenge=challenge),
                     code_verifier="dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == 200
        assert requests.get(f"{server.url}/oauth/authorize", timeout=5, params={
            "client_id": registered["client_id"], "redirect_uri": "http://evil.example/cb"}).status_code == 400
