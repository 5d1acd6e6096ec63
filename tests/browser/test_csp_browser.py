"""The Content-Security-Policy in Debian's Chromium: nothing on Hayon's pages is blocked, and what
used to be inline (the token field's select-on-focus, the cards' accent colour) still works."""
import pytest
from playwright.sync_api import expect

from platforms.providers import PROVIDERS
from tests.conftest import seed_connection

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def violations(page):
    """Every CSP violation the browser reports on the page."""
    found = []
    page.on("console", lambda message: found.append(message.text) if "Content Security Policy" in message.text else None)
    return found


def test_settings_and_tokens_pages_run_under_the_policy(signed_in_page, live_server, browser_user, violations):
    page = signed_in_page
    seed_connection(browser_user, "mastodon", handle="me")
    page.goto(f"{live_server.url}/settings")
    assert "script-src 'self'" in page.request.get(f"{live_server.url}/settings").headers["content-security-policy"]
    for provider in PROVIDERS:
        card = page.locator(f"#platform-{provider.name}")
        accent = card.evaluate("card => getComputedStyle(card).getPropertyValue('--accent').trim()")
        assert accent.lower() == provider.color.lower(), provider.name

    page.goto(f"{live_server.url}/settings/tokens")
    page.get_by_label("Token name").fill("deploy script")
    page.get_by_role("button", name="Create token").click()
    field = page.get_by_label("New API token")
    field.focus()
    selected = field.evaluate("input => [input.selectionStart, input.selectionEnd, input.value.length]")
    assert selected[0] == 0 and selected[1] == selected[2] > 0

    page.goto(f"{live_server.url}/admin/login/")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert violations == []


def test_an_inline_script_would_be_blocked(signed_in_page, live_server, violations):
    """The policy is enforced, not only sent: a script injected into the page does not run."""
    page = signed_in_page
    page.goto(f"{live_server.url}/settings")
    page.evaluate("""() => { const s = document.createElement('script');
                             s.textContent = 'window.injected = true'; document.body.append(s); }""")
    assert page.evaluate("() => window.injected === undefined")
    assert violations
