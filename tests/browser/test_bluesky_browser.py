"""Bluesky as a user lives it, against the real PDS on 127.0.0.1: the app-password form ->
connected with avatar and handle -> Refresh -> the user deletes the app password on Bluesky ->
upkeep marks it -> reconnect with a new app password -> Disconnect (the session ends at the PDS).
"""
import httpx
import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from platforms.documents import read_auth
from platforms.services import account_for

from ..pds_peer import new_app_password, revoke_app_password

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def fill_and_connect(page, handle: str, app_password: str, button: str = "Connect Bluesky"):
    card = page.locator("#platform-bluesky")
    card.get_by_label("Handle or email").fill(handle)
    card.get_by_label("App password").fill(app_password)
    card.get_by_role("button", name=button).click()


def test_whole_journey(signed_in_page, live_server, real_pds, pds_account, browser_user, shot, a_day_later):
    page = signed_in_page
    fill_and_connect(page, pds_account["handle"], pds_account["app_password"])
    expect(page.get_by_text("Bluesky connected.")).to_be_visible()
    card = page.locator("#platform-bluesky")
    expect(card.get_by_text("Local Tester")).to_be_visible()
    expect(card.get_by_text(f"@{pds_account['handle']}")).to_be_visible()
    assert card.locator("img.avatar").evaluate("img => img.decode().then(() => img.naturalWidth)") > 0  # the blob, from the PDS
    shot("bluesky-1-connected")

    card.get_by_role("button", name="Refresh").click()
    expect(page.get_by_text("Bluesky refreshed.")).to_be_visible()

    revoke_app_password(real_pds["pdsUrl"], pds_account)
    a_day_later()
    call_command("refresh_connections", "--no-progress", "--processes", "1")
    page.goto(f"{live_server.url}/settings")
    card = page.locator("#platform-bluesky")
    expect(card.get_by_text("Needs reconnection")).to_be_visible()
    expect(card.get_by_label("App password")).to_be_visible()  # Reconnect is the app-password form
    expect(card.get_by_label("Handle or email")).to_have_value(pds_account["handle"])  # pre-filled (issue 12 item 12)
    shot("bluesky-2-needs-reconnection")

    fill_and_connect(page, pds_account["handle"], new_app_password(real_pds["pdsUrl"], pds_account, "hayon-2"),
                     button="Reconnect Bluesky")
    expect(page.get_by_text("Bluesky connected.")).to_be_visible()
    expect(page.locator("#platform-bluesky").get_by_text("Connected", exact=True)).to_be_visible()
    session = read_auth(account_for(browser_user).document("bluesky"))
    shot("bluesky-3-reconnected")

    page.locator("#platform-bluesky").get_by_role("button", name="Disconnect").click()
    expect(page.get_by_text("Bluesky disconnected and Hayon's access revoked.")).to_be_visible()
    dead = httpx.post(f"{real_pds['pdsUrl']}/xrpc/com.atproto.server.refreshSession",
                      headers={"authorization": f"Bearer {session['refreshJwt']}"}, timeout=10)
    assert dead.status_code in (400, 401)
    shot("bluesky-4-disconnected")


def test_wrong_app_password_is_explained_and_never_shown_again(signed_in_page, real_pds, pds_account, shot):
    page = signed_in_page
    fill_and_connect(page, pds_account["handle"], "aaaa-bbbb-cccc-dddd")
    expect(page.get_by_text("That handle and app password do not match a Bluesky account.")).to_be_visible()
    assert "aaaa-bbbb-cccc-dddd" not in page.content()
    expect(page.locator("#platform-bluesky").get_by_role("button", name="Connect Bluesky")).to_be_visible()
    shot("bluesky-wrong-password")
