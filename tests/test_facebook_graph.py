"""Facebook against a fake Graph API that checks what Meta checks (issue 12, item 14).

The fake requires appsecret_proof on every call with a token, pages /me/accounts, lets the
long-lived user token lapse after 60 days, and checks the app secret and redirect URI.
"""
import hashlib
import hmac
import io
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from django.core.management import call_command

from platforms.documents import read_auth
from platforms.services import account_for

from .fakes.platforms import DAY, FakeFacebook
from .fixtures import meta as fx
from .fixtures.consent import point_at_fakes, through_consent  # noqa: F401 (fixture)
from .oauth_helpers import callback, query_of, start

pytestmark = pytest.mark.django_db
GRAPH = "https://graph.facebook.com/v24.0"


def doc(user, name="facebook"):
    return account_for(user).document(name)


def test_pages_after_the_first_25_are_offered(signed_in, user, point_at_fakes):
    """Case 14a: /me/accounts answers 25 Pages at a time; the 30th is on the second page."""
    with point_at_fakes(FakeFacebook(pages=30)) as fake:
        response = through_consent(signed_in, fake, "facebook")
        html = signed_in.get(response["Location"]).content.decode()
        assert "Fake Bakery 25" in html and "Fake Bakery 26" in html and "Fake Bakery 30" in html
        choice = query_of(response["Location"])["choice"]
        picked = signed_in.post("/settings/facebook/pick", {"choice": choice, "option": "1030"})
        assert picked["Location"] == "/settings?success=facebook_connected"
        assert doc(user)["platformId"] == "1030"
        accounts = [c for c in fake.calls if c.path.endswith("/accounts")]
        assert len(accounts) == 2 and accounts[1].query["after"]


@pytest.mark.parametrize("page_size, calls, last", [(5, 10, 50), (100, 3, 250)])
def test_paging_is_bounded(signed_in, user, point_at_fakes, page_size, calls, last):
    """Case 14b: a Meta user with endless Pages costs at most 10 calls and offers at most 250."""
    with point_at_fakes(FakeFacebook(pages=400, page_size=page_size)) as fake:
        response = through_consent(signed_in, fake, "facebook")
        html = signed_in.get(response["Location"]).content.decode()
        assert f"Fake Bakery {last}<" in html and f"Fake Bakery {last + 1}<" not in html
        assert len([c for c in fake.calls if c.path.endswith("/accounts")]) == calls


@responses.activate
def test_a_paging_link_to_another_host_is_not_followed(signed_in, user):
    """Case 14c: `paging.next` is untrusted input: the user token never leaves the Graph host."""
    responses.get(f"{GRAPH}/oauth/access_token", json=fx.FB_SHORT,
                  match=[responses.matchers.query_param_matcher({"code": "c"}, strict_match=False)])
    responses.get(f"{GRAPH}/oauth/access_token", json=fx.FB_LONG,
                  match=[responses.matchers.query_param_matcher({"grant_type": "fb_exchange_token"}, strict_match=False)])
    responses.get(f"{GRAPH}/me", json=fx.FB_ME)
    first = fx.accounts(fx.page("101", "Corner Bakery"), fx.page("202", "Night Market"))
    for link in ("https://graph.evil.example/v24.0/1/accounts?after=x", "http://graph.facebook.com/v24.0/1/accounts?after=x",
                 "https://graph.facebook.com.evil.example/v24.0/1/accounts", "https://graph.facebook.com/v99.0/1/accounts"):
        first["paging"]["next"] = link
        responses.upsert(responses.GET, f"{GRAPH}/me/accounts", json=first)
        url = start(signed_in, "facebook")
        response = callback(signed_in, "facebook", code="c", state=query_of(url)["state"])
        assert response["Location"].startswith("/settings/facebook/pick?choice="), link
        html = signed_in.get(response["Location"]).content.decode()
        assert "Corner Bakery" in html and "Night Market" in html
    assert all(urlsplit(c.request.url).netloc == "graph.facebook.com" and c.request.url.startswith("https://")
               for c in responses.calls)


@pytest.mark.django_db(transaction=True)  # upkeep works from threads, which see only committed rows
def test_every_graph_call_carries_a_valid_appsecret_proof(signed_in, user, point_at_fakes, settings):
    """Case 14d: an app with "Require App Secret" accepts connect, refresh, upkeep and disconnect."""
    with point_at_fakes(FakeFacebook(pages=1)) as fake:
        assert through_consent(signed_in, fake, "facebook")["Location"] == "/settings?success=facebook_connected"
        assert signed_in.post("/settings/facebook/refresh", follow=True).status_code == 200
        assert doc(user)["health"]["status"] == "active"
        stored = account_for(user)
        stored.facebook["nextCheckAt"] = "2000-01-01T00:00:00Z"
        stored.save()
        call_command("refresh_connections", "--no-progress", "--processes", "1", stdout=io.StringIO())
        assert doc(user)["health"]["status"] == "active" and doc(user)["health"]["reason"] == ""
        page = signed_in.post("/settings/facebook/disconnect", follow=True).content.decode()
        assert "access revoked" in page and fake.permissions_deleted == 1
        with_token = [c for c in fake.calls if c.query.get("access_token")]
        assert {c.path for c in with_token} >= {"/v24.0/me", "/v24.0/me/accounts", "/v24.0/101", "/v24.0/debug_token",
                                                 f"/v24.0/{fake.user_id}/permissions"}
        for call in with_token:
            token = call.query["access_token"]
            expected = hmac.new(settings.FACEBOOK_APP_SECRET.encode(), token.encode(), hashlib.sha256).hexdigest()
            assert call.query.get("appsecret_proof") == expected, call.path


def test_disconnect_two_months_later_still_revokes(signed_in, user, point_at_fakes):
    """Case 14e: the user token lapses after 60 days and is never renewed; the app token does not."""
    with point_at_fakes(FakeFacebook(pages=1)) as fake:
        through_consent(signed_in, fake, "facebook")
        fake.advance(61 * DAY)
        assert signed_in.post("/settings/facebook/refresh", follow=True).status_code == 200
        assert doc(user)["health"]["status"] == "active"  # the Page token does not expire
        page = signed_in.post("/settings/facebook/disconnect", follow=True).content.decode()
        assert "access revoked" in page and "revoking its access at Facebook failed" not in page
        assert fake.permissions_deleted == 1
        (revoke,) = [c for c in fake.calls if c.method == "DELETE"]
        assert revoke.path == f"/v24.0/{fake.user_id}/permissions" and revoke.query["access_token"] == fake.app_token()
        assert doc(user) == {"connected": False} and doc(user, "instagram") == {"connected": False}


def test_a_connection_stored_without_the_meta_user_id_revokes_with_its_user_token(signed_in, user, point_at_fakes):
    with point_at_fakes(FakeFacebook(pages=1)) as fake:
        through_consent(signed_in, fake, "facebook")
        stored = account_for(user)
        stored.facebook.pop("metaUserId")
        stored.save()
        assert "access revoked" in signed_in.post("/settings/facebook/disconnect", follow=True).content.decode()
        (revoke,) = [c for c in fake.calls if c.method == "DELETE"]
        assert revoke.path == "/v24.0/me/permissions" and revoke.query["access_token"] != fake.app_token()


@pytest.mark.parametrize("setting, value", [("FACEBOOK_APP_SECRET", "not-the-secret"), ("FACEBOOK_APP_ID", "999")])
def test_the_fake_refuses_a_wrong_app(signed_in, user, point_at_fakes, settings, setting, value):
    """The fake checks the app as Meta does: a wrong secret or id fails the connect, storing nothing."""
    with point_at_fakes(FakeFacebook(pages=1)) as fake:
        authorize = start(signed_in, "facebook")
        setattr(settings, setting, value)
        code = _approve(fake, authorize)
        response = callback(signed_in, "facebook", code=code, state=query_of(authorize)["state"])
        assert response["Location"] == "/settings?error=platform_error"
        assert doc(user) == {}


def test_the_fake_checks_code_redirect_uri_and_token_lifetimes():
    """The fake's own rules, so tests built on it catch the mistakes Meta would."""
    with FakeFacebook(pages=1) as fake:
        exchange = f"{fake.url}/v24.0/oauth/access_token"
        app = {"client_id": fake.app_id, "client_secret": fake.app_secret}
        code = _approve(fake, f"{fake.url}/v24.0/dialog/oauth?client_id={fake.app_id}&redirect_uri=https://h/cb&state=s")
        wrong = requests.get(exchange, params={**app, "code": code, "redirect_uri": "https://h/other"}, timeout=5)
        assert wrong.json()["error"]["error_subcode"] == 36008
        code = _approve(fake, f"{fake.url}/v24.0/dialog/oauth?client_id={fake.app_id}&redirect_uri=https://h/cb&state=s")
        fake.advance(601)
        late = requests.get(exchange, params={**app, "code": code, "redirect_uri": "https://h/cb"}, timeout=5)
        assert late.json()["error"]["error_subcode"] == 36007
        code = _approve(fake, f"{fake.url}/v24.0/dialog/oauth?client_id={fake.app_id}&redirect_uri=https://h/cb&state=s")
        token = requests.get(exchange, params={**app, "code": code, "redirect_uri": "https://h/cb"}, timeout=5).json()
        again = requests.get(exchange, params={**app, "code": code, "redirect_uri": "https://h/cb"}, timeout=5)
        assert again.status_code == 400  # a code is used once
        proof = hmac.new(fake.app_secret.encode(), token["access_token"].encode(), hashlib.sha256).hexdigest()
        me = {"access_token": token["access_token"]}
        assert requests.get(f"{fake.url}/v24.0/me", params=me, timeout=5).json()["error"]["code"] == 100
        assert requests.get(f"{fake.url}/v24.0/me", params={**me, "appsecret_proof": proof}, timeout=5).ok
        fake.advance(7201)
        expired = requests.get(f"{fake.url}/v24.0/me", params={**me, "appsecret_proof": proof}, timeout=5).json()
        assert expired["error"]["error_subcode"] == 463


def _approve(fake, authorize: str) -> str:
    """Press Authorize on the fake's consent page; the code it redirects with."""
    query = query_of(authorize)
    reply = requests.get(f"{fake.url}/v24.0/dialog/decide", params={**query, "decision": "approve"},
                         allow_redirects=False, timeout=5)
    return parse_qs(urlsplit(reply.headers["Location"]).query)["code"][0]


def test_refresh_reads_the_page_with_its_page_token(signed_in, user, point_at_fakes):
    with point_at_fakes(FakeFacebook(pages=1)) as fake:
        through_consent(signed_in, fake, "facebook")
        signed_in.post("/settings/facebook/refresh")
        (read,) = [c for c in fake.calls if c.path == "/v24.0/101"]
        assert read.query["access_token"] == read_auth(doc(user))["pageToken"]
