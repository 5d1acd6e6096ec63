"""Tumblr publishing through the API and the worker, against a Tumblr-shaped server on 127.0.0.1
(tests/fakes/platforms.py FakeTumblr) that checks every OAuth 1.0a signature and takes NPF posts
with uploaded media. Tumblr has no idempotency: an unknown outcome is left to the person."""
import io
import json
import socket

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from PIL import Image

from accounts.models import ApiToken
from platforms.services import account_for
from publishing.models import Delivery, Status

from ..fakes.platforms import FakeTumblr
from ..fakes.server import Reply
from ..fixtures.consent import point_at_fakes, through_consent  # noqa: F401 (fixture)
from .helpers import make_due, png, target, upload

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tumblr(signed_in, point_at_fakes):
    with point_at_fakes(FakeTumblr()) as fake:
        assert through_consent(signed_in, fake, "tumblr")["Location"] == "/settings?success=tumblr_connected"
        yield fake


@pytest.fixture
def api(user):
    return Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user=user, name='script')[1]}")


@pytest.fixture
def publish(api, django_capture_on_commit_callbacks):
    def send(text: str, media=()):
        with django_capture_on_commit_callbacks(execute=True):
            return api.post("/api/posts", data=json.dumps({"text": text, "targets": ["tumblr"], "media": list(media)}),
                            content_type="application/json")

    return send


def test_text_and_images_with_alt_text_reach_the_chosen_blog(api, tumblr, publish, run_worker):
    first, second = upload(api, png(), alt="A red square"), upload(api, png(30, 40), alt="")
    post = publish("First line ✨\nSecond line", media=[first, second]).json()["data"]
    run_worker()

    result = target(api, post["id"])
    (made,) = tumblr.posts
    assert result["status"] == "published", result
    assert result["url"] == f"https://fakeblogger.tumblr.com/post/{made['id']}"
    assert made["blog_uuid"] == "t:fake-primary"
    assert [b["text"] for b in made["content"] if b["type"] == "text"] == ["First line ✨", "Second line"]
    assert [i["alt_text"] for i in made["images"]] == ["A red square", None]
    assert all(Image.open(io.BytesIO(i["data"])).format == "PNG" for i in made["images"])


def test_the_chosen_blog_is_the_one_posted_to(api, user, signed_in, tumblr, publish, run_worker):
    signed_in.post("/settings/tumblr/choose", {"choice": "t:fake-side"})
    assert account_for(user).document("tumblr")["blogUuid"] == "t:fake-side"
    publish("On the side blog")
    run_worker()
    (made,) = tumblr.posts
    assert made["blog_uuid"] == "t:fake-side"
    assert Delivery.objects.get().url.startswith("https://sideblog.tumblr.com/post/")


def test_a_timeout_after_sending_needs_attention_and_is_never_retried(api, tumblr, publish, run_worker):
    tumblr.stall_after_accepting = settings.HAYON_HTTP_TIMEOUT + 1.5  # taken; the reply comes too late
    post = publish("Posted once, whatever happens").json()["data"]
    run_worker()
    result = target(api, post["id"])
    assert result["status"] == "needs_attention"
    assert "Tumblr may have published the post: check Tumblr" in result["error"]

    make_due()
    run_worker()  # nothing runs it again: only the person's Retry would
    assert target(api, post["id"])["status"] == "needs_attention"
    assert len(tumblr.posts) == 1
    assert len([c for c in tumblr.calls if c.path.endswith("/posts")]) == 1


@pytest.mark.parametrize("reply, wait", [
    (Reply(429, {"meta": {"status": 429, "msg": "Limit Exceeded"}, "response": []}, headers={"Retry-After": "120"}), 120),
    (Reply(503, {"meta": {"status": 503, "msg": "Service Unavailable"}, "response": []}), 30),
    (Reply(500, {"meta": {"status": 500, "msg": "Internal Server Error"}, "response": [],
                 "errors": [{"title": "Unknown upload error", "code": 8006}]}), 30),
])
def test_a_refusal_before_acceptance_is_retried(api, tumblr, publish, run_worker, reply, wait):
    tumblr.post_replies = [reply]
    post = publish("hello").json()["data"]
    before = timezone.now()
    run_worker()
    delivery = Delivery.objects.get()
    assert delivery.status == Status.QUEUED, delivery.error
    assert wait - 5 <= (delivery.next_attempt_at - before).total_seconds() <= wait + 10
    make_due()
    run_worker()
    assert target(api, post["id"])["status"] == "published" and len(tumblr.posts) == 1


def test_a_server_error_on_the_post_itself_is_an_unknown_outcome(api, tumblr, publish, run_worker):
    tumblr.post_replies = [Reply(500, {"meta": {"status": 500, "msg": "Internal Server Error"}, "response": []})]
    post = publish("hello").json()["data"]
    run_worker()
    assert target(api, post["id"])["status"] == "needs_attention"


def test_a_connection_refused_is_retried(api, tumblr, publish, run_worker, settings):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: the connection is refused before anything is sent
    settings.TUMBLR_API_URL = f"http://127.0.0.1:{port}"
    publish("hello")
    run_worker()
    delivery = Delivery.objects.get()
    assert delivery.status == Status.QUEUED and "could not be reached" in delivery.error


def test_revoked_access_fails_and_shows_on_the_connection(api, user, tumblr, publish, run_worker):
    tumblr.revoke_all()
    post = publish("hello").json()["data"]
    run_worker()
    result = target(api, post["id"])
    assert result["status"] == "failed" and "Reconnect Tumblr" in result["error"]
    assert account_for(user).document("tumblr")["health"]["needsReconnection"] is True
    assert tumblr.posts == []


def test_a_refusal_is_shown_in_tumblrs_words(api, tumblr, publish, run_worker):
    tumblr.post_replies = [Reply(403, {"meta": {"status": 403, "msg": "Forbidden"}, "response": [],
                                       "errors": [{"title": "Daily posting limit reached", "code": 8023}]})]
    post = publish("hello").json()["data"]
    run_worker()
    result = target(api, post["id"])
    assert result["status"] == "failed"
    assert result["error"] == "Tumblr refused the post: “Daily posting limit reached”"


def test_a_blog_that_is_gone_says_so(api, user, tumblr, publish, run_worker):
    tumblr.accounts["fakeblogger"].pop(0)  # the primary blog was deleted at Tumblr
    post = publish("hello").json()["data"]
    run_worker()
    result = target(api, post["id"])
    assert result["status"] == "failed"
    assert result["error"].startswith("Tumblr cannot find the blog fakeblogger.tumblr.com.")


def test_a_text_block_over_4096_code_points_is_refused_before_queueing(api, tumblr, publish):
    response = publish("é" * 4097)
    assert response.status_code == 422
    assert response.json()["data"]["problems"][0]["message"] == "Tumblr: 4,097 of 4,096 characters."
    assert not Delivery.objects.exists()
