import pytest
from django.test import Client

from accounts.models import ApiToken, hash_token

pytestmark = pytest.mark.django_db


def test_created_token_is_shown_once_and_stored_only_as_a_hash(signed_in, user):
    response = signed_in.post("/settings/tokens", {"name": "deploy script"})
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
    response = signed_in.post("/settings/tokens", {"name": "  "})
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
