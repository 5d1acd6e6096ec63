"""Tumblr, Threads and Facebook as a user lives them, against fake platforms on 127.0.0.1:
Connect -> consent page -> connected with avatar and handle -> Refresh -> the user withdraws
access on the platform -> upkeep marks it -> reconnect prompt -> Reconnect -> Disconnect.
"""
from dataclasses import dataclass

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from ..fakes.platforms import FakeFacebook, FakeThreads, FakeTumblr

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@dataclass
class Platform:
    name: str
    label: str
    fake_class: type
    display_name: str
    handle: str
    after_disconnect: str


PLATFORMS = {
    "tumblr": Platform("tumblr", "Tumblr", FakeTumblr, "Fake Blog", "@fakeblogger",
                       "remove Hayon in your Tumblr app settings"),
    "threads": Platform("threads", "Threads", FakeThreads, "Fake Threads User", "@fakethreads",
                        "remove Hayon in your Threads app settings"),
    "facebook": Platform("facebook", "Facebook", FakeFacebook, "Fake Bakery 1", "@fakebakery1",
                         "Facebook disconnected and Hayon's access revoked."),
}


def point_at(settings, fake) -> None:
    """Every base URL of the three platforms is a setting; here they all lead to the fake."""
    settings.TUMBLR_WWW_URL = settings.TUMBLR_API_URL = fake.url
    settings.FACEBOOK_WWW_URL = settings.FACEBOOK_GRAPH_URL = fake.url
    settings.THREADS_AUTHORIZE_URL = f"{fake.url}/oauth/authorize"
    settings.THREADS_GRAPH_URL = fake.url


@pytest.fixture
def platform(request, settings, live_server):
    spec = PLATFORMS[request.param]
    settings.THREADS_REDIRECT_URI = f"{live_server.url}/api/platform/threads/callback"
    with spec.fake_class() as fake:
        point_at(settings, fake)
        yield spec, fake


def authorize(page, live_server, spec, *, decision="Authorize", succeeds=True):
    page.locator(f"#platform-{spec.name}").get_by_role("button", name=f"{spec.label}").click()
    expect(page.get_by_role("heading", name=f"Fake {spec.label}")).to_be_visible()
    page.get_by_role("link", name=decision).click()
    if decision == "Authorize" and succeeds and spec.name == "facebook":  # two Pages: the picker
        expect(page.get_by_role("heading", name="Which Page should Hayon use?")).to_be_visible()
        expect(page.get_by_text("Instagram linked")).to_be_visible()
        page.get_by_label("Fake Bakery 1").check()
        page.get_by_role("button", name="Connect this Page").click()


def upkeep() -> None:
    call_command("refresh_connections", "--no-progress", "--processes", "1")


@pytest.mark.parametrize("platform", list(PLATFORMS), indirect=True)
def test_whole_journey(signed_in_page, live_server, platform, shot, a_day_later):
    spec, fake = platform
    page = signed_in_page
    authorize(page, live_server, spec)
    page.wait_for_url(f"{live_server.url}/settings?success={spec.name}_connected")
    card = page.locator(f"#platform-{spec.name}")
    expect(card.get_by_text("Connected", exact=True)).to_be_visible()
    expect(card.get_by_text(spec.display_name).first).to_be_visible()
    expect(card.get_by_text(spec.handle).first).to_be_visible()
    assert card.locator("img.avatar").evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    if spec.name == "facebook":
        expect(card.get_by_text("@fakebakery.ig")).to_be_visible()
    shot(f"{spec.name}-1-connected")

    card.get_by_role("button", name="Refresh").click()
    expect(page.get_by_text(f"{spec.label} refreshed.")).to_be_visible()

    fake.revoke_all()  # the user removes Hayon in the platform's settings
    a_day_later()
    upkeep()
    page.goto(f"{live_server.url}/settings")
    card = page.locator(f"#platform-{spec.name}")
    expect(card.get_by_text("Needs reconnection")).to_be_visible()
    expect(card.get_by_role("alert")).to_contain_text(f"Reconnect {spec.label}.")
    shot(f"{spec.name}-2-needs-reconnection")

    authorize(page, live_server, spec)
    page.wait_for_url(f"{live_server.url}/settings?success={spec.name}_connected")
    card = page.locator(f"#platform-{spec.name}")
    expect(card.get_by_text("Connected", exact=True)).to_be_visible()
    shot(f"{spec.name}-3-reconnected")

    card.get_by_role("button", name="Disconnect").click()
    expect(page.get_by_text(spec.after_disconnect)).to_be_visible()
    expect(page.locator(f"#platform-{spec.name}").get_by_role("button", name=f"Connect {spec.label}")).to_be_visible()
    if spec.name == "facebook":
        assert fake.permissions_deleted == 1
        expect(page.locator("#platform-facebook").get_by_text("@fakebakery.ig")).to_have_count(0)
    shot(f"{spec.name}-4-disconnected")


@pytest.mark.parametrize("platform", list(PLATFORMS), indirect=True)
def test_denied_authorization_comes_back_cancelled(signed_in_page, live_server, platform, shot):
    spec, _ = platform
    page = signed_in_page
    authorize(page, live_server, spec, decision="Deny")
    page.wait_for_url(f"{live_server.url}/settings?error=connection_cancelled")
    expect(page.get_by_text(f"Connection to {spec.label} cancelled.")).to_be_visible()
    expect(page.locator(f"#platform-{spec.name}").get_by_role("button", name=f"Connect {spec.label}")).to_be_visible()
    shot(f"{spec.name}-cancelled")


@pytest.mark.parametrize("platform", list(PLATFORMS), indirect=True)
def test_platform_failure_is_explained_and_stores_nothing(signed_in_page, live_server, platform, shot):
    spec, fake = platform
    page = signed_in_page
    original = fake.route
    fake.route = lambda request: (  # the token endpoint breaks: an HTML 502 from a proxy
        fake_502() if "access_token" in request.path else original(request))
    authorize(page, live_server, spec, succeeds=False)
    page.wait_for_url(f"{live_server.url}/settings?error=platform_error")
    expect(page.get_by_role("status")).to_contain_text(spec.label)  # a readable reason, not a 500 page
    expect(page.locator(f"#platform-{spec.name}").get_by_role("button", name=f"Connect {spec.label}")).to_be_visible()
    shot(f"{spec.name}-platform-error")


def test_a_page_beyond_the_first_25_can_be_picked(signed_in_page, live_server, settings, shot):
    """Facebook pages /me/accounts 25 at a time: Hayon follows `paging.next` and offers them all."""
    settings.THREADS_REDIRECT_URI = f"{live_server.url}/api/platform/threads/callback"
    with FakeFacebook(pages=30) as fake:
        point_at(settings, fake)
        page = signed_in_page
        page.locator("#platform-facebook").get_by_role("button", name="Facebook").click()
        page.get_by_role("link", name="Authorize").click()
        expect(page.get_by_role("heading", name="Which Page should Hayon use?")).to_be_visible()
        page.get_by_label("Fake Bakery 30").check()
        shot("facebook-page-30-picked")
        page.get_by_role("button", name="Connect this Page").click()
        page.wait_for_url(f"{live_server.url}/settings?success=facebook_connected")
        expect(page.locator("#platform-facebook").get_by_text("Fake Bakery 30").first).to_be_visible()


def fake_502():
    from ..fakes.server import Reply

    return Reply(502, "<html><body>Bad Gateway</body></html>", "text/html")
