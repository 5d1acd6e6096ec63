"""Facebook Page, Instagram and Threads publishing through the API and the worker, against fakes
that play Meta as documented (tests/fakes/meta_publishing.py): containers IN_PROGRESS then
FINISHED, ERROR with Meta's reason, Graph error envelopes, quotas, and images fetched from
Hayon's signed URLs on the live test server, without a session."""
import io
import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from PIL import Image

from platforms.services import account_for
from publishing.models import Delivery, Status

from ..fakes.platforms import FakeFacebook, FakeMeta, FakeThreads
from ..fixtures.consent import point_at_fakes, through_consent  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def meta_settings(settings, live_server):
    settings.PUBLIC_URL = live_server.url  # Meta fetches images from here (signed URLs)
    settings.HAYON_META_POLL_INTERVAL = 0.02
    settings.HAYON_META_POLL_SECONDS = 10


@pytest.fixture
def facebook(signed_in, point_at_fakes):
    with point_at_fakes(FakeFacebook(pages=1)) as fake:
        assert through_consent(signed_in, fake, "facebook")["Location"] == "/settings?success=facebook_connected"
        yield fake


@pytest.fixture
def threads(signed_in, point_at_fakes):
    with point_at_fakes(FakeThreads()) as fake:
        assert through_consent(signed_in, fake, "threads")["Location"] == "/settings?success=threads_connected"
        yield fake


def image(width=40, height=30, fmt="PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 120, 200)).save(out, format=fmt)
    return out.getvalue()


def upload(api, data: bytes, alt: str = "") -> int:
    reply = api.post("/api/media", {"file": SimpleUploadedFile("p.png", data, content_type="image/png"), "alt": alt})
    assert reply.status_code == 201, reply.content
    return reply.json()["data"]["id"]


def publish(api, text: str, targets: list[str], media=()):
    return api.post("/api/posts", data=json.dumps({"text": text, "targets": targets, "media": list(media)}),
                    content_type="application/json")


def queued(api, text: str, targets: list[str], media=()) -> int:
    reply = publish(api, text, targets, media)
    assert reply.status_code == 202, reply.content
    return reply.json()["data"]["id"]


def targets(api, post_id: int) -> dict:
    return {t["platform"]: t for t in api.get(f"/api/posts/{post_id}").json()["data"]["targets"]}


def later(run_worker) -> None:
    """The back-off passes: queued retries are due, and the worker runs them."""
    past = timezone.now() - timedelta(seconds=1)
    Delivery.objects.filter(status=Status.QUEUED).update(next_attempt_at=past)
    DBTaskResult.objects.filter(status="READY").update(run_after=past)
    run_worker()


def health(user, name: str) -> dict:
    return account_for(user).document(name)["health"]


# -- Facebook Page -------------------------------------------------------------------------------
def test_a_text_post_with_a_link_reaches_the_page(api, facebook, run_worker):
    post = queued(api, "Fresh bread today https://bakery.example/bread", ["facebook"])
    run_worker()
    target = targets(api, post)["facebook"]
    assert target["status"] == "published", target
    [made] = facebook.published
    assert made["text"] == "Fresh bread today https://bakery.example/bread"
    assert made["link"] == "https://bakery.example/bread"
    assert target["url"] == f"https://www.facebook.com/{made['id']}" and made["id"].startswith("101_")
    feed = [c for c in facebook.calls if c.path.endswith("/101/feed")]
    assert feed and all(c.form.get("appsecret_proof") for c in feed)  # the fake refuses calls without it
    assert not any("access_token" in c.query for c in feed)  # the token travels in the body, not the URL


def test_several_photos_are_uploaded_unpublished_then_posted_once(api, facebook, run_worker):
    media = [upload(api, image(), alt="Loaf"), upload(api, image(30, 30), alt="Crumb")]
    post = queued(api, "Two loaves", ["facebook"], media)
    run_worker()
    assert targets(api, post)["facebook"]["status"] == "published"
    [made] = facebook.published
    assert made["text"] == "Two loaves" and made["alt"] == ["Loaf", "Crumb"]
    assert [(i["width"], i["height"]) for i in made["images"]] == [(40, 30), (30, 30)]
    assert [status for _, status, _ in facebook.fetched] == [200, 200]  # fetched from Hayon without a session
    assert not facebook.unpublished_photos  # both became part of the post


def test_a_timeout_on_the_final_post_needs_attention_and_is_not_retried(api, facebook, run_worker, settings):
    settings.HAYON_HTTP_TIMEOUT = 1.0
    facebook.faults["feed"] = [("slow", 2.5)]  # Facebook takes the post, then answers too late
    post = queued(api, "Hello Page", ["facebook"])
    run_worker()
    target = targets(api, post)["facebook"]
    assert target["status"] == "needs_attention", target
    assert "may have published" in target["error"] and "check Facebook" in target["error"]
    later(run_worker)
    assert len(facebook.published) == 1 and len([c for c in facebook.calls if c.path.endswith("/feed")]) == 1


def test_a_rate_limit_before_acceptance_is_retried_and_publishes_once(api, facebook, run_worker):
    facebook.faults["feed"] = [FakeMeta.error(32, message="Page request limit reached")]
    post = queued(api, "Hello Page", ["facebook"])
    run_worker()
    target = targets(api, post)["facebook"]
    assert target["status"] == "queued" and "rate limiting" in target["error"], target
    later(run_worker)
    assert targets(api, post)["facebook"]["status"] == "published"
    assert len(facebook.published) == 1


def test_a_server_error_on_a_photo_upload_step_is_retried(api, facebook, run_worker):
    from ..fakes.server import Reply

    facebook.faults["photos"] = [Reply(500, {"error": {"message": "An unexpected error has occurred.", "type": "OAuthException",
                                                       "code": 2, "fbtrace_id": "AbCdEf"}})]
    post = queued(api, "Two", ["facebook"], [upload(api, image()), upload(api, image())])
    run_worker()
    assert targets(api, post)["facebook"]["status"] == "queued"  # nothing was published: safe to retry
    later(run_worker)
    assert targets(api, post)["facebook"]["status"] == "published" and len(facebook.published) == 1


def test_a_refused_connection_on_the_final_post_is_retried(api, facebook, run_worker, settings):
    """Nothing was sent, so nothing can have been published: retry, not needs_attention."""
    settings.FACEBOOK_GRAPH_URL = "http://127.0.0.1:9"  # nothing listens there
    post = queued(api, "Hello Page", ["facebook"])
    run_worker()
    assert targets(api, post)["facebook"]["status"] == "queued"
    settings.FACEBOOK_GRAPH_URL = facebook.url
    later(run_worker)
    assert targets(api, post)["facebook"]["status"] == "published" and len(facebook.published) == 1


def test_an_invalid_parameter_is_refused_with_facebooks_message(api, facebook, run_worker):
    facebook.faults["feed"] = [FakeMeta.error(100, message="(#100) The link is not valid")]
    post = queued(api, "Hello", ["facebook"])
    run_worker()
    target = targets(api, post)["facebook"]
    assert target["status"] == "failed" and target["error"] == "Facebook refused the post: (#100) The link is not valid"


def test_an_expired_page_token_marks_the_connection_expired_with_reconnect(api, user, facebook, run_worker):
    facebook.faults["feed"] = [FakeMeta.error(190, 463, "Error validating access token: Session has expired")]
    post = queued(api, "Hello Page", ["facebook"])
    run_worker()
    target = targets(api, post)["facebook"]
    assert target["status"] == "failed" and "Reconnect" in target["error"], target
    assert Delivery.objects.get().error_kind == "reconnect"
    for name in ("facebook", "instagram"):  # the Instagram account publishes with the same Page token
        assert health(user, name)["status"] == "expired" and health(user, name)["needsReconnection"] is True
    assert publish(api, "Again", ["facebook"]).status_code == 422  # refused until reconnected


# -- Instagram -----------------------------------------------------------------------------------
def test_an_image_post_reaches_instagram_as_a_jpeg_fetched_from_a_signed_url(api, facebook, run_worker):
    post = queued(api, "Crust #bread @friend", ["instagram"], [upload(api, image(), alt="A loaf")])
    run_worker()
    target = targets(api, post)["instagram"]
    assert target["status"] == "published", target
    [made] = facebook.published
    assert made["owner"] == "17841401" and made["text"] == "Crust #bread @friend" and made["alt"] == ["A loaf"]
    assert made["images"] == [{"format": "JPEG", "width": 40, "height": 30}]  # Hayon sent a JPEG copy
    [(url, status, content_type)] = facebook.fetched
    assert status == 200 and content_type == "image/jpeg" and "/media/s/" in url
    assert target["url"] == f"https://www.instagram.com/p/{made['id'][-8:]}/"  # the permalink Instagram gave
    polls = [c for c in facebook.calls if c.path.endswith(f"/{made['container']}") and c.method == "GET"]
    assert len(polls) == facebook.polls_in_progress + 1  # IN_PROGRESS twice, then FINISHED


def test_a_carousel_is_made_of_item_containers(api, facebook, run_worker):
    media = [upload(api, image()), upload(api, image(30, 30)), upload(api, image(32, 40))]
    post = queued(api, "Three", ["instagram"], media)
    run_worker()
    assert targets(api, post)["instagram"]["status"] == "published"
    [made] = facebook.published
    assert made["kind"] == "CAROUSEL" and len(made["images"]) == 3


def test_a_retry_after_a_timeout_on_media_publish_publishes_the_same_container_once(
    api, facebook, run_worker, settings
):
    settings.HAYON_HTTP_TIMEOUT = 1.0
    facebook.faults["media_publish"] = [("slow", 2.5)]  # published, but the answer comes too late
    post = queued(api, "Once", ["instagram"], [upload(api, image())])
    run_worker()
    delivery = Delivery.objects.get()
    assert delivery.status == Status.QUEUED and delivery.handle["container_id"]  # retried: the container is kept
    later(run_worker)
    target = targets(api, post)["instagram"]
    assert target["status"] == "published", target
    assert len(facebook.published) == 1 and facebook.publish_calls == [delivery.handle["container_id"]]
    assert len(facebook.containers) == 1  # no second container either


def test_a_retry_before_media_publish_publishes_the_stored_container(api, facebook, run_worker):
    facebook.faults["media_publish"] = [FakeMeta.error(2, message="Service temporarily unavailable")]
    post = queued(api, "Once", ["instagram"], [upload(api, image())])
    run_worker()
    later(run_worker)
    assert targets(api, post)["instagram"]["status"] == "published"
    container = Delivery.objects.get().handle["container_id"]
    assert facebook.publish_calls == [container, container] and len(facebook.published) == 1
    assert len(facebook.containers) == 1


def test_an_image_instagram_cannot_use_fails_with_its_reason(api, facebook, run_worker):
    post = queued(api, "Too tall", ["instagram"], [upload(api, image(20, 60))])
    run_worker()
    target = targets(api, post)["instagram"]
    assert target["status"] == "failed", target
    assert target["error"].startswith("Instagram could not use the media: ERROR: The submitted image with aspect ratio")
    assert not facebook.published and not facebook.publish_calls


def test_instagram_needs_an_image(api, facebook):
    reply = publish(api, "Just words", ["instagram"])
    assert reply.status_code == 422
    [problem] = reply.json()["data"]["problems"]
    assert problem["target"] == "instagram" and problem["rule"] == "media_required"
    assert Delivery.objects.count() == 0


def test_31_hashtags_are_one_too_many_for_instagram(api, facebook):
    text = " ".join(f"#tag{i}" for i in range(31))
    reply = publish(api, text, ["instagram", "facebook"], [upload(api, image())])
    assert reply.status_code == 422
    [problem] = reply.json()["data"]["problems"]
    assert problem == {"target": "instagram", "rule": "hashtags", "message": "Instagram: 31 of 30 hashtags.",
                       "limit": 30, "actual": 31}
    assert publish(api, text.rsplit(" ", 1)[0], ["instagram"], [upload(api, image())]).status_code == 202


def test_21_mentions_and_2201_characters_are_refused(api, facebook):
    media = [upload(api, image())]
    mentions = publish(api, " ".join(f"@friend{i}" for i in range(21)), ["instagram"], media).json()["data"]["problems"]
    assert [(p["rule"], p["actual"]) for p in mentions] == [("mentions", 21)]
    long = publish(api, "é" * 2201, ["instagram"], media).json()["data"]["problems"]
    assert [(p["rule"], p["limit"], p["actual"]) for p in long] == [("text_length", 2200, 2201)]


def test_a_spent_instagram_quota_refuses_before_making_anything(api, facebook, run_worker):
    facebook.quota_used, facebook.quota_total = 50, 50
    post = queued(api, "One more", ["instagram"], [upload(api, image())])
    run_worker()
    target = targets(api, post)["instagram"]
    assert target["status"] == "failed", target
    assert target["error"] == "Instagram: all 50 posts allowed in 24 hours are used up. Retry this post later."
    assert not facebook.containers


def test_an_instagram_auth_failure_is_recorded_on_the_page(api, user, facebook, run_worker):
    facebook.faults["media"] = [FakeMeta.error(190, 460, "The session has been invalidated because the user changed their password.")]
    post = queued(api, "Hi", ["instagram"], [upload(api, image())])
    run_worker()
    target = targets(api, post)["instagram"]
    assert target["status"] == "failed" and target["error"].endswith("Reconnect Facebook under Settings, then retry.")
    assert health(user, "facebook")["status"] == "revoked" and health(user, "instagram")["status"] == "revoked"


# -- Threads -------------------------------------------------------------------------------------
def test_a_text_post_reaches_threads(api, threads, run_worker):
    post = queued(api, "Hello Threads 👋🏽", ["threads"])
    run_worker()
    target = targets(api, post)["threads"]
    assert target["status"] == "published", target
    [made] = threads.published
    assert made["kind"] == "TEXT" and made["text"] == "Hello Threads 👋🏽"
    assert target["url"] == f"https://www.threads.net/@fakethreads/post/{made['id'][-8:]}"


def test_images_reach_threads_as_a_carousel_fetched_from_signed_urls(api, threads, run_worker):
    post = queued(api, "Two", ["threads"], [upload(api, image(), alt="One"), upload(api, image(30, 30), alt="Two")])
    run_worker()
    assert targets(api, post)["threads"]["status"] == "published"
    [made] = threads.published
    assert made["kind"] == "CAROUSEL" and made["alt"] == ["One", "Two"]
    assert [(status, kind) for _, status, kind in threads.fetched] == [(200, "image/png")] * 2


def test_a_threads_retry_after_a_timeout_on_publish_publishes_the_same_container_once(
    api, threads, run_worker, settings
):
    settings.HAYON_HTTP_TIMEOUT = 1.0
    threads.faults["threads_publish"] = [("slow", 2.5)]
    post = queued(api, "Once only", ["threads"])
    run_worker()
    assert Delivery.objects.get().status == Status.QUEUED
    later(run_worker)
    assert targets(api, post)["threads"]["status"] == "published"
    container = Delivery.objects.get().handle["container_id"]
    assert threads.publish_calls == [container] and len(threads.published) == 1 and len(threads.containers) == 1


def test_a_threads_error_container_fails_with_its_message(api, threads, run_worker):
    post = queued(api, "Strip", ["threads"], [upload(api, image(5, 60))])
    run_worker()
    target = targets(api, post)["threads"]
    assert target["status"] == "failed" and target["error"] == "Threads could not use the media: INVALID_ASPEC_RATIO"
    assert not threads.published


def test_threads_counts_emoji_in_bytes(api, threads):
    ok = "a" * 496 + "👍"  # 496 + 4 bytes = 500
    assert publish(api, ok, ["threads"]).status_code == 202
    reply = publish(api, "a" * 497 + "👍", ["threads"])
    assert reply.status_code == 422
    assert reply.json()["data"]["problems"][0]["message"] == "Threads: 501 of 500 characters."


def test_a_spent_threads_quota_refuses_before_making_a_container(api, threads, run_worker):
    threads.quota_used = threads.quota_total = 250
    post = queued(api, "One more", ["threads"])
    run_worker()
    target = targets(api, post)["threads"]
    assert target["status"] == "failed" and "all 250 posts allowed in 24 hours are used up" in target["error"]
    assert not threads.containers


def test_an_expired_threads_token_marks_the_connection_expired(api, user, threads, run_worker):
    threads.faults["threads"] = [FakeMeta.error(190, 463, "Error validating access token: Session has expired")]
    post = queued(api, "Hi", ["threads"])
    run_worker()
    assert targets(api, post)["threads"]["status"] == "failed"
    assert health(user, "threads")["status"] == "expired" and health(user, "threads")["needsReconnection"] is True


def test_an_image_meta_cannot_download_says_public_url_must_be_reachable(api, threads, run_worker, settings):
    settings.PUBLIC_URL = "http://127.0.0.1:9"  # nothing listens there: as a Hayon behind a private address
    post = queued(api, "Hidden", ["threads"], [upload(api, image())])
    run_worker()
    target = targets(api, post)["threads"]
    assert target["status"] == "failed", target
    assert target["error"].startswith("Threads could not use the media: FAILED_DOWNLOADING_IMAGE")
    assert "PUBLIC_URL" in target["error"]
