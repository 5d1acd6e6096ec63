"""Tumblr keyed on the primary blog's uuid, not its renamable name (issue 12, item 15), against a
fake Tumblr that checks every OAuth 1.0a signature with the consumer and token secrets."""
import pytest
import requests
from django.test import Client

from platforms.services import account_for

from .fakes.platforms import FakeTumblr
from .fixtures.consent import point_at_fakes, through_consent  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


def stored(user):
    return account_for(user).document("tumblr")


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_connecting_keys_the_account_on_the_primary_blogs_uuid(signed_in, user, point_at_fakes):
    with point_at_fakes(FakeTumblr()) as fake:
        assert through_consent(signed_in, fake, "tumblr")["Location"] == "/settings?success=tumblr_connected"
        assert stored(user)["accountKey"] == "t:fake-primary"


def test_a_renamed_blog_stays_the_same_account(signed_in, user, other_user, point_at_fakes):
    """Case 15a: after a rename, refresh shows the new name and the account is still the one linked:
    another Hayon user connecting the same Tumblr account is refused, even before any refresh."""
    with point_at_fakes(FakeTumblr()) as fake:
        through_consent(signed_in, fake, "tumblr")
        fake.rename_blog("t:fake-primary", "renamedblogger")
        second = through_consent(client_of(other_user), fake, "tumblr")
        assert second["Location"] == "/settings?error=account_in_use"
        assert stored(other_user) == {}
        signed_in.post("/settings/tumblr/refresh")
        doc = stored(user)
        assert doc["profile"]["handle"] == "renamedblogger" and doc["blogHostname"] == "renamedblogger.tumblr.com"
        assert doc["accountKey"] == "t:fake-primary" and doc["health"]["status"] == "active"


def test_someone_who_takes_the_old_name_can_connect(signed_in, user, other_user, point_at_fakes):
    """Case 15b: a blog name freed by a rename belongs to whoever takes it next."""
    with point_at_fakes(FakeTumblr()) as fake:
        through_consent(signed_in, fake, "tumblr")
        fake.rename_blog("t:fake-primary", "renamedblogger")
        fake.add_account("newcomer", "fakeblogger", "t:newcomer-primary")
        fake.signed_in = "newcomer"
        assert through_consent(client_of(other_user), fake, "tumblr")["Location"] == "/settings?success=tumblr_connected"
        assert stored(other_user)["profile"]["handle"] == "fakeblogger" and stored(user)["connected"]


def test_a_primary_blog_without_a_uuid_is_refused_with_a_reason(signed_in, user, point_at_fakes):
    with point_at_fakes(FakeTumblr()) as fake:
        del fake.accounts["fakeblogger"][0]["uuid"]
        assert through_consent(signed_in, fake, "tumblr")["Location"] == "/settings?error=platform_error"
        assert stored(user) == {}


def test_the_fake_checks_signatures_with_the_consumer_and_token_secrets(signed_in, user, point_at_fakes, settings):
    """So a signing mistake in Hayon fails against the fake as it would at Tumblr."""
    with point_at_fakes(FakeTumblr()) as fake:
        through_consent(signed_in, fake, "tumblr")
        assert requests.get(f"{fake.url}/v2/user/info", timeout=5).status_code == 401  # unsigned
        settings.TUMBLR_CONSUMER_SECRET = "not-the-secret"
        signed_in.post("/settings/tumblr/refresh")
        assert stored(user)["health"]["status"] == "revoked"  # Tumblr answers 401 to a bad signature
        settings.TUMBLR_CONSUMER_SECRET = fake.consumer_secret
        signed_in.post("/settings/tumblr/refresh")
        assert stored(user)["health"]["status"] == "active"


def _rekey_to_the_old_blog_name(user, name="fakeblogger"):
    """What a connection stored before this change looked like: keyed (and claimed) on the blog name."""
    from platforms import claims
    from platforms.models import AccountClaim

    account = account_for(user)
    doc = stored(user)
    AccountClaim.objects.filter(platform="tumblr", user=user).delete()
    account.set_document("tumblr", {**doc, "accountKey": f"user:{name}"})
    account.save()
    assert claims.take(user=user, platform="tumblr", account_key=f"user:{name}")


def test_a_connection_keyed_on_the_old_name_moves_its_claim_at_refresh(signed_in, user, other_user, point_at_fakes):
    """The new key is claimed at the first refresh, so the one-user-per-account guarantee follows it."""
    from platforms.models import AccountClaim

    with point_at_fakes(FakeTumblr()) as fake:
        through_consent(signed_in, fake, "tumblr")
        _rekey_to_the_old_blog_name(user)
        signed_in.post("/settings/tumblr/refresh")
        assert stored(user)["accountKey"] == "t:fake-primary"
        assert list(AccountClaim.objects.filter(platform="tumblr").values_list("account_key", "user")) == [
            ("t:fake-primary", user.pk)]
        second = through_consent(client_of(other_user), fake, "tumblr")
        assert second["Location"] == "/settings?error=account_in_use" and stored(other_user) == {}


def test_a_new_key_held_by_another_user_leaves_the_old_key_in_place(signed_in, user, other_user, point_at_fakes):
    from platforms.models import AccountClaim

    with point_at_fakes(FakeTumblr()) as fake:
        through_consent(signed_in, fake, "tumblr")
        _rekey_to_the_old_blog_name(user)
        AccountClaim.objects.create(platform="tumblr", account_key="t:fake-primary", user=other_user)
        account = account_for(other_user)
        account.set_document("tumblr", {"connected": True, "accountKey": "t:fake-primary"})
        account.save()
        signed_in.post("/settings/tumblr/refresh")
        assert stored(user)["accountKey"] == "user:fakeblogger" and stored(user)["health"]["status"] == "active"
        assert AccountClaim.objects.get(platform="tumblr", account_key="t:fake-primary").user == other_user
