"""Facebook Pages with Instagram: long-lived tokens, page picker, errors, revoke.

Data deletion is in test_meta_deletion.py; paging, appsecret_proof and token lifetimes against a
fake Graph API in test_facebook_graph.py."""
import pytest
import requests
import responses
from django.test import Client
from responses import matchers

from platforms.documents import read_auth
from platforms.models import PendingFlow
from platforms.services import account_for

from .conftest import SENTINEL, seed_connection
from .fixtures import meta as fx
from .oauth_helpers import callback, query_of, start
from .test_mastodon import serve_server

pytestmark = pytest.mark.django_db
GRAPH = "https://graph.facebook.com/v24.0"


def serve(rsps, *pages):
    pages = pages or (fx.page(),)
    rsps.get(f"{GRAPH}/oauth/access_token", json=fx.FB_LONG,
             match=[matchers.query_param_matcher({"grant_type": "fb_exchange_token"}, strict_match=False)])
    rsps.get(f"{GRAPH}/oauth/access_token", json=fx.FB_SHORT,
             match=[matchers.query_param_matcher({"code": "SENTINEL-7f3a9c-code"}, strict_match=False)])
    rsps.get(f"{GRAPH}/me", json=fx.FB_ME)
    rsps.get(f"{GRAPH}/me/accounts", json=fx.accounts(*pages))
    rsps.delete(f"{GRAPH}/{fx.FB_ME['id']}/permissions", json={"success": True})


def connect(client):
    url = start(client, "facebook")
    return url, callback(client, "facebook", code="SENTINEL-7f3a9c-code", state=query_of(url)["state"])


def doc(user, name="facebook"):
    return account_for(user).document(name)


@responses.activate
def test_one_page_connects_with_its_instagram_account(signed_in, user):
    serve(responses)
    url, response = connect(signed_in)
    assert url.startswith("https://www.facebook.com/v24.0/dialog/oauth?")
    assert "pages_manage_posts" in query_of(url)["scope"] and "instagram_content_publish" in query_of(url)["scope"]
    assert response["Location"] == "/settings?success=facebook_connected"
    facebook, instagram = doc(user), doc(user, "instagram")
    assert facebook["platformId"] == "101" and facebook["profile"]["displayName"] == "Corner Bakery"
    assert read_auth(facebook)["pageToken"] == "SENTINEL-7f3a9c-page-101"
    assert instagram["connected"] and instagram["platformId"] == "1784101"
    assert instagram["profile"]["handle"] == "cornerbakery_ig"
    page = signed_in.get("/settings").content.decode()
    assert "@cornerbakery_ig" in page and SENTINEL not in page


@responses.activate
def test_page_without_instagram_says_why(signed_in, user):
    serve(responses, fx.page(instagram=False))
    connect(signed_in)
    assert doc(user)["connected"] and not doc(user, "instagram")["connected"]
    assert "No Instagram professional account" in doc(user, "instagram")["health"]["reason"]
    assert "No Instagram professional account" in signed_in.get("/settings").content.decode()


@responses.activate
def test_no_page_explains_what_to_do(signed_in, user):
    serve(responses)
    responses.replace(responses.GET, f"{GRAPH}/me/accounts", json=fx.accounts())
    _, response = connect(signed_in)
    assert response["Location"] == "/settings?error=no_pages"
    assert "Create a Page" in signed_in.get(response["Location"]).content.decode()
    assert doc(user) == {}


@responses.activate
def test_several_pages_offer_a_picker_held_server_side(signed_in, user, other_user):
    serve(responses, fx.page("101", "Corner Bakery"), fx.page("202", "Night Market", instagram=False))
    _, response = connect(signed_in)
    assert response["Location"].startswith("/settings/facebook/pick?choice=")
    picker = signed_in.get(response["Location"])
    html = picker.content.decode()
    assert "Corner Bakery" in html and "Night Market" in html and "No Instagram account linked" in html
    assert SENTINEL not in html and SENTINEL not in PendingFlow.objects.get().payload
    choice = query_of(response["Location"])["choice"]
    thief = Client()
    thief.force_login(other_user)
    assert thief.post("/settings/facebook/pick", {"choice": choice, "option": "202"})["Location"] == "/settings?error=invalid_state"
    assert signed_in.post("/settings/facebook/pick", {"choice": choice, "option": "999"})["Location"] == "/settings?error=invalid_input"
    _, response = connect(signed_in)
    choice = query_of(response["Location"])["choice"]
    assert signed_in.post("/settings/facebook/pick", {"choice": choice, "option": "202"})["Location"] == "/settings?success=facebook_connected"
    assert doc(user)["platformId"] == "202" and not doc(user, "instagram")["connected"]
    assert doc(other_user) == {}


@pytest.mark.parametrize("reply", [{"status": 400, "json": fx.error(190, 460)}, {"status": 503, "body": "<html>"},
                                   {"body": requests.exceptions.ReadTimeout()}, {"status": 200, "json": {"token_type": "bearer"}}])
@responses.activate
def test_failed_long_lived_exchange_after_short_lived_leaves_nothing(signed_in, user, reply):
    """Case 20."""
    seed_connection(user, "facebook", handle="old", identifiers={"platformId": "55"})
    before = doc(user)
    serve(responses)
    responses.replace(responses.GET, f"{GRAPH}/oauth/access_token", **reply,
                      match=[matchers.query_param_matcher({"grant_type": "fb_exchange_token"}, strict_match=False)])
    _, response = connect(signed_in)
    assert response["Location"] == "/settings?error=platform_error"
    assert doc(user) == before


@pytest.mark.parametrize(
    "error, status, needs",
    [(fx.error(190, 458), "revoked", True), (fx.error(190, 463), "expired", True),
     (fx.error(190, 459), "error", True), (fx.error(4), "active", False), (fx.error(200), "error", True)],
)
@responses.activate
def test_refresh_maps_meta_errors(api, user, error, status, needs):
    serve(responses)
    seed_connection(user, "facebook", handle="page", auth={"pageToken": "SENTINEL-7f3a9c-page", "userToken": "u"},
                    identifiers={"platformId": "101"})
    seed_connection(user, "instagram", handle="ig", auth={"pageToken": "SENTINEL-7f3a9c-page"}, identifiers={"platformId": "1784101"})
    responses.get(f"{GRAPH}/101", status=400, json=error)
    assert api.get("/api/platform/facebook/refresh").status_code == 502
    for name in ("facebook", "instagram"):
        health = doc(user, name)["health"]
        assert health["status"] == status and health["needsReconnection"] is needs, name


@responses.activate
def test_refresh_rereads_page_and_instagram(api, user):
    serve(responses)
    seed_connection(user, "facebook", handle="page", auth={"pageToken": "SENTINEL-7f3a9c-page", "userToken": "u"},
                    identifiers={"platformId": "101"})
    page = {k: v for k, v in fx.page(name="Renamed Bakery").items() if k != "access_token"}
    responses.get(f"{GRAPH}/101", json=page)
    data = api.get("/api/platform/facebook/refresh").json()["data"]
    assert data["profile"]["displayName"] == "Renamed Bakery"
    assert doc(user, "instagram")["profile"]["displayName"] == "Renamed Bakery IG"


@responses.activate
def test_disconnect_revokes_permissions_and_takes_instagram_along(signed_in, user):
    serve(responses)
    connect(signed_in)
    page = signed_in.post("/settings/facebook/disconnect", follow=True).content.decode()
    assert "access revoked" in page
    (revoke,) = [c for c in responses.calls if c.request.method == "DELETE"]
    sent = query_of(revoke.request.url)
    assert sent["access_token"] == "1234567890|facebook-app-secret"  # the app token: the user token lapses
    assert len(sent["appsecret_proof"]) == 64
    assert doc(user) == {"connected": False} and doc(user, "instagram") == {"connected": False}


@responses.activate
def test_mastodon_state_fails_at_the_facebook_callback(signed_in, user):
    """Case 16."""
    serve_server(responses)
    state = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    response = callback(signed_in, "facebook", code="SENTINEL-7f3a9c-code", state=state)
    assert response["Location"] == "/settings?error=invalid_state"
    assert not any("graph.facebook.com" in c.request.url for c in responses.calls)


@responses.activate
def test_threads_state_fails_at_the_facebook_callback(signed_in, user):
    """Case 16 where only the platform binding can refuse: neither flow has a per-server redirect URI."""
    state = query_of(start(signed_in, "threads"))["state"]
    response = callback(signed_in, "facebook", code="SENTINEL-7f3a9c-code", state=state)
    assert response["Location"] == "/settings?error=invalid_state"
    assert not any("facebook.com" in c.request.url for c in responses.calls) and doc(user) == {}


@responses.activate
def test_facebook_and_mastodon_flows_finished_in_reverse_order(signed_in, user):
    """Case 8."""
    serve(responses)
    serve_server(responses)
    fb_state = query_of(start(signed_in, "facebook"))["state"]
    m_state = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    assert callback(signed_in, "mastodon", code="c", state=m_state)["Location"].endswith("mastodon_connected")
    assert callback(signed_in, "facebook", code="SENTINEL-7f3a9c-code", state=fb_state)["Location"].endswith("facebook_connected")
    assert doc(user)["connected"] and doc(user, "mastodon")["connected"]
