"""Mastodon publishing through the API and the worker, against a Mastodon-shaped server on 127.0.0.1
(tests/fakes/mastodon.py) that keeps Idempotency-Key, processes media after a poll and refuses
over-long text by its own rule. What the server holds is read back."""
import io
import json
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings
from django.test import Client
from django.utils import timezone
from PIL import Image

from accounts.models import ApiToken
from platforms.services import account_for
from publishing.models import Delivery, Status

from ..fakes.mastodon import FakeMastodon
from ..fakes.server import Reply
from .helpers import make_due, png, target, upload

pytestmark = pytest.mark.django_db(transaction=True)
URL_100 = "https://example.com/" + "a" * 80  # 100 characters: Mastodon counts it as 23 (or the server's own)


@pytest.fixture
def private_hosts(settings, fake_dns, monkeypatch):
    settings.HAYON_ALLOW_PRIVATE_HOSTS = True  # the fake is on loopback; never in production
    settings.MASTODON_INSTANCE_URL = ""
    monkeypatch.setitem(fake_dns, "localhost", ["127.0.0.1"])


@pytest.fixture
def server(private_hosts):
    with FakeMastodon(auto_approve=True) as fake:
        yield fake


def connect(user, fake) -> Client:
    """Connect `user` to `fake` through Hayon's real flow; returns an API client for that user."""
    browser = Client()
    browser.force_login(user)
    url = browser.post("/settings/mastodon/connect", {"instance": fake.url})["Location"]
    while not url.startswith("http://testserver/"):
        url = requests.get(url, allow_redirects=False, timeout=5).headers["Location"]
    parts = urlsplit(url)
    assert browser.get(f"{parts.path}?{parts.query}")["Location"] == "/settings?success=mastodon_connected"
    return Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user=user, name='script')[1]}")


def publish(api, text: str, media=(), **extra):
    body = {"text": text, "targets": ["mastodon"], "media": list(media), **extra}
    return api.post("/api/posts", data=json.dumps(body), content_type="application/json")


def calls(fake, method: str, prefix: str) -> list:
    return [c for c in fake.calls if c.method == method and c.path.startswith(prefix)]


def test_text_and_an_image_with_alt_text_reach_the_server(user, server, run_worker, django_capture_on_commit_callbacks):
    api = connect(user, server)
    media_id = upload(api, png(), alt="A blue square on a white table")
    with django_capture_on_commit_callbacks(execute=True):
        post = publish(api, f"Hello fediverse ✨ {URL_100}", media=[media_id]).json()["data"]
    run_worker()

    result = target(api, post["id"])
    (status,) = server.statuses
    assert result["status"] == "published", result
    assert result["url"] == status["url"] == f"{server.url}/@tester/{status['id']}"
    assert status["text"] == f"Hello fediverse ✨ {URL_100}"
    (attachment,) = status["media_attachments"]
    assert attachment["description"] == "A blue square on a white table" and attachment["url"]
    assert server.media[attachment["id"]]["format"] == "PNG"
    # The upload answered 202 (processing): Hayon polled GET /api/v1/media/:id until it was done.
    assert [c.path for c in calls(server, "GET", "/api/v1/media/")] == [f"/api/v1/media/{attachment['id']}"] * 2
    (sent,) = calls(server, "POST", "/api/v1/statuses")
    assert sent.headers["Idempotency-Key"] == Delivery.objects.get().handle["idempotencyKey"]


def test_a_timeout_after_the_server_accepted_then_a_retry_makes_one_status(
    user, server, run_worker, django_capture_on_commit_callbacks
):
    api = connect(user, server)
    media_id = upload(api, png(), alt="alt")
    server.stall_after_accepting = settings.HAYON_HTTP_TIMEOUT + 1.5  # accepted; the reply comes too late
    with django_capture_on_commit_callbacks(execute=True):
        post = publish(api, "Posted exactly once", media=[media_id]).json()["data"]
    run_worker()
    delivery = Delivery.objects.get()
    assert delivery.status == Status.QUEUED and "did not answer in time" in delivery.error  # retried later
    assert len(server.statuses) == 1

    make_due()
    run_worker()
    result = target(api, post["id"])
    assert result["status"] == "published" and result["attempts"] == 2
    (status,) = server.statuses  # the same Idempotency-Key: the server answered the first status
    assert result["url"] == status["url"]
    first, second = calls(server, "POST", "/api/v1/statuses")
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert len(calls(server, "POST", "/api/v2/media")) == 1  # the retry attached the same upload


@pytest.mark.parametrize("size_limit, pixel_limit", [(20_000, 33_177_600), (16 * 1024 * 1024, 30_000)])
def test_an_image_over_the_servers_limits_is_made_to_fit(user, private_hosts, run_worker,
                                                         django_capture_on_commit_callbacks, size_limit, pixel_limit):
    noise = Image.effect_noise((300, 200), 100).convert("RGB")  # incompressible: a large PNG
    out = io.BytesIO()
    noise.save(out, format="PNG")
    assert len(out.getvalue()) > 100_000
    with FakeMastodon(auto_approve=True) as fake:
        fake.image_size_limit, fake.image_matrix_limit = size_limit, pixel_limit  # this server's own limits
        api = connect(user, fake)
        media_id = upload(api, out.getvalue(), alt="noise")
        with django_capture_on_commit_callbacks(execute=True):
            publish(api, "big picture", media=[media_id])
        run_worker()
        assert Delivery.objects.get().status == Status.PUBLISHED, Delivery.objects.get().error
        (item,) = fake.media.values()
    assert len(item["data"]) <= size_limit and item["width"] * item["height"] <= pixel_limit
    assert item["width"] / item["height"] == pytest.approx(1.5, rel=0.05)  # resized, not cropped


@pytest.mark.parametrize("limit, outcome", [(500, "refused"), (1000, "published")])
def test_the_limit_is_the_servers_own(user, private_hosts, run_worker, django_capture_on_commit_callbacks, limit, outcome):
    text = "word " * 117 + "tai " + URL_100  # 589 characters and a URL that counts 23: 612
    with FakeMastodon(auto_approve=True) as fake:
        fake.max_characters = limit
        api = connect(user, fake)
        assert account_for(user).document("mastodon")["limits"]["maxCharacters"] == limit
        with django_capture_on_commit_callbacks(execute=True):
            response = publish(api, text)
        if outcome == "refused":
            assert response.status_code == 422
            (problem,) = response.json()["data"]["problems"]
            assert problem["message"] == "Mastodon: 612 of 500 characters."
            assert (problem["limit"], problem["actual"], problem["target"]) == (500, 612, "mastodon")
            assert not Delivery.objects.exists()
        else:
            assert response.status_code == 202
            run_worker()
            assert target(api, response.json()["data"]["id"])["status"] == "published"
            assert [s["text"] for s in fake.statuses] == [text]  # and the server, by its rule, agreed


@pytest.mark.parametrize("per_url, accepted", [(23, True), (25, False)])
def test_a_long_url_weighs_what_the_server_says(user, private_hosts, django_capture_on_commit_callbacks, per_url, accepted):
    text = "x" * 475 + " " + URL_100  # 476 + 23 = 499 on most servers; 476 + 25 = 501 on one that reserves 25
    with FakeMastodon(auto_approve=True) as fake:
        fake.max_characters, fake.characters_reserved_per_url = 500, per_url
        api = connect(user, fake)
        response = publish(api, text)
    if accepted:
        assert response.status_code == 202, response.content
    else:
        assert response.status_code == 422
        assert response.json()["data"]["problems"][0]["message"] == "Mastodon: 501 of 500 characters."


@pytest.mark.parametrize("software", ["mastodon", "takahe"])  # 401; Takahē's `400 Invalid Bearer token`
def test_a_revoked_token_fails_the_delivery_and_shows_on_the_connection(
    user, private_hosts, run_worker, django_capture_on_commit_callbacks, software
):
    with FakeMastodon(software=software, auto_approve=True) as server:
        api = connect(user, server)
        server.revoke_all()  # the user removed Hayon in their server's settings
        with django_capture_on_commit_callbacks(execute=True):
            post = publish(api, "hello").json()["data"]
        run_worker()
    result = target(api, post["id"])
    assert result["status"] == "failed" and "Reconnect Mastodon" in result["error"]
    health = account_for(user).document("mastodon")["health"]
    assert health["status"] == "revoked" and health["needsReconnection"] is True
    assert server.statuses == []


def test_a_refusal_is_shown_in_the_servers_own_words(user, server, run_worker, django_capture_on_commit_callbacks):
    api = connect(user, server)
    server.status_replies = [Reply(422, {"error": "Validation failed: Text contains a word this server does not allow"})]
    with django_capture_on_commit_callbacks(execute=True):
        post = publish(api, "hello").json()["data"]
    run_worker()
    result = target(api, post["id"])
    host = urlsplit(server.url).netloc
    assert result["status"] == "failed"
    assert result["error"] == f"{host} says: “Validation failed: Text contains a word this server does not allow”"
    assert Delivery.objects.get().attempts == 1  # refused content is not retried


@pytest.mark.parametrize("reply, wait", [
    (Reply(429, {"error": "Too many requests"}, headers={"Retry-After": "600"}), 600),
    (Reply(503, "<html>Service Unavailable</html>", "text/html"), 30),
])
def test_rate_limits_and_server_trouble_are_retried_later(user, server, run_worker, django_capture_on_commit_callbacks,
                                                          reply, wait):
    api = connect(user, server)
    server.status_replies = [reply]
    with django_capture_on_commit_callbacks(execute=True):
        publish(api, "hello")
    before = timezone.now()
    run_worker()
    delivery = Delivery.objects.get()
    assert delivery.status == Status.QUEUED
    assert wait - 5 <= (delivery.next_attempt_at - before).total_seconds() <= wait + 10
    make_due()
    run_worker()
    assert Delivery.objects.get().status == Status.PUBLISHED and len(server.statuses) == 1
