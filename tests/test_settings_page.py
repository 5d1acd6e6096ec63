"""Settings > Connected accounts as a user sees it."""
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django.test.utils import CaptureQueriesContext

from platforms import documents
from platforms.cards import span

from .conftest import SENTINEL, seed_connection

pytestmark = pytest.mark.django_db


def card(page: str, name: str) -> str:
    return page.split(f'id="platform-{name}"')[1].split("</article>")[0]


def test_every_platform_has_a_card_with_connect(signed_in):
    page = signed_in.get("/settings").content.decode()
    for name, label in (("bluesky", "Bluesky"), ("tumblr", "Tumblr"), ("facebook", "Facebook"),
                        ("threads", "Threads"), ("mastodon", "Mastodon")):
        body = card(page, name)
        assert f"Connect {label}" in body and "Not connected" in body
    assert "Instagram" in card(page, "facebook")
    assert 'name="appPassword"' in card(page, "bluesky") and 'type="password"' in card(page, "bluesky")
    assert 'name="instance"' in card(page, "mastodon")


def test_connected_card_shows_profile_health_and_actions(signed_in, user):
    seed_connection(user, "mastodon", handle="yourname", identifiers={"instanceUrl": "https://social.example", "accountId": "1"})
    body = card(signed_in.get("/settings").content.decode(), "mastodon")
    assert "Yourname Example" in body and "@yourname" in body and "https://cdn.example/a.png" in body
    assert "Connected" in body and "active" in body
    assert "Refresh" in body and "Disconnect" in body and "Connect Mastodon" not in body
    assert SENTINEL not in body


def test_card_needing_reconnection_says_why_and_offers_reconnect(signed_in, user):
    account = seed_connection(user, "bluesky", handle="me.bsky.social")
    doc = account.document("bluesky")
    doc["health"] = {"status": "expired", "needsReconnection": True, "reason": "The Bluesky session has ended.",
                     "checkedAt": "2026-11-23T00:00:00Z"}
    account.set_document("bluesky", doc)
    account.save()
    body = card(signed_in.get("/settings").content.decode(), "bluesky")
    assert "Needs reconnection" in body and "The Bluesky session has ended." in body
    assert "Reconnect Bluesky" in body and 'name="appPassword"' in body


@pytest.mark.parametrize(
    "query, text",
    [("success=mastodon_connected", "Mastodon connected."), ("error=connection_cancelled", "Connection cancelled."),
     ("error=<script>x</script>", "That did not work"), ("success=<b>pwned</b>", "Done.")],
)
def test_flash_messages_from_the_query_never_echo_input(signed_in, query, text):
    page = signed_in.get(f"/settings?{query}").content.decode()
    assert text in page and "<script>x</script>" not in page and "<b>pwned</b>" not in page


def test_pages_forbid_framing_and_leaking_referrers(signed_in):
    response = signed_in.get("/settings")
    assert response["X-Frame-Options"] == "DENY" and response["Referrer-Policy"] == "same-origin"


def test_page_uses_no_external_assets(signed_in):
    page = signed_in.get("/settings").content.decode()
    assert "<link" in page and "https://fonts" not in page and "cdn" not in page.split("<body")[0]


def test_query_count_is_constant_with_everything_connected(signed_in, user, django_assert_max_num_queries):
    def queries(path):
        with CaptureQueriesContext(connection) as captured:
            assert signed_in.get(path).status_code == 200
        return len(captured)

    signed_in.get("/settings")  # the first visit creates the user's SocialAccount row
    empty = {path: queries(path) for path in ("/settings", "/api/platform/find")}
    for name in ("bluesky", "tumblr", "facebook", "instagram", "threads", "mastodon"):
        seed_connection(user, name, handle=f"me-{name}")
    with django_assert_max_num_queries(3):  # the session, the user, their SocialAccount row
        assert signed_in.get("/settings").status_code == 200
    with django_assert_max_num_queries(3):
        assert signed_in.get("/api/platform/find").status_code == 200
    assert {path: queries(path) for path in empty} == empty  # no query per platform


def test_card_says_when_it_was_checked_and_when_the_token_expires(signed_in, user):
    account = seed_connection(user, "threads", handle="me.threads")
    doc = account.document("threads")
    now = timezone.now()
    doc["health"] = {"status": "active", "checkedAt": documents.iso(now - timedelta(minutes=5, seconds=10))}
    doc["expiresAt"] = documents.iso(now + timedelta(days=12, hours=3))
    account.set_document("threads", doc)
    account.save()
    body = card(signed_in.get("/settings").content.decode(), "threads")
    assert "checked <time" in body and ">5 minutes ago</time>" in body
    assert "(in 12 days)" in body and (now + timedelta(days=12)).strftime("%b %-d, %Y") in body


@pytest.mark.parametrize(
    "delta, text",
    [(timedelta(seconds=59), "less than a minute"), (timedelta(minutes=1), "1 minute"), (timedelta(hours=3, minutes=59), "3 hours"),
     (timedelta(days=1), "1 day"), (timedelta(days=20), "20 days"), (timedelta(days=59), "1 month"),
     (timedelta(days=800), "2 years"), (timedelta(seconds=-30), "less than a minute")],
)
def test_spans_read_as_their_largest_whole_unit(delta, text):
    assert span(delta) == text


def _set_health(account, name, **health):
    doc = account.document(name)
    doc["health"] = {"checkedAt": "2026-11-23T00:00:00Z", "needsReconnection": False, **health}
    account.set_document(name, doc)
    account.save()


@pytest.mark.parametrize("name, identifiers, field, value", [
    ("mastodon", {"instanceUrl": "https://social.example", "accountId": "1"}, "instance", "https://social.example"),
    ("bluesky", {"did": "did:plc:abc", "handle": "me.bsky.social"}, "identifier", "me.bsky.social"),
])
def test_reconnect_form_comes_up_filled_in(signed_in, user, name, identifiers, field, value):
    """Issue 12, item 12: the user reconnects the account they had, without retyping it."""
    account = seed_connection(user, name, handle="me", identifiers=identifiers)
    _set_health(account, name, status="revoked", needsReconnection=True, reason="Access was revoked.")
    body = card(signed_in.get("/settings").content.decode(), name)
    assert f'name="{field}" value="{value}"' in body


def test_a_new_connect_form_is_empty(signed_in):
    body = card(signed_in.get("/settings").content.decode(), "mastodon")
    assert 'name="instance" ' in body and 'name="instance" value=' not in body


@pytest.mark.parametrize("status", ["error", "revoked", "expired"])
def test_a_failing_connection_is_never_shown_as_plainly_connected(signed_in, user, status):
    """Issue 12, item 8: no green "Connected" badge beside Error or Revoked."""
    account = seed_connection(user, "mastodon", handle="me", identifiers={"instanceUrl": "https://social.example"})
    _set_health(account, "mastodon", status=status, reason="social.example is having trouble (HTTP 500).")
    body = card(signed_in.get("/settings").content.decode(), "mastodon")
    assert 'class="pill ok"' not in body and "Connected, failing" in body
    assert "social.example is having trouble (HTTP 500)." in body and "Refresh" in body
