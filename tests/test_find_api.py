import json

import pytest
import responses
from django.test import Client

from platforms.models import PLATFORM_FIELDS

from .conftest import SENTINEL, seed_connection

pytestmark = pytest.mark.django_db
SECRET_NAMES = ("accessJwt", "refreshJwt", "accessToken", "refreshToken", "oauthToken", "oauthTokenSecret",
                "client_secret", "code_verifier", "appPassword", '"auth"', "gAAAA")


def test_find_returns_every_platform_key_even_with_nothing_connected(api):
    data = api.get("/api/platform/find").json()["data"]
    assert set(data) == set(PLATFORM_FIELDS)
    assert all(doc == {"connected": False} for doc in data.values())


def test_find_shows_a_connection_in_the_contract_shape_without_secrets(api, user):
    seed_connection(user, "mastodon", handle="yourname",
                    identifiers={"instanceUrl": "https://mastodon.social", "accountId": "109876543210"})
    response = api.get("/api/platform/find")
    body = response.content.decode()
    mastodon = response.json()["data"]["mastodon"]
    assert mastodon["connected"] is True
    assert mastodon["instanceUrl"] == "https://mastodon.social" and mastodon["accountId"] == "109876543210"
    assert mastodon["profile"] == {"displayName": "Yourname Example", "handle": "yourname", "avatar": "https://cdn.example/a.png"}
    assert mastodon["health"]["status"] == "active" and mastodon["health"]["needsReconnection"] is False
    assert mastodon["connectedAt"] and "checkedAt" in mastodon["health"]
    assert SENTINEL not in body and not any(name in body for name in SECRET_NAMES)
    assert "no-store" in response["Cache-Control"]


def test_unknown_platform_is_404_json(api):
    for method, path in (("get", "/api/platform/myspace/refresh"), ("delete", "/api/platform/myspace/disconnect"),
                         ("get", "/api/platform/myspace/connect"), ("get", "/api/nothing-here")):
        response = getattr(api, method)(path)
        assert response.status_code == 404, path
        assert response.json()["success"] is False


def test_wrong_method_is_405_json(api):
    response = api.post("/api/platform/find")
    assert response.status_code == 405 and response["Allow"] == "GET"
    assert api.get("/api/platform/mastodon/disconnect").status_code == 405


@responses.activate  # no platform answers: revocation fails, and the local secrets go anyway
def test_disconnect_works_for_every_platform_through_the_api(api, user):
    for platform in ("bluesky", "tumblr", "threads", "mastodon"):
        seed_connection(user, platform, handle=f"me-{platform}", identifiers={"instanceUrl": "https://m.example"})
    for platform in ("bluesky", "tumblr", "threads", "mastodon", "facebook"):
        response = api.delete(f"/api/platform/{platform}/disconnect")
        assert response.status_code == 200, (platform, response.content)
    data = api.get("/api/platform/find").json()["data"]
    assert all(doc == {"connected": False} for doc in data.values())


def test_users_cannot_see_each_others_connections(user, other_user):
    """Security case 27: the API only ever reads the caller's own document."""
    seed_connection(user, "mastodon", handle="alice-only")
    client = Client()
    client.force_login(other_user)
    body = client.get("/api/platform/find").content.decode()
    assert "alice-only" not in body and json.loads(body)["data"]["mastodon"] == {"connected": False}
