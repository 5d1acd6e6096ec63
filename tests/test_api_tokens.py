from datetime import timedelta

import pytest
from django.contrib.auth.hashers import make_password
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiToken, User, hash_token

pytestmark = pytest.mark.django_db


def test_created_token_is_shown_once_and_stored_only_as_a_hash(signed_in, user):
    response = signed_in.post("/settings/tokens", {"name": "deploy script", "lifetime": "90"})
    page = response.content.decode()
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    raw = page.split('class="token-value" type="text" readonly value="')[1].split('"')[0]
    assert raw.startswith("hayon_")
    token = ApiToken.objects.get(user=user)
    assert token.token_hash == hash_token(raw) and raw not in str(ApiToken.objects.values().get())
    again = signed_in.get("/settings/tokens").content.decode()
    assert raw not in again and "deploy script" in again


def test_bearer_token_authenticates_the_api_and_records_last_use(api, user):
    response = api.get("/api/platform/find")
    assert response.status_code == 200 and response.json()["success"] is True
    assert ApiToken.objects.get(user=user).last_used_at is not None


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer nope", "Basic YWxpY2U6cHc=", "Token hayon_x"],
)
def test_missing_or_bad_token_gets_401_json_never_a_redirect(header):
    client = Client(HTTP_AUTHORIZATION=header) if header else Client()
    response = client.get("/api/platform/find")
    assert response.status_code == 401
    assert response.json()["success"] is False and response.json()["message"]


def test_token_in_query_string_is_not_accepted(api_token):
    assert Client().get(f"/api/platform/find?token={api_token}&access_token={api_token}").status_code == 401


def test_revoked_token_stops_working(signed_in, user, api_token):
    token = ApiToken.objects.get(user=user)
    response = signed_in.post(f"/settings/tokens/{token.pk}/revoke", follow=True)
    assert response.redirect_chain == [("/settings/tokens", 302)]
    assert f"API token “{token.name}” revoked." in response.content.decode()
    assert Client(HTTP_AUTHORIZATION=f"Bearer {api_token}").get("/api/platform/find").status_code == 401


def test_tokens_have_their_own_settings_page(signed_in, user, api_token):
    page = signed_in.get("/settings/tokens").content.decode()
    token = ApiToken.objects.get(user=user)
    assert f"Revoke token {token.name}" in page and "never" in page  # not used yet
    assert '<a href="/settings/tokens" aria-current="page">API tokens</a>' in page
    settings_page = signed_in.get("/settings").content.decode()
    assert "<a href=\"/settings/tokens\">API tokens</a>" in settings_page and "Revoke token" not in settings_page


def test_token_without_a_name_is_refused_with_the_reason(signed_in, user):
    response = signed_in.post("/settings/tokens", {"name": "  ", "lifetime": "90"})
    assert response.status_code == 400 and "This field is required." in response.content.decode()
    assert not ApiToken.objects.filter(user=user).exists()


def test_user_cannot_revoke_another_users_token(other_user, api_token, user):
    client = Client()
    client.force_login(other_user)
    token = ApiToken.objects.get(user=user)
    assert client.post(f"/settings/tokens/{token.pk}/revoke").status_code == 404
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_inactive_users_token_is_refused(user, api):
    user.is_active = False
    user.save()
    assert api.get("/api/platform/find").status_code == 401


def test_session_delete_without_csrf_is_refused_but_bearer_delete_works(user, api):
    """Security case 24: a cookie-only DELETE needs CSRF; a Bearer DELETE does not."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.delete("/api/platform/mastodon/disconnect").status_code == 401
    assert api.delete("/api/platform/mastodon/disconnect").status_code == 200


# -- expiry, last use, password changes (issue 13 #14) ------------------------------------------

def create_token(client, *, name="script", lifetime="90", keep=False) -> str:
    data = {"name": name, "lifetime": lifetime, **({"survives_password_change": "on"} if keep else {})}
    page = client.post("/settings/tokens", data).content.decode()
    return page.split('class="token-value" type="text" readonly value="')[1].split('"')[0]


def find(token):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/platform/find")


@pytest.mark.parametrize("lifetime, days", [("30", 30), ("90", 90), ("365", 365), ("never", None)])
def test_a_token_gets_the_lifetime_chosen_for_it(signed_in, user, lifetime, days):
    create_token(signed_in, lifetime=lifetime)
    token = ApiToken.objects.get(user=user)
    if days is None:
        assert token.expires_at is None
    else:
        assert abs(token.expires_at - (timezone.now() + timedelta(days=days))) < timedelta(minutes=1)


def test_an_expired_token_is_refused_and_shown_as_expired(signed_in, user):
    raw = create_token(signed_in, lifetime="30")
    assert find(raw).status_code == 200
    ApiToken.objects.filter(user=user).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = find(raw)
    assert response.status_code == 401 and response.json()["message"] == "This API token has expired."
    assert '<span class="pill warn">expired</span>' in signed_in.get("/settings/tokens").content.decode()


def test_an_unknown_lifetime_is_refused(signed_in, user):
    response = signed_in.post("/settings/tokens", {"name": "x", "lifetime": "9999"})
    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_a_password_change_stops_tokens_unless_kept_on_purpose(signed_in, user):
    plain, kept = create_token(signed_in, name="plain"), create_token(signed_in, name="kept", keep=True)
    response = signed_in.post("/password", {"old_password": "correct horse battery",
                                            "new_password1": "brand new secret 456", "new_password2": "brand new secret 456"},
                              follow=True)
    assert "Your password has been changed. 1 API token stopped working with it" in response.content.decode()
    refused = find(plain)
    assert refused.status_code == 401
    assert refused.json()["message"] == "This API token stopped working when the password was changed."
    assert find(kept).status_code == 200
    page = signed_in.get("/settings/tokens").content.decode()
    assert "stopped by a password change" in page and "kept after a password change" in page


@pytest.mark.parametrize("how", ["admin", "set_password"])
def test_any_password_change_counts(user, api_token, how):
    """The admin's password form and `changepassword` end in set_password() too."""
    if how == "admin":
        root = User.objects.create_superuser("root", "r@example.com", "root pw 12345")
        staff = Client()
        staff.force_login(root)
        response = staff.post(f"/admin/accounts/user/{user.pk}/password/",
                              {"password1": "brand new secret 456", "password2": "brand new secret 456", "usable_password": "true"})
        assert response.status_code == 302
    else:
        user.set_password("brand new secret 456")
        user.save()
    assert find(api_token).status_code == 401


def test_signing_in_with_an_outdated_hash_is_not_a_password_change(user, api_token):
    """Django re-hashes a correct password whose stored hash is outdated: the same password."""
    user.password = make_password("correct horse battery", salt="short", hasher="md5")  # too little salt
    user.save()
    client = Client()
    assert client.post("/login", {"username": "alice", "password": "correct horse battery"}).status_code == 302
    user.refresh_from_db()
    assert "$short$" not in user.password, "the hash was upgraded"
    assert find(api_token).status_code == 200
    user.password = make_password("correct horse battery", salt="short", hasher="md5")
    assert user.check_password("correct horse battery")
    user.save()  # a later save of the same object (say, the admin's) must not count it either
    assert find(api_token).status_code == 200


def test_last_use_is_listed_and_written_at_most_once_a_minute(signed_in, user, api_token):
    with CaptureQueriesContext(connection) as first:
        find(api_token)
    with CaptureQueriesContext(connection) as second:
        find(api_token)
    writes = [[q["sql"] for q in ctx.captured_queries if q["sql"].startswith("UPDATE") and "apitoken" in q["sql"]]
              for ctx in (first, second)]
    assert len(writes[0]) == 1 and writes[1] == []
    ApiToken.objects.filter(user=user).update(last_used_at=timezone.now() - timedelta(minutes=5))
    find(api_token)
    assert timezone.now() - ApiToken.objects.get(user=user).last_used_at < timedelta(seconds=30)
    page = signed_in.get("/settings/tokens").content.decode()
    assert "0\xa0minutes ago" in page
