"""Every page passes axe-core with no serious or critical violation, and the composer works by keyboard.

axe-core comes from npm, pinned in tests/peers/axe/package.json and installed by `make test` into
.peers/axe. It is injected with page.evaluate (not a <script> tag): Hayon's Content-Security-Policy
allows only its own scripts, and evaluate is not subject to it.
"""
from pathlib import Path

import pytest

from ..conftest import seed_connection

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parents[2] / ".peers" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


@pytest.fixture(scope="module")
def axe_source():
    if not AXE.exists():
        pytest.skip("axe-core is not installed: run `make test` (it installs tests/peers/axe into .peers/axe)")
    return AXE.read_text()


def violations(page, axe_source) -> list[str]:
    """Serious and critical axe-core violations of the page as it is now, readably."""
    page.evaluate(axe_source)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"] if v["impact"] in BLOCKING]


def all_violations(page, axe_source) -> list[str]:
    """Every violated rule's id, whatever its impact (heading-order is only "moderate")."""
    page.evaluate(axe_source)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v["id"] for v in result["violations"]]


def test_the_pages_signed_out_pass_axe(page, live_server, transactional_db, axe_source):
    for path in ("/", "/login", "/signup", "/no-such-page"):
        page.goto(f"{live_server.url}{path}")
        assert violations(page, axe_source) == [], path


def test_the_pages_signed_in_pass_axe(signed_in_page, live_server, browser_user, axe_source):
    from publishing.models import Delivery, Post, Status

    page = signed_in_page
    seed_connection(browser_user, "bluesky", handle="alice.example",
                    identifiers={"did": "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "handle": "alice.example"})
    seed_connection(browser_user, "tumblr", handle="fakeblr")
    post = Post.objects.create(user=browser_user, text="Hello #Hayon https://example.com")
    Delivery.objects.create(post=post, platform="bluesky", status=Status.PUBLISHED, url="https://bsky.app/profile/x/post/1")
    Delivery.objects.create(post=post, platform="tumblr", status=Status.FAILED, error="Expired.", error_kind="reconnect")
    for path in ("/settings", "/settings/tokens", "/password", "/compose", "/posts", f"/posts/{post.pk}"):
        page.goto(f"{live_server.url}{path}")
        assert violations(page, axe_source) == [], path
    # A new API token shown once, and the list of tokens.
    page.goto(f"{live_server.url}/settings/tokens")
    page.get_by_label("Token name").fill("script")
    page.get_by_role("button", name="Create token").click()
    page.get_by_label("New API token").wait_for()
    assert violations(page, axe_source) == [], "/settings/tokens with a new token"
    # The composer with an account ticked: its preview and the live check's answer are checked too.
    page.goto(f"{live_server.url}/compose")
    page.get_by_label("Text", exact=True).fill("é" * 312)
    page.get_by_role("checkbox", name="Bluesky").check()
    page.get_by_text("Bluesky: 312 of 300 characters.").wait_for()
    assert violations(page, axe_source) == []


def test_settings_headings_go_in_order(signed_in_page, live_server, axe_source):
    signed_in_page.goto(f"{live_server.url}/settings")
    assert "heading-order" not in all_violations(signed_in_page, axe_source)
