"""One platform account, one Hayon user, guaranteed by the database (issue 12, items 3 and 4)."""
import importlib
import itertools
import threading

import httpx
import pytest
import responses
import respx
from django.apps import apps
from django.db import IntegrityError, connection, transaction
from django.test import Client

from accounts.models import ApiToken, User
from platforms import services
from platforms.models import AccountClaim

from .conftest import TXT_RECORDS, seed_connection
from .fixtures import bluesky as fx
from .fixtures import meta as metafx

GRAPH = "https://graph.facebook.com/v24.0"


def connect_bluesky(client: Client):
    return client.post("/api/platform/bluesky/connect", content_type="application/json",
                       data={"identifier": fx.HANDLE, "appPassword": "abcd-efgh-ijkl-mnop"})


@pytest.fixture
def bluesky_pds():
    TXT_RECORDS[fx.HANDLE] = fx.DID
    tags = itertools.count(1)
    with respx.mock(assert_all_called=False) as pds:
        pds.get(f"https://plc.directory/{fx.DID}").respond(json=fx.PLC_DOCUMENT)
        pds.post(f"{fx.PDS}/xrpc/com.atproto.server.createSession").mock(
            side_effect=lambda request: httpx.Response(200, json=fx.session(tag=f"s{next(tags)}")))
        pds.get(f"{fx.PDS}/xrpc/app.bsky.actor.getProfile").respond(json=fx.PROFILE)
        pds.post(f"{fx.PDS}/xrpc/com.atproto.server.deleteSession").respond(200)
        yield pds
    TXT_RECORDS.clear()


@pytest.mark.django_db(transaction=True)
def test_two_users_connecting_one_account_at_once_one_wins(bluesky_pds, monkeypatch):
    """Both pass every check before either writes (a barrier holds them there where the database
    lets them); the database still lets only one hold the account."""
    users = [User.objects.create_user(name, f"{name}@example.com", "a long enough password") for name in ("ann", "bob")]
    clients = [Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user=u, name='s')[1]}") for u in users]
    barrier = threading.Barrier(2, timeout=1.5)  # SQLite lets one writer in at a time: then it times out
    real_locked = services._locked

    def locked_together(user):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        return real_locked(user)

    monkeypatch.setattr(services, "_locked", locked_together)
    replies = {}

    def connect(index):
        try:
            replies[index] = connect_bluesky(clients[index])
        finally:
            connection.close()

    threads = [threading.Thread(target=connect, args=(i,)) for i in range(2)]
    [t.start() for t in threads]
    [t.join(timeout=30) for t in threads]
    statuses = sorted(r.status_code for r in replies.values())
    assert statuses == [200, 409]
    loser = next(r for r in replies.values() if r.status_code == 409)
    assert loser.json()["message"] == "This Bluesky account is already connected to another Hayon user."
    holders = [u for u in users if services.account_for(u).document("bluesky").get("connected")]
    assert len(holders) == 1
    assert list(AccountClaim.objects.values_list("platform", "account_key", "user")) == [("bluesky", fx.DID, holders[0].pk)]
    deleted = [c for c in bluesky_pds.calls if c.request.url.path.endswith("deleteSession")]
    assert len(deleted) == 1  # the loser's fresh session was revoked, the winner's kept


@pytest.mark.django_db
def test_the_database_refuses_a_second_holder(user, other_user):
    AccountClaim.objects.create(platform="mastodon", account_key="https://social.example/users/me", user=user)
    with pytest.raises(IntegrityError), transaction.atomic():
        AccountClaim.objects.create(platform="mastodon", account_key="https://social.example/users/me", user=other_user)


@pytest.mark.django_db
def test_disconnecting_gives_the_account_up_for_another_user(user, other_user, bluesky_pds):
    mine, theirs = (Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user=u, name='s')[1]}") for u in (user, other_user))
    assert connect_bluesky(mine).status_code == 200
    assert connect_bluesky(theirs).status_code == 409
    assert mine.delete("/api/platform/bluesky/disconnect").status_code == 200
    assert not AccountClaim.objects.exists()
    assert connect_bluesky(theirs).status_code == 200
    assert AccountClaim.objects.get().user == other_user
    found = theirs.get("/api/platform/find").json()["data"]["bluesky"]
    assert found["connected"] and found["did"] == fx.DID and "accountKey" not in found  # the document's shape


@pytest.mark.django_db
def test_a_claim_its_holder_no_longer_uses_passes_on(user, other_user, bluesky_pds):
    """A path that forgot a connection but kept its claim (say, Meta's data deletion) blocks no one."""
    AccountClaim.objects.create(platform="bluesky", account_key=fx.DID, user=other_user)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user=user, name='s')[1]}")
    assert connect_bluesky(client).status_code == 200
    assert AccountClaim.objects.get().user == user


@pytest.mark.django_db
def test_the_migration_claims_every_connected_account(user, other_user):
    seed_connection(user, "mastodon", handle="me")
    seed_connection(user, "tumblr", handle="blog")
    seed_connection(other_user, "mastodon", handle="me")  # already held twice: the first row keeps it
    seed_connection(other_user, "threads", handle="t")
    account = services.account_for(other_user)
    account.set_document("threads", {**account.document("threads"), "connected": False})
    account.save()
    migration = importlib.import_module("platforms.migrations.0004_account_claims_and_quotas")
    migration.claim_connected_accounts(apps, None)
    assert sorted(AccountClaim.objects.values_list("platform", "account_key", "user")) == [
        ("mastodon", "mastodon|me", user.pk), ("tumblr", "tumblr|blog", user.pk)]


# -- item 3: linked documents, the same on connect and on refresh ------------------------------------
def facebook_with_instagram(user):
    seed_connection(user, "facebook", handle="page", auth={"pageToken": "SENTINEL-7f3a9c-page", "userToken": "u"},
                    identifiers={"platformId": "101"})
    seed_connection(user, "instagram", handle="ig", auth={"pageToken": "SENTINEL-7f3a9c-page"},
                    identifiers={"platformId": "1784101"})


@responses.activate
@pytest.mark.django_db
def test_an_instagram_unlinked_from_the_page_is_disconnected_at_refresh(user):
    facebook_with_instagram(user)
    AccountClaim.objects.create(platform="instagram", account_key="instagram|ig", user=user)
    page = {k: v for k, v in metafx.page(instagram=False).items() if k != "access_token"}
    responses.get(f"{GRAPH}/101", json=page)
    services.refresh_connection(user=user, provider=services_provider("facebook"))
    instagram = services.account_for(user).document("instagram")
    assert instagram["connected"] is False and "No Instagram professional account" in instagram["health"]["reason"]
    assert not AccountClaim.objects.filter(platform="instagram").exists()
    assert services.account_for(user).document("facebook")["health"]["status"] == "active"


@responses.activate
@pytest.mark.django_db
def test_an_instagram_account_held_by_another_user_is_not_linked_twice(user, other_user):
    AccountClaim.objects.create(platform="instagram", account_key="ig:1784101", user=other_user)
    seed_connection(other_user, "instagram", handle="ig")
    account = services.account_for(other_user)
    account.set_document("instagram", {**account.document("instagram"), "accountKey": "ig:1784101"})
    account.save()
    facebook_with_instagram(user)
    page = {k: v for k, v in metafx.page().items() if k != "access_token"}
    responses.get(f"{GRAPH}/101", json=page)
    services.refresh_connection(user=user, provider=services_provider("facebook"))
    instagram = services.account_for(user).document("instagram")
    assert instagram["connected"] is False and "another Hayon user" in instagram["health"]["reason"]
    assert services.account_for(other_user).document("instagram")["connected"] is True


def services_provider(name):
    from platforms.providers import get

    return get(name)
