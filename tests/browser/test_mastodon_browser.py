"""Connect Mastodon on a local Mastodon-shaped server by clicking through, then disconnect."""
import pytest
from playwright.sync_api import expect

from ..fakes.mastodon import FakeMastodon

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def mastodon(settings):
    settings.HAYON_ALLOW_PRIVATE_HOSTS = True  # the fake server is on loopback; never in production
    settings.MASTODON_INSTANCE_URL = ""
    with FakeMastodon() as server:
        yield server


def test_connect_refresh_revoke_reconnect_disconnect(signed_in_page, live_server, mastodon, shot):
    page = signed_in_page
    card = page.locator("#platform-mastodon")
    card.get_by_label("Your server").fill(mastodon.url)
    card.get_by_role("button", name="Connect Mastodon").click()
    expect(page.get_by_role("heading", name="Fake Mastodon")).to_be_visible()
    assert "code_challenge=" in page.url  # the server advertises S256
    page.get_by_role("link", name="Authorize").click()
    page.wait_for_url(f"{live_server.url}/settings?success=mastodon_connected")
    (app,) = mastodon.apps.values()  # registered with this server's own redirect URI (case 39)
    assert app["redirect_uris"][0].startswith(f"{live_server.url}/api/platform/mastodon/callback/")
    expect(card.get_by_text("Fake Tester")).to_be_visible()
    expect(card.get_by_text("@tester")).to_be_visible()
    shot("mastodon-connected")

    card.get_by_role("button", name="Refresh").click()
    expect(page.get_by_text("Mastodon refreshed.")).to_be_visible()

    mastodon.revoke_all()  # the user removes Hayon in Mastodon's settings
    page.locator("#platform-mastodon").get_by_role("button", name="Refresh").click()
    card = page.locator("#platform-mastodon")
    expect(card.get_by_text("Needs reconnection")).to_be_visible()
    shot("mastodon-needs-reconnect")

    card.get_by_label("Your server").fill(mastodon.url)
    card.get_by_role("button", name="Reconnect Mastodon").click()
    page.get_by_role("link", name="Authorize").click()
    page.wait_for_url(f"{live_server.url}/settings?success=mastodon_connected")
    token_count = len(mastodon.tokens)
    assert token_count == 1

    page.locator("#platform-mastodon").get_by_role("button", name="Disconnect").click()
    expect(page.get_by_text("Mastodon disconnected and Hayon's access revoked.")).to_be_visible()
    assert len(mastodon.tokens) == 0 and len(set(mastodon.revoked)) == 2  # both tokens ever issued
    expect(page.locator("#platform-mastodon").get_by_role("button", name="Connect Mastodon")).to_be_visible()
    assert len(mastodon.apps) == 1  # one registration for the server, reused


def test_denied_authorization_comes_back_cancelled(signed_in_page, live_server, mastodon):
    page = signed_in_page
    card = page.locator("#platform-mastodon")
    card.get_by_label("Your server").fill(mastodon.url)
    card.get_by_role("button", name="Connect Mastodon").click()
    page.get_by_role("link", name="Deny").click()
    page.wait_for_url(f"{live_server.url}/settings?error=connection_cancelled")
    host = mastodon.url.removeprefix("http://")
    expect(page.get_by_text(f"Connection to {host} cancelled.")).to_be_visible()  # the server, by name
