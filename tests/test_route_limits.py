"""Routes that make Hayon act: rate limited, POST-only for browser sessions, never a 500 page.

Issue 13 items 4 (connect and refresh limits), 7 (unexpected failures answer JSON under /api/)
and 8 (a session cookie cannot trigger them with a GET).
"""
import pytest
from django.test import Client

from accounts.models import ApiToken, User
from platforms import limits, services

from .oauth_helpers import query_of

pytestmark = pytest.mark.django_db

CONNECT_LIMIT = limits.LIMITS["connect"]["user"][0]
REFRESH_LIMIT = limits.LIMITS["refresh"]["user"][0]


def test_oauth_connects_are_limited_per_user_with_retry_after(api):
    for _ in range(CONNECT_LIMIT):
        assert api.get("/api/platform/threads/connect").status_code == 200
    refused = api.get("/api/platform/threads/connect")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert refused.json()["success"] is False and "Try again in" in refused.json()["message"]


def test_refreshes_are_limited_per_user_and_platform(api, user):
    for _ in range(REFRESH_LIMIT):
        assert api.get("/api/platform/tumblr/refresh").status_code == 409  # not connected, yet counted
    assert api.get("/api/platform/tumblr/refresh").status_code == 429
    assert api.get("/api/platform/mastodon/refresh").status_code == 409  # another platform: its own budget
    other = User.objects.create_user("bob", "bob@example.com", "a long enough password")
    bob = Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user=other, name='s')[1]}")
    assert bob.get("/api/platform/tumblr/refresh").status_code == 409  # another user is not held up


def test_one_address_cannot_spread_refreshes_over_many_accounts(db):
    per_ip = limits.LIMITS["refresh"]["ip"][0]
    clients = [
        Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user=User.objects.create_user(f'u{i}', f'u{i}@example.com', 'a long enough password'), name='s')[1]}")
        for i in range(per_ip // REFRESH_LIMIT + 1)
    ]
    statuses = [client.get("/api/platform/tumblr/refresh").status_code for client in clients for _ in range(REFRESH_LIMIT)]
    assert statuses.count(429) == len(statuses) - per_ip


def test_settings_page_says_when_refresh_is_limited(signed_in):
    for _ in range(REFRESH_LIMIT):
        signed_in.post("/settings/tumblr/refresh")
    response = signed_in.post("/settings/tumblr/refresh")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert b"Too many attempts. Try again in" in response.content and b"Connected accounts" in response.content


@pytest.mark.parametrize("path", ["/api/platform/tumblr/refresh", "/api/platform/threads/connect",
                                  "/api/platform/mastodon/connect?instance=social.example"])
def test_a_session_cookie_cannot_act_with_a_get(user, path):
    """Case 8 (issue 13): SameSite=Lax sends the cookie on a top-level GET from any site."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.get(path)
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert "POST" in response.json()["message"]


def test_a_session_posts_with_its_csrf_token_to_connect(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/api/platform/threads/connect").status_code == 401  # no CSRF token
    response = client.post("/api/platform/threads/connect", HTTP_X_CSRFTOKEN=_csrf_token(client))
    assert response.status_code == 200 and query_of(response.json()["data"]["url"])["state"]


def _csrf_token(client) -> str:
    client.get("/settings")
    return client.cookies["csrftoken"].value


def test_a_bearer_token_may_still_use_get(api):
    response = api.get("/api/platform/threads/connect")
    assert response.status_code == 200 and response.json()["data"]["url"].startswith("https://")


def test_an_unexpected_failure_answers_json_not_an_html_500(api, monkeypatch):
    def broken(**kwargs):
        raise RecursionError("maximum recursion depth exceeded")  # what a deeply nested reply did

    monkeypatch.setattr(services, "refresh_connection", broken)
    response = api.get("/api/platform/mastodon/refresh")
    assert response.status_code == 500 and response["Content-Type"] == "application/json"
    assert response.json() == {"success": False, "data": None,
                               "message": "Hayon hit an unexpected problem; nothing was changed. Please try again."}


def test_an_unexpected_failure_on_the_settings_page_is_a_message(signed_in, monkeypatch):
    def broken(**kwargs):
        raise OverflowError("timestamp out of range")  # what exp=1e20 in a JWT did

    monkeypatch.setattr(services, "refresh_connection", broken)
    response = signed_in.post("/settings/mastodon/refresh", follow=True)
    assert response.status_code == 200
    assert b"Hayon hit an unexpected problem with Mastodon" in response.content


def test_a_get_cannot_disconnect_from_the_settings_page(signed_in, user):
    """Case 24: the browser's Disconnect is a POST with CSRF; a GET (a link, an image) does nothing."""
    from .conftest import seed_connection

    seed_connection(user, "mastodon", handle="me", identifiers={"instanceUrl": "https://social.example"})
    assert signed_in.get("/settings/mastodon/disconnect").status_code == 405
    assert services.account_for(user).document("mastodon")["connected"] is True
