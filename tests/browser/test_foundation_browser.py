"""Sign up, sign in, Settings with five platforms, API tokens: in Debian's Chromium."""
import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sign_up_and_see_every_platform(page, live_server, settings, shot):
    settings.PUBLIC_URL = live_server.url
    page.goto(live_server.url)
    page.get_by_role("link", name="Create account").first.click()
    page.get_by_label("Username").fill("newcomer")
    page.get_by_label("Password", exact=True).fill("a long enough pw 123")
    page.get_by_label("Password confirmation").fill("a long enough pw 123")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Connected accounts")).to_be_visible()
    for label in ("Bluesky", "Tumblr", "Facebook", "Threads", "Mastodon"):
        expect(page.get_by_role("heading", name=label, exact=True)).to_be_visible()
        expect(page.get_by_role("button", name=f"Connect {label}")).to_be_visible()
    expect(page.get_by_text("Instagram")).to_be_visible()
    shot("settings")
    page.set_viewport_size({"width": 390, "height": 844})
    shot("settings-mobile")


def test_sign_in_create_and_revoke_an_api_token(signed_in_page, live_server, shot):
    page = signed_in_page
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    page.get_by_label("Token name").fill("deploy script")
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_label("New API token").input_value()
    assert token.startswith("hayon_")
    shot("api-token-created")
    response = page.request.get(f"{live_server.url}/api/platform/find", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200 and response.json()["success"] is True
    page.goto(f"{live_server.url}/settings/tokens")
    expect(page.get_by_role("cell", name="deploy script", exact=True)).to_be_visible()
    page.get_by_role("button", name="Revoke token deploy script").click()
    expect(page.get_by_text("revoked")).to_be_visible()
    response = page.request.get(f"{live_server.url}/api/platform/find", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401


def test_sign_out(signed_in_page, live_server):
    page = signed_in_page
    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{live_server.url}/settings")
    expect(page).to_have_url(f"{live_server.url}/login?next=/settings")


def test_change_password_from_the_settings_navigation(signed_in_page, shot):
    page = signed_in_page
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Password").click()
    expect(page.get_by_role("heading", name="Change password")).to_be_visible()
    page.get_by_label("Old password").fill("browser password 1")
    page.get_by_label("New password", exact=True).fill("a brand new password 2")
    page.get_by_label("New password confirmation").fill("a brand new password 2")
    shot("password-change")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Your password has been changed.")).to_be_visible()
    expect(page.get_by_role("heading", name="Connected accounts")).to_be_visible()
