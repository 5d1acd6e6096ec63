"""The composer and post pages (publishing/views.py, composer.py, previews.py) through Django's client."""
import json
import re

import pytest
from django.test import Client
from django_tasks_db.models import DBTaskResult

from platforms.services import account_for
from publishing import previews
from publishing.interface import Preview, Rules, TextLimit
from publishing.models import Delivery, MediaFile, Post, Status

from ..conftest import seed_connection
from ..fixtures.consent import point_at_fakes  # noqa: F401 (fixture)
from .conftest import FakePublisher
from .test_api import DID, png, upload

LONG = "é" * 312  # 312 graphemes; Bluesky takes 300


@pytest.fixture
def bluesky(user):
    seed_connection(user, "bluesky", handle="alice.example", identifiers={"did": DID, "handle": "alice.example"},
                    auth={"accessJwt": "x", "refreshJwt": "y", "pds": "https://pds.example"})
    return user


@pytest.fixture
def fakeblr(user, install_publisher):
    """A second account that can publish (the fake publisher, as Tumblr), with a 1,000 limit."""
    publisher = FakePublisher(idempotent=True)
    publisher.publish_rules = Rules(text_limits=(TextLimit("graphemes", 1000),), max_images=4)
    install_publisher(publisher)
    seed_connection(user, "tumblr", handle="fakeblr")
    return publisher


@pytest.fixture
def send(signed_in, django_capture_on_commit_callbacks):
    """POST the composer's form as the browser does (tasks queued as they are once it commits)."""

    def post(data: dict, *, client=None):
        with django_capture_on_commit_callbacks(execute=True):
            return (client or signed_in).post("/compose", data)

    return post


def set_health(user, name, **health):
    account = account_for(user)
    doc = account.document(name)
    doc["health"] = {**doc["health"], **health}
    account.set_document(name, doc)
    account.save()


def form_key(html: str) -> str:
    return re.search(r'name="idempotency_key" value="([^"]+)"', html).group(1)


# -- the composer page -----------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_composer_needs_a_sign_in(client):
    response = client.get("/compose")
    assert response.status_code == 302 and response["Location"].startswith("/login")


@pytest.mark.django_db
def test_the_composer_lists_connected_accounts_with_their_health(bluesky, signed_in):
    response = signed_in.get("/compose")
    html = response.content.decode()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert 'id="target-bluesky" name="targets" value="bluesky"' in html and "@alice.example" in html
    assert re.search(r'id="target-bluesky"[^>]*disabled', html) is None
    assert 'id="target-mastodon"' not in html  # not connected: not listed
    assert "Customize for Bluesky" in html
    assert 'href="/compose"' in html and 'href="/posts"' in html  # in the main navigation


@pytest.mark.django_db
def test_an_account_that_is_not_active_cannot_be_ticked_and_says_why(user, bluesky, signed_in):
    set_health(user, "bluesky", status="expired", needsReconnection=True, reason="The session ended.")
    html = signed_in.get("/compose").content.decode()
    assert re.search(r'id="target-bluesky"[^>]*disabled aria-describedby="why-bluesky"', html)
    why = re.search(r'<p class="why small" id="why-bluesky">(.*?)</p>', html, re.S).group(1)
    assert "The session ended." in why and 'href="/settings#platform-bluesky"' in why


@pytest.mark.django_db
def test_a_post_is_created_and_the_browser_goes_to_its_page(user, bluesky, send):
    response = send({"text": "Hello from the composer", "targets": ["bluesky"], "idempotency_key": "k1"})
    post = Post.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/posts/{post.pk}"
    assert post.user == user and post.text == "Hello from the composer"
    assert [(d.platform, d.status) for d in post.deliveries.all()] == [("bluesky", "queued")]
    assert DBTaskResult.objects.count() == 1


@pytest.mark.django_db
def test_a_double_click_or_resubmit_makes_one_post(bluesky, send):
    form = {"text": "Only once", "targets": ["bluesky"], "idempotency_key": "same-form"}
    first, second = send(form), send(form)
    assert Post.objects.count() == 1 and Delivery.objects.count() == 1 and DBTaskResult.objects.count() == 1
    assert first["Location"] == second["Location"] == f"/posts/{Post.objects.get().pk}"


@pytest.mark.django_db
def test_a_sent_form_sent_again_with_other_content_makes_no_second_post(bluesky, send):
    send({"text": "First", "targets": ["bluesky"], "idempotency_key": "reused"})
    response = send({"text": "Changed after sending", "targets": ["bluesky"], "idempotency_key": "reused"})
    html = response.content.decode()
    assert response.status_code == 409 and "already published with other content" in html
    assert list(Post.objects.values_list("text", flat=True)) == ["First"]
    assert "Changed after sending" in html and form_key(html) != "reused"  # nothing lost; sending again is a new post
    send({"text": "Changed after sending", "targets": ["bluesky"], "idempotency_key": form_key(html)})
    assert Post.objects.count() == 2


@pytest.mark.django_db
def test_publishing_too_often_is_refused_with_a_429(bluesky, send, monkeypatch):
    from accounts import ratelimit
    from publishing import services

    monkeypatch.setattr(services, "POST_LIMITS", (ratelimit.Limit("publish-user-test", 1, 600),))
    send({"text": "one", "targets": ["bluesky"], "idempotency_key": "a"})
    response = send({"text": "two", "targets": ["bluesky"], "idempotency_key": "b"})
    assert response.status_code == 429 and "Too many attempts" in response.content.decode()
    assert Post.objects.count() == 1


@pytest.mark.django_db
def test_each_page_load_gets_its_own_key(bluesky, signed_in):
    assert form_key(signed_in.get("/compose").content.decode()) != form_key(signed_in.get("/compose").content.decode())


@pytest.mark.django_db
def test_a_problem_refuses_the_whole_post_and_keeps_what_was_typed(bluesky, fakeblr, send):
    response = send({"text": LONG, "targets": ["bluesky", "tumblr"], "idempotency_key": "k2"})
    html = response.content.decode()
    assert response.status_code == 422 and Post.objects.count() == 0 and DBTaskResult.objects.count() == 0
    assert "Bluesky: 312 of 300 characters." in html
    assert LONG in html and 'value="k2"' in html  # the same form, its key unused
    assert re.search(r'id="target-tumblr"[^>]*checked', html)


@pytest.mark.django_db
def test_a_per_account_override_is_stored_for_that_account_only(bluesky, fakeblr, send):
    send({"text": LONG[:290], "targets": ["bluesky", "tumblr"], "override-tumblr": "Longer for Fakeblr",
          "override-bluesky": "   ", "idempotency_key": "k3"})
    post = Post.objects.get()
    assert post.text_for("tumblr") == "Longer for Fakeblr" and post.text_for("bluesky") == LONG[:290]


@pytest.mark.django_db
def test_nothing_ticked_says_so(bluesky, send):
    response = send({"text": "hi", "idempotency_key": "k4"})
    assert response.status_code == 422 and "Tick at least one account" in response.content.decode()


@pytest.mark.django_db
def test_the_form_needs_its_csrf_token(user, bluesky):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/compose", {"text": "hi", "targets": ["bluesky"]}).status_code == 403
    assert Post.objects.count() == 0


@pytest.mark.django_db
def test_alt_text_typed_in_the_form_goes_with_the_image(user, bluesky, signed_in, send):
    media_id = upload(signed_in, png()).json()["data"]["id"]
    response = send({"text": "look", "targets": ["bluesky"], "media": [str(media_id)],
                     "alt-%d" % media_id: "A red square", "idempotency_key": "k5"})
    assert response.status_code == 302
    assert [m.alt for m in Post.objects.get().ordered_media()] == ["A red square"]


@pytest.mark.django_db
def test_another_users_image_cannot_be_attached_nor_relabelled(user, other_user, bluesky, send):
    client = Client()
    client.force_login(other_user)
    theirs = upload(client, png(), alt="theirs").json()["data"]["id"]
    response = send({"text": "x", "targets": ["bluesky"], "media": [str(theirs)], f"alt-{theirs}": "mine now",
                     "idempotency_key": "k6"})
    assert response.status_code == 422 and Post.objects.count() == 0
    assert MediaFile.objects.get(pk=theirs).alt == "theirs"


# -- the live check ----------------------------------------------------------------------------------
def validate(client, body):
    return client.post("/api/posts/validate", data=json.dumps(body), content_type="application/json")


@pytest.mark.django_db
def test_the_live_check_names_the_account_the_rule_and_the_numbers(bluesky, fakeblr, signed_in):
    response = validate(signed_in, {"text": LONG, "targets": ["bluesky", "tumblr"]})
    data = response.json()["data"]
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert data["problems"] == [{"target": "bluesky", "rule": "text_length", "message": "Bluesky: 312 of 300 characters.",
                                 "limit": 300, "actual": 312}]
    assert (data["previews"]["bluesky"]["count"], data["previews"]["tumblr"]["count"]) == (312, 312)
    over = "".join(s["text"] for s in data["previews"]["bluesky"]["segments"] if s["over"])
    assert over == "é" * 12 and not any(s["over"] for s in data["previews"]["tumblr"]["segments"])
    assert Post.objects.count() == 0


@pytest.mark.django_db
def test_the_live_check_gives_the_same_problems_as_publishing(bluesky, signed_in, api):
    body = {"text": "🇫🇷" * 301, "targets": ["bluesky"]}
    checked = validate(signed_in, body).json()["data"]["problems"]
    refused = api.post("/api/posts", data=json.dumps(body), content_type="application/json").json()["data"]["problems"]
    assert checked == refused and checked[0]["actual"] == 301


@pytest.mark.django_db
def test_the_live_check_needs_the_csrf_header_from_a_browser(user, bluesky):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = validate(client, {"text": "hi", "targets": ["bluesky"]})
    assert response.status_code in (401, 403) and response.json()["success"] is False


@pytest.mark.django_db
def test_the_live_check_reads_alt_text_as_typed(user, bluesky, signed_in, monkeypatch):
    from platforms.providers import bluesky as module

    media_id = upload(signed_in, png()).json()["data"]["id"]
    rules = Rules(text_limits=(TextLimit("graphemes", 300),), max_images=4, max_alt_chars=5)
    monkeypatch.setattr(module.BlueskyProvider, "publish_rules", rules)
    data = validate(signed_in, {"text": "x", "targets": ["bluesky"], "media": [media_id],
                                "alts": {str(media_id): "far too long"}}).json()["data"]
    assert [p["rule"] for p in data["problems"]] == ["alt_text"]
    assert MediaFile.objects.get().alt == ""  # a check stores nothing


# -- previews --------------------------------------------------------------------------------------
def kinds(found):
    return [(s.kind, s.text) for s in found if s.kind != "text"]


def test_bluesky_preview_marks_links_mentions_and_tags_as_its_app_does():
    text = "see https://example.com/a, hi @alice.bsky.social #Hayon and #123"
    assert kinds(previews.segments(text, marking="facets", over_from=len(text))) == [
        ("link", "https://example.com/a"), ("mention", "@alice.bsky.social"), ("tag", "#Hayon")]


def test_mastodon_preview_shortens_links_and_remote_mentions():
    text = "read https://www.example.com/a/very/long/path/that/goes/on/and/on by @bob@social.example #tag"
    assert kinds(previews.segments(text, marking="mastodon", over_from=len(text))) == [
        ("link", "example.com/a/very/long/path/t…"), ("mention", "@bob"), ("tag", "#tag")]


def test_the_part_past_the_limit_is_marked_even_inside_a_link():
    text = "ab https://example.com"
    found = previews.segments(text, marking="facets", over_from=10)
    assert [(s.kind, s.text, s.over) for s in found] == [
        ("text", "ab ", False), ("link", "https:/", False), ("link", "/example.com", True)]


def test_a_feed_that_truncates_shows_see_more_at_its_cut():
    rules = Rules(text_limits=(TextLimit("code_points", 2200),), max_images=10)
    shown = previews.account_preview(target="x", rules=rules, preview=Preview(see_more_after=10, image_ratio=(4, 5)),
                                     text="0123456789 and the rest")
    assert shown.see_more and "".join(s.text for s in shown.segments) == "0123456789"
    assert shown.ratio_class == "ratio-4x5" and shown.count == 23


# -- post pages ------------------------------------------------------------------------------------
@pytest.fixture
def a_post(user, bluesky, send):
    send({"text": "Hello https://example.com", "targets": ["bluesky"], "idempotency_key": "p"})
    return Post.objects.get()


@pytest.mark.django_db
def test_the_post_page_shows_each_accounts_state_and_link(a_post, signed_in):
    Delivery.objects.update(status=Status.PUBLISHED, url="https://bsky.app/profile/did:plc:x/post/3k")
    response = signed_in.get(f"/posts/{a_post.pk}")
    html = response.content.decode()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert 'class="chip chip-published" data-status>published<' in html
    assert 'href="https://bsky.app/profile/did:plc:x/post/3k"' in html and 'id="retry-form" hidden' in html
    assert "data-active" not in html  # nothing left to poll for


@pytest.mark.django_db
def test_an_expired_connection_failure_says_what_to_do_with_a_reconnect_link(a_post, signed_in):
    Delivery.objects.update(status=Status.FAILED, error="Bluesky: the session ended. Reconnect Bluesky under Settings, then retry.",
                            error_kind="reconnect")
    html = signed_in.get(f"/posts/{a_post.pk}").content.decode()
    assert "the session ended" in html and 'href="/settings#platform-bluesky"' in html
    assert 'id="retry-form" hidden' not in html
    state = signed_in.get(f"/posts/{a_post.pk}/status").json()
    assert state["targets"][0] == {"platform": "bluesky", "label": "Bluesky", "status": "failed", "statusText": "failed",
                                        "url": "", "error": state["targets"][0]["error"],
                                        "reconnect": "/settings#platform-bluesky"}
    assert state["active"] is False and state["retryable"] is True


@pytest.mark.django_db
def test_the_status_keeps_the_page_polling_while_queued(a_post, signed_in):
    assert signed_in.get(f"/posts/{a_post.pk}/status").json()["active"] is True
    assert "data-active" in signed_in.get(f"/posts/{a_post.pk}").content.decode()


@pytest.mark.django_db
def test_retry_requeues_only_the_failed_accounts(user, a_post, fakeblr, signed_in, django_capture_on_commit_callbacks):
    Delivery.objects.create(post=a_post, platform="tumblr", status=Status.PUBLISHED, url="https://fake.example/1")
    Delivery.objects.filter(platform="bluesky").update(status=Status.FAILED, error="Refused.")
    DBTaskResult.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(f"/posts/{a_post.pk}/retry")
    assert response.status_code == 302 and response["Location"] == f"/posts/{a_post.pk}"
    assert dict(Delivery.objects.values_list("platform", "status")) == {"bluesky": "queued", "tumblr": "published"}
    assert [r.args_kwargs["args"] for r in DBTaskResult.objects.all()] == [[Delivery.objects.get(platform="bluesky").pk]]


@pytest.mark.django_db
def test_retry_needs_its_csrf_token(user, a_post):
    Delivery.objects.update(status=Status.FAILED)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(f"/posts/{a_post.pk}/retry").status_code == 403
    assert Delivery.objects.get().status == Status.FAILED


@pytest.mark.django_db
def test_another_user_sees_none_of_it(a_post, other_user, signed_in):
    media_id = upload(signed_in, png()).json()["data"]["id"]
    other = Client()
    other.force_login(other_user)
    for path in (f"/posts/{a_post.pk}", f"/posts/{a_post.pk}/status", f"/compose/media/{media_id}"):
        assert other.get(path).status_code == 404, path
    assert other.post(f"/posts/{a_post.pk}/retry").status_code == 404
    assert "Hello https://example.com" not in other.get("/posts").content.decode()
    assert signed_in.get(f"/compose/media/{media_id}")["Content-Type"] == "image/png"


@pytest.mark.django_db
def test_the_posts_list_shows_a_chip_per_account(a_post, signed_in):
    html = signed_in.get("/posts").content.decode()
    assert f'href="/posts/{a_post.pk}"' in html and "Bluesky" in html and "chip-queued" in html


# -- a linked account (Instagram, through the Facebook Page) -----------------------------------------
@pytest.mark.django_db
def test_a_linked_account_is_listed_with_its_own_rules_and_reconnects_through_its_parent(user, signed_in, point_at_fakes):
    from ..fakes.platforms import FakeFacebook
    from ..fixtures.consent import through_consent

    with point_at_fakes(FakeFacebook(pages=1)) as fake:
        assert through_consent(signed_in, fake, "facebook")["Location"] == "/settings?success=facebook_connected"
    html = signed_in.get("/compose").content.decode()
    assert 'id="target-facebook"' in html and 'id="target-instagram"' in html
    data = validate(signed_in, {"text": "Words only", "targets": ["instagram"]}).json()["data"]
    assert [p["rule"] for p in data["problems"]] == ["media_required"] and data["previews"]["instagram"]["limit"] == 2200
    # Instagram's own preview: 4:5 crop, hashtags and mentions marked but no link, "more" after ~125.
    caption = "Shop at https://example.com with @hayon #launch " + "words " * 30
    shown = validate(signed_in, {"text": caption, "targets": ["instagram"]}).json()["data"]["previews"]["instagram"]
    assert shown["imageRatio"] == "4 / 5" and shown["seeMore"] is True
    assert [(s["kind"], s["text"]) for s in shown["segments"] if s["kind"] != "text"] == [
        ("mention", "@hayon"), ("tag", "#launch")]
    set_health(user, "instagram", status="expired", needsReconnection=True, reason="The Page token expired.")
    html = signed_in.get("/compose").content.decode()
    assert re.search(r'id="target-instagram"[^>]*disabled', html)
    assert 'href="/settings#platform-facebook">Reconnect Instagram</a>' in html


# -- needs attention: the user's answer --------------------------------------------------------------
def needs_attention(post):
    Delivery.objects.filter(post=post).update(status=Status.NEEDS_ATTENTION, error="Check the account.")


@pytest.mark.django_db
def test_a_post_that_needs_attention_can_be_marked_published_with_its_link(a_post, signed_in):
    needs_attention(a_post)
    page = signed_in.get(f"/posts/{a_post.pk}").content.decode()
    assert "It is there: mark as published" in page
    response = signed_in.post(f"/posts/{a_post.pk}/published/bluesky", {"url": "https://bsky.app/profile/a/post/1"},
                              follow=True)
    delivery = Delivery.objects.get()
    assert delivery.status == Status.PUBLISHED and delivery.url == "https://bsky.app/profile/a/post/1"
    assert delivery.published_at is not None and delivery.error == ""
    assert "Marked as published." in response.content.decode()


@pytest.mark.django_db
def test_only_a_delivery_needing_attention_can_be_marked(a_post, signed_in):
    Delivery.objects.update(status=Status.FAILED, error="Bluesky refused the post.")
    response = signed_in.post(f"/posts/{a_post.pk}/published/bluesky", follow=True)
    assert Delivery.objects.get().status == Status.FAILED
    assert "Only an account whose post needs attention" in response.content.decode()


@pytest.mark.django_db
def test_a_link_that_is_not_http_is_refused_and_nothing_changes(a_post, signed_in):
    needs_attention(a_post)
    response = signed_in.post(f"/posts/{a_post.pk}/published/bluesky", {"url": "javascript:alert(1)"}, follow=True)
    assert Delivery.objects.get().status == Status.NEEDS_ATTENTION
    assert "must start with https://" in response.content.decode()


@pytest.mark.django_db
def test_another_user_cannot_mark_a_post(a_post, other_user, api):
    needs_attention(a_post)
    mallory = Client()
    mallory.force_login(other_user)
    assert mallory.post(f"/posts/{a_post.pk}/published/bluesky").status_code == 404
    assert Delivery.objects.get().status == Status.NEEDS_ATTENTION


@pytest.mark.django_db
def test_scripts_mark_published_through_the_api(a_post, api):
    needs_attention(a_post)
    path = f"/api/posts/{a_post.pk}/targets/bluesky/published"
    response = api.post(path, data=json.dumps({"url": "https://bsky.app/profile/a/post/2"}), content_type="application/json")
    assert response.status_code == 200
    assert response.json()["data"]["targets"][0]["status"] == "published"
    again = api.post(path, data="{}", content_type="application/json")
    assert again.status_code == 409 and again.json()["success"] is False
