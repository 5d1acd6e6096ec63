"""Bluesky sign-in (AT Protocol OAuth, issue 16) as a user lives it, against the real PDS on
127.0.0.1 and its own sign-in and consent pages: connect -> profile -> the callback replayed
(refused) -> refresh (the refresh token rotates) -> a post published -> disconnect (revoked at the authorization server: the next call is refused).

Hayon runs as the loopback client here (PUBLIC_URL http://127.0.0.1:PORT): the reference server
accepts a confidential client_id only at an https URL on a public name, so that form is covered
by tests/test_bluesky_oauth.py against spec-shaped replies.
"""
import json
import signal

import httpx
import pytest
from django.core.management import call_command
from django.test import Client
from playwright.sync_api import expect

from accounts.models import ApiToken

from platforms import crypto
from platforms.documents import read_auth
from platforms.errors import Kind, PlatformError
from platforms.providers import bluesky
from platforms.services import account_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def hayon(live_server, browser_user, settings):
    """Hayon at http://127.0.0.1:PORT: the loopback client's redirect URI must be an IP literal."""
    url = live_server.url.replace("localhost", "127.0.0.1")
    settings.PUBLIC_URL = url
    settings.CSRF_TRUSTED_ORIGINS = [url]
    settings.BLUESKY_OAUTH = True
    return url


@pytest.fixture
def oauth_page(browser_type, hayon):
    # The PDS's pages live at http://localhost:PORT (its issuer) and it listens on 127.0.0.1 only.
    browser = browser_type.launch(executable_path="/usr/bin/chromium", headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP localhost 127.0.0.1"])
    page = browser.new_page()
    page.goto(f"{hayon}/login")
    page.get_by_label("Username").fill("browser")
    page.get_by_label("Password").fill("browser password 1")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{hayon}/settings")
    yield page
    browser.close()


def sign_in_at_pds(page, account):
    """The PDS's own pages: password, then consent."""
    page.get_by_placeholder("Enter your password").fill(account["password"])
    page.locator("button[type=submit]").click()
    page.get_by_role("button", name="Authorize").click()


def run_worker():
    """`manage.py worker --batch` in this process; the worker installs signal handlers: put ours back."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)}
    try:
        call_command("worker", "--batch", "--no-startup-delay", verbosity=0)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def stored_auth(user) -> dict:
    return read_auth(account_for(user).document("bluesky"))


def test_sign_in_refresh_and_disconnect(oauth_page, hayon, real_pds, pds_account, browser_user, shot):
    page = oauth_page
    card = page.locator("#platform-bluesky")
    expect(card.get_by_label("Sign in with Bluesky")).to_be_checked()  # the default way
    card.get_by_label("Handle or email").fill(pds_account["handle"])
    card.get_by_role("button", name="Connect Bluesky").click()

    page.wait_for_url("http://localhost:*/oauth/authorize**")  # the PDS's sign-in page, not Hayon's
    # The PDS locks the hinted handle: signing in as another account is refused there (and by the
    # `sub` check here, tests/test_bluesky_oauth.py).
    expect(page.get_by_placeholder("yourname.test")).to_have_value(pds_account["handle"])
    with page.expect_request(lambda request: "/api/platform/bluesky/callback" in request.url) as callback:
        sign_in_at_pds(page, pds_account)
    page.wait_for_url(f"{hayon}/settings**")
    expect(page.get_by_text("Bluesky connected.")).to_be_visible()
    card = page.locator("#platform-bluesky")
    expect(card.get_by_text("Local Tester")).to_be_visible()
    expect(card.get_by_text(f"@{pds_account['handle']}")).to_be_visible()
    assert "code=" not in page.url and "state=" not in page.url
    shot("bluesky-oauth-1-connected")

    auth = stored_auth(browser_user)
    # The same callback again (a replay, from history or a leaked URL): refused, nothing changes.
    page.goto(callback.value.url)
    expect(page.get_by_text("invalid or has expired")).to_be_visible()
    assert stored_auth(browser_user) == auth
    page.goto(f"{hayon}/settings")
    assert auth["method"] == "oauth" and auth["sub"] == pds_account["did"]
    assert "accessJwt" not in auth and pds_account["password"] not in str(auth)  # no password ever handled
    # The token is DPoP-bound: presented as a bearer token, without the key's proof, it is refused.
    bearer = httpx.get(f"{real_pds['pdsUrl']}/xrpc/com.atproto.server.getSession",
                       headers={"Authorization": f"Bearer {auth['accessToken']}"}, timeout=10)
    assert bearer.status_code in (400, 401)

    # Refresh with the access token due: the single-use refresh token rotates.
    account = account_for(browser_user)
    doc = account.document("bluesky")
    doc["auth"] = crypto.encrypt({**auth, "accessExpiresAt": "2000-01-01T00:00:00+00:00"})
    account.set_document("bluesky", doc)
    account.save()
    page.get_by_role("button", name="Refresh").click()
    expect(page.get_by_text("Bluesky refreshed.")).to_be_visible()
    renewed = stored_auth(browser_user)
    assert renewed["refreshToken"] != auth["refreshToken"] and renewed["accessToken"] != auth["accessToken"]
    client, _ = bluesky.client_for(renewed)
    assert client.com.atproto.server.get_session().did == pds_account["did"]  # the new token works

    # A post through the sign-in session: the API queues it, the worker publishes it (DPoP-bound).
    token = ApiToken.issue(user=browser_user, name="script")[1]
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    queued = api.post("/api/posts", data=json.dumps({"text": "Posted through Bluesky sign-in", "targets": ["bluesky"]}),
                      content_type="application/json")
    assert queued.status_code == 202, queued.content
    run_worker()
    target = api.get(f"/api/posts/{queued.json()['data']['id']}").json()["data"]["targets"][0]
    assert target["status"] == "published", target
    record = httpx.get(f"{real_pds['pdsUrl']}/xrpc/com.atproto.repo.getRecord", timeout=10, params={
        "repo": pds_account["did"], "collection": "app.bsky.feed.post", "rkey": target["url"].rsplit("/", 1)[1]})
    assert record.json()["value"]["text"] == "Posted through Bluesky sign-in"

    page.goto(f"{hayon}/settings")
    page.locator("#platform-bluesky").get_by_role("button", name="Disconnect").click()
    expect(page.get_by_text("Bluesky disconnected and Hayon's access revoked.")).to_be_visible()
    shot("bluesky-oauth-2-disconnected")
    with pytest.raises(Exception) as refused:  # the next call with the last tokens is refused
        bluesky.client_for(renewed)[0].com.atproto.server.get_session()
    assert getattr(getattr(refused.value, "response", None), "status_code", None) == 401
    with pytest.raises(PlatformError) as ended:
        bluesky.BlueskyProvider().renew(renewed)
    assert ended.value.kind is Kind.EXPIRED and ended.value.code == "invalid_grant"
