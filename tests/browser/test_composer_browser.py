"""Composing in the browser: a post too long for Bluesky, shortened, with an image and its alt text,
published to Bluesky (the real PDS on 127.0.0.1) and Mastodon (the Mastodon-shaped server of
tests/fakes/mastodon.py, whose /api/v2/instance says 1,000 characters), watched to `published`.

The keyboard and retry journeys use the fake publisher of tests/publishing/conftest.py as the
Mastodon account: they are about the pages, not the platform.
"""
import io
import re
import signal

import httpx
import pytest
from django.core.management import call_command
from PIL import Image
from playwright.sync_api import expect

from platforms import providers
from publishing.interface import Preview, Rules, TextLimit
from publishing.models import Delivery, Post
from publishing.text import GRAPHEME, graphemes

from ..conftest import seed_connection
from ..fakes.mastodon import FakeMastodon
from ..publishing.conftest import FakePublisher
from .test_accessibility import violations

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# 312 graphemes: a skin-toned wave and a flag are one each, the link and the tag are marked.
CLUSTERS = GRAPHEME.findall("Hayon publishes once to every account 👋🏽🇫🇷 — read https://example.com/hayon and say hi #Hayon. "
                            + "Composing once and publishing everywhere, with each platform's own rules counted right. " * 3)
TEXT, OVER = "".join(CLUSTERS[:312]), "".join(CLUSTERS[300:312])
SHORTER = "".join(CLUSTERS[:280]).rstrip()


class FakeMastodonPublisher(FakePublisher):
    name = "mastodon"
    label = "Mastodon"
    publish_preview = Preview(marking="mastodon", image_ratio=(16, 9))  # as Mastodon's provider declares it


@pytest.fixture
def mastodon(browser_user, monkeypatch):
    publisher = FakeMastodonPublisher(idempotent=True)
    publisher.publish_rules = Rules(text_limits=(TextLimit("mastodon", 1000),), max_images=4)
    original = providers.get
    monkeypatch.setattr(providers, "get", lambda name: publisher if name == "mastodon" else original(name))
    seed_connection(browser_user, "mastodon", handle="alice", instanceUrl="https://social.example")
    return publisher


@pytest.fixture
def mastodon_server(settings, fake_dns, monkeypatch):
    settings.HAYON_ALLOW_PRIVATE_HOSTS = True  # the fake server is on loopback; never in production
    settings.MASTODON_INSTANCE_URL = ""
    monkeypatch.setitem(fake_dns, "localhost", ["127.0.0.1"])
    with FakeMastodon(auto_approve=True) as server:
        server.max_characters = 1000  # this server's own limit, read at connect time
        yield server


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def run_worker():
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)}
    yield lambda: call_command("worker", "--batch", "--no-startup-delay", verbosity=0)
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def photo() -> bytes:
    image = Image.new("RGB", (900, 600), (31, 111, 235))
    for x in range(0, 900, 60):
        image.paste((255, 200, 40), (x, 250, x + 30, 350))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def connect_bluesky(page, account):
    card = page.locator("#platform-bluesky")
    card.get_by_label("Handle or email").fill(account["handle"])
    card.get_by_label("App password").fill(account["app_password"])
    card.get_by_role("button", name="Connect Bluesky").click()
    expect(page.get_by_text("Bluesky connected.")).to_be_visible()


def test_compose_see_the_problem_fix_it_add_an_image_and_publish(
    signed_in_page, live_server, real_pds, pds_account, mastodon_server, media_root, run_worker, shot
):
    assert graphemes(TEXT) == 312
    page = signed_in_page
    connect_bluesky(page, pds_account)
    page.locator("#platform-mastodon").get_by_label("Your server").fill(mastodon_server.url)
    page.locator("#platform-mastodon").get_by_role("button", name="Connect Mastodon").click()
    page.wait_for_url(f"{live_server.url}/settings?success=mastodon_connected")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Compose").click()
    page.wait_for_url(f"{live_server.url}/compose")

    page.get_by_label("Text", exact=True).fill(TEXT)
    page.get_by_role("checkbox", name="Bluesky").check()
    page.get_by_role("checkbox", name="Mastodon").check()
    bluesky, fediverse = page.locator("#preview-bluesky"), page.locator("#preview-mastodon")
    expect(bluesky.get_by_text("Bluesky: 312 of 300 characters.")).to_be_visible()
    expect(bluesky.locator("[data-count]")).to_have_text("312")
    expect(bluesky.locator(".preview-text .over")).to_have_text(OVER)  # what Bluesky would not take
    expect(fediverse.locator("[data-problems] li")).to_have_count(0)
    expect(fediverse.locator("[data-counter]")).to_contain_text("of 1000 characters")
    expect(fediverse.locator(".seg-link")).to_have_text("example.com/hayon")  # Mastodon shows links shortened
    expect(bluesky.locator(".seg-tag")).to_have_text("#Hayon")
    shot("composer-1-too-long-for-bluesky")

    page.get_by_label("Text", exact=True).fill(SHORTER)
    expect(bluesky.locator("[data-problems] li")).to_have_count(0)
    expect(bluesky.locator("[data-count]")).to_have_text(str(graphemes(SHORTER)))
    expect(page.get_by_text("Ready to publish.")).to_be_visible()

    page.get_by_label("Add images").set_input_files(files=[{"name": "stripes.png", "mimeType": "image/png", "buffer": photo()}])
    page.get_by_label("Alt text for image 1").fill("Yellow stripes across a blue field")
    for preview in (bluesky, fediverse):
        expect(preview.get_by_role("img", name="Yellow stripes across a blue field")).to_be_visible()
        expect(preview.locator(".alt-badge")).to_have_text("ALT")
    assert violations(page, _axe()) == []
    shot("composer-2-ready")

    page.get_by_role("button", name="Publish").click()
    page.wait_for_url(re.compile(r".*/posts/\d+$"))
    post = Post.objects.get()
    assert post.text == SHORTER and [m.alt for m in post.ordered_media()] == ["Yellow stripes across a blue field"]
    expect(page.locator('[data-platform="bluesky"] [data-status]')).to_have_text("queued")

    run_worker()
    for name in ("bluesky", "mastodon"):
        row = page.locator(f'[data-platform="{name}"]')
        expect(row.locator("[data-status]")).to_have_text("published", timeout=15_000)  # by the page's poll
    expect(page.get_by_role("link", name="View the post on Bluesky")).to_have_attribute(
        "href", re.compile(rf"^https://bsky\.app/profile/{re.escape(pds_account['did'])}/post/[a-z2-7]{{13}}$"))
    expect(page.get_by_role("link", name="View the post on Mastodon")).to_have_attribute(
        "href", re.compile(rf"^{re.escape(mastodon_server.url)}/@tester/\d+$"))
    (status,) = mastodon_server.statuses
    assert status["text"] == SHORTER
    assert [m["description"] for m in mastodon_server.media.values()] == ["Yellow stripes across a blue field"]
    for name in ("bluesky", "mastodon"):  # nothing to fix: no Reconnect, no error shown
        expect(page.locator(f'[data-platform="{name}"] [data-reconnect]')).to_be_hidden()
        expect(page.locator(f'[data-platform="{name}"] [data-error]')).to_be_hidden()
    expect(page.get_by_role("button", name="Retry the failed accounts")).to_have_count(0)
    shot("posts-1-published")

    # What Bluesky holds: the text and the image with its alt text, read back from the PDS.
    uri = Delivery.objects.get(platform="bluesky").remote_id
    did, _, rkey = uri.removeprefix("at://").split("/")
    record = httpx.get(f"{real_pds['pdsUrl']}/xrpc/com.atproto.repo.getRecord", timeout=10,
                       params={"repo": did, "collection": "app.bsky.feed.post", "rkey": rkey}).json()["value"]
    assert record["text"] == SHORTER and record["embed"]["images"][0]["alt"] == "Yellow stripes across a blue field"

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Posts").click()
    expect(page.locator(".post-row .chip-published")).to_have_count(2)


def test_the_composer_works_by_keyboard_alone(signed_in_page, live_server, mastodon, media_root):
    page = signed_in_page
    page.goto(f"{live_server.url}/compose")

    def tab_to(selector: str, limit: int = 40):
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("(s) => document.activeElement.matches(s)", selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    tab_to("#post-text")
    page.keyboard.type("Typed without a mouse #a11y")
    tab_to("#target-mastodon")
    page.keyboard.press("Space")
    expect(page.locator("#target-mastodon")).to_be_checked()
    expect(page.locator("#preview-mastodon")).to_be_visible()
    expect(page.get_by_text("Ready to publish.")).to_be_visible()
    tab_to("#publish-button")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/posts/\d+$"))
    assert Post.objects.get().text == "Typed without a mouse #a11y"


def test_an_account_that_needs_reconnection_cannot_be_ticked(signed_in_page, live_server, browser_user, mastodon, shot):
    from platforms.services import account_for

    account = account_for(browser_user)
    doc = account.document("mastodon")
    doc["health"] = {**doc["health"], "status": "revoked", "needsReconnection": True, "reason": "Access was revoked."}
    account.set_document("mastodon", doc)
    account.save()
    page = signed_in_page
    page.goto(f"{live_server.url}/compose")
    expect(page.get_by_role("checkbox", name="Mastodon")).to_be_disabled()
    expect(page.locator("#why-mastodon")).to_contain_text("Access was revoked.")
    shot("composer-3-needs-reconnection")
    page.locator("#why-mastodon").get_by_role("link", name="Reconnect Mastodon").click()
    page.wait_for_url(f"{live_server.url}/settings#platform-mastodon")


def _axe() -> str:
    from .test_accessibility import AXE

    if not AXE.exists():
        pytest.skip("axe-core is not installed: run `make test`")
    return AXE.read_text()


def test_a_failed_account_says_why_and_retry_publishes_only_it(signed_in_page, live_server, mastodon, media_root, run_worker):
    from publishing.interface import ContentRejected

    mastodon.steps = [ContentRejected("Mastodon refused the post: Validation failed: Text character limit of 1000 exceeded.")]
    page = signed_in_page
    page.goto(f"{live_server.url}/compose")
    page.get_by_label("Text", exact=True).fill("First try fails")
    page.get_by_role("checkbox", name="Mastodon").check()
    page.get_by_role("button", name="Publish").click()
    page.wait_for_url(re.compile(r".*/posts/\d+$"))

    run_worker()
    row = page.locator('[data-platform="mastodon"]')
    expect(row.locator("[data-status]")).to_have_text("failed", timeout=15_000)
    expect(row.locator("[data-error]")).to_contain_text("Text character limit of 1000 exceeded")
    page.get_by_role("button", name="Retry the failed accounts").click()
    expect(row.locator("[data-status]")).to_have_text("queued")
    run_worker()
    expect(row.locator("[data-status]")).to_have_text("published", timeout=15_000)
    expect(row.locator("[data-error]")).to_be_hidden()
    expect(page.get_by_role("button", name="Retry the failed accounts")).to_be_hidden()
    assert len(mastodon.platform.posts) == 1 and Delivery.objects.get().attempts == 1
