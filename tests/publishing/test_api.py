"""POST/GET /api/posts and POST /api/media: validation, idempotency, ownership, limits."""
import io
import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from PIL import Image

from accounts.models import ApiToken
from platforms import providers
from platforms.providers.base import Provider
from platforms.services import account_for
from publishing.models import Delivery, MediaFile, Post, Status

from ..conftest import SENTINEL, seed_connection

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"


def png(width=3, height=2) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def bluesky(user):
    seed_connection(user, "bluesky", handle="alice.example", identifiers={"did": DID, "handle": "alice.example"},
                    auth={"accessJwt": f"{SENTINEL}-access", "refreshJwt": f"{SENTINEL}-refresh", "pds": "https://pds.example"})
    return user


@pytest.fixture
def other_api(other_user):
    return Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user=other_user, name='other')[1]}")


@pytest.fixture
def publish(api, django_capture_on_commit_callbacks):
    """POST /api/posts as a script does, with the tasks queued as they are once the request commits."""

    def send(body: dict, *, key: str | None = None, client=None):
        headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
        with django_capture_on_commit_callbacks(execute=True):
            return (client or api).post("/api/posts", data=json.dumps(body), content_type="application/json", **headers)

    return send


def upload(client, data: bytes, name="photo.png", alt=""):
    return client.post("/api/media", {"file": SimpleUploadedFile(name, data, content_type="image/png"), "alt": alt})


def task_args():
    return sorted(r.args_kwargs["args"][0] for r in DBTaskResult.objects.all())


# -- posting -------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_valid_post_is_accepted_and_queued_one_task_per_account(bluesky, publish):
    response = publish({"text": "Hello 👋🏽", "targets": ["bluesky"]})
    assert response.status_code == 202
    body = response.json()
    assert body["success"] is True and response["Location"] == f"/api/posts/{body['data']['id']}"
    assert body["data"]["text"] == "Hello 👋🏽" and body["data"]["createdAt"].endswith("Z")
    assert body["data"]["targets"] == [{"platform": "bluesky", "status": "queued", "url": None, "error": None,
                                        "attempts": 0, "publishedAt": None}]
    assert task_args() == [Delivery.objects.get().pk]


@pytest.mark.django_db
def test_task_arguments_and_the_post_carry_no_secret(bluesky, publish):
    publish({"text": "Hello", "targets": ["bluesky"]})
    stored = json.dumps([r.args_kwargs for r in DBTaskResult.objects.all()])
    assert SENTINEL not in stored and "accessJwt" not in stored
    assert SENTINEL not in json.dumps(list(Delivery.objects.values()), default=str)


@pytest.mark.django_db
def test_text_over_the_limit_is_refused_with_the_numbers_and_nothing_is_queued(bluesky, publish):
    response = publish({"text": "a" * 312, "targets": ["bluesky"]})
    assert response.status_code == 422
    body = response.json()
    assert body["success"] is False
    assert body["data"]["problems"] == [{"target": "bluesky", "rule": "text_length", "message": "Bluesky: 312 of 300 characters.",
                                         "limit": 300, "actual": 312}]
    assert Post.objects.count() == 0 and DBTaskResult.objects.count() == 0


@pytest.mark.django_db
def test_bluesky_counts_graphemes_not_code_points(bluesky, publish):
    thumb = "👍🏽"  # two code points, eight bytes, one grapheme
    assert publish({"text": thumb * 300, "targets": ["bluesky"]}).status_code == 202
    assert publish({"text": thumb * 301, "targets": ["bluesky"]}).json()["data"]["problems"][0]["actual"] == 301


@pytest.mark.django_db
def test_bluesky_also_limits_the_bytes(bluesky, publish):
    family = "👨‍👩‍👧"  # one grapheme, eighteen bytes
    [problem] = publish({"text": family * 200, "targets": ["bluesky"]}).json()["data"]["problems"]
    assert problem == {"target": "bluesky", "rule": "text_bytes", "message": "Bluesky: 3,600 of 3,000 bytes.",
                       "limit": 3000, "actual": 3600}


@pytest.mark.django_db
def test_an_override_is_validated_and_published_for_its_account_only(bluesky, publish):
    refused = publish({"text": "short", "targets": ["bluesky"], "overrides": {"bluesky": {"text": "b" * 301}}})
    assert refused.status_code == 422 and refused.json()["data"]["problems"][0]["actual"] == 301
    accepted = publish({"text": "c" * 400, "targets": ["bluesky"], "overrides": {"bluesky": {"text": "fits"}}})
    assert accepted.status_code == 202
    assert Post.objects.get().text_for("bluesky") == "fits"


@pytest.mark.django_db
def test_every_target_problem_is_reported_and_none_is_queued(user, bluesky, publish, monkeypatch):
    class NotPublishing(Provider):
        name = "threads"
        label = "Threads"

    original = providers.get
    monkeypatch.setattr(providers, "get", lambda name: NotPublishing() if name == "threads" else original(name))
    response = publish({"text": "x" * 301, "targets": ["bluesky", "tumblr", "threads", "myspace"]})
    assert response.status_code == 422
    problems = {(p["target"], p["rule"]): p["message"] for p in response.json()["data"]["problems"]}
    assert problems == {
        ("bluesky", "text_length"): "Bluesky: 301 of 300 characters.",
        ("tumblr", "connection"): "Tumblr is not connected. Connect it under Settings.",
        ("threads", "platform"): "Hayon cannot publish to Threads.",
        ("myspace", "platform"): "Hayon cannot publish to myspace.",
    }
    assert Post.objects.count() == 0 and DBTaskResult.objects.count() == 0


@pytest.mark.django_db
def test_a_connection_needing_reconnection_is_refused_with_its_reason(user, bluesky, publish):
    account = account_for(user)
    doc = account.document("bluesky")
    doc["health"] = {**doc["health"], "status": "expired", "needsReconnection": True, "reason": "The session ended."}
    account.set_document("bluesky", doc)
    account.save()
    response = publish({"text": "hi", "targets": ["bluesky"]})
    assert response.status_code == 422
    [problem] = response.json()["data"]["problems"]
    assert problem["rule"] == "connection" and "needs reconnection: The session ended." in problem["message"]


@pytest.mark.django_db
def test_a_platform_that_is_not_connected_is_refused(user, publish):
    [problem] = publish({"text": "hi", "targets": ["bluesky"]}).json()["data"]["problems"]
    assert problem == {"target": "bluesky", "rule": "connection", "limit": None, "actual": None,
                       "message": "Bluesky is not connected. Connect it under Settings."}


@pytest.mark.django_db
def test_another_users_connection_is_never_used(bluesky, other_user, other_api, publish):
    response = publish({"text": "hi", "targets": ["bluesky"]}, client=other_api)
    assert response.status_code == 422 and response.json()["data"]["problems"][0]["rule"] == "connection"


@pytest.mark.django_db
@pytest.mark.parametrize("body, message", [
    ("not json", "must be JSON"),
    ([1, 2], "must be a JSON object"),
    ({"text": "hi"}, "'targets' must be a non-empty list"),
    ({"text": "hi", "targets": "bluesky"}, "'targets' must be a non-empty list"),
    ({"text": 5, "targets": ["bluesky"]}, "'text' must be a string"),
    ({"text": "hi", "targets": ["bluesky"], "media": ["1"]}, "'media' must be a list of media ids"),
    ({"text": "hi", "targets": ["bluesky"], "overrides": {"bluesky": "x"}}, "'overrides' must look like"),
])
def test_malformed_bodies_get_a_clear_400(bluesky, api, body, message):
    raw = body if isinstance(body, str) else json.dumps(body)
    response = api.post("/api/posts", data=raw, content_type="application/json")
    assert response.status_code == 400 and message in response.json()["message"]
    assert Post.objects.count() == 0


# -- idempotency ---------------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_same_idempotency_key_and_body_answers_with_the_first_post(bluesky, publish):
    body = {"text": "Once", "targets": ["bluesky"]}
    first = publish(body, key="abc-123")
    again = publish(body, key="abc-123")
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    assert Post.objects.count() == 1 and DBTaskResult.objects.count() == 1


@pytest.mark.django_db
def test_the_same_key_with_a_different_body_is_refused(bluesky, publish):
    assert publish({"text": "Once", "targets": ["bluesky"]}, key="abc-123").status_code == 202
    response = publish({"text": "Twice", "targets": ["bluesky"]}, key="abc-123")
    assert response.status_code == 422 and "different request" in response.json()["message"]
    assert Post.objects.count() == 1


@pytest.mark.django_db
def test_a_key_is_per_user_and_lasts_24_hours(bluesky, other_user, other_api, publish):
    seed_connection(other_user, "bluesky", handle="mallory.example", identifiers={"did": "did:plc:other"},
                    auth={"accessJwt": "x", "refreshJwt": "y", "pds": "https://pds.example"})
    body = {"text": "Same", "targets": ["bluesky"]}
    assert publish(body, key="k").status_code == 202
    assert publish(body, key="k", client=other_api).status_code == 202  # another user's key is theirs
    Post.objects.filter(user=bluesky).update(created_at=timezone.now() - timedelta(hours=25))
    later = publish(body, key="k")
    assert later.status_code == 202 and Post.objects.filter(user=bluesky).count() == 2


@pytest.mark.django_db
def test_a_refused_post_does_not_use_up_its_key(bluesky, publish):
    assert publish({"text": "x" * 301, "targets": ["bluesky"]}, key="k").status_code == 422
    assert publish({"text": "x" * 301, "targets": ["bluesky"]}, key="k").status_code == 422
    assert publish({"text": "fixed", "targets": ["bluesky"]}, key="k").status_code == 202


# -- reading -------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_posts_are_listed_newest_first_and_only_to_their_owner(bluesky, other_api, api, publish):
    ids = [publish({"text": f"post {n}", "targets": ["bluesky"]}).json()["data"]["id"] for n in range(3)]
    listed = api.get("/api/posts").json()["data"]
    assert [p["id"] for p in listed] == ids[::-1]
    assert other_api.get("/api/posts").json()["data"] == []
    mine = api.get(f"/api/posts/{ids[0]}")
    assert mine.status_code == 200 and mine.json()["data"]["text"] == "post 0"
    theirs = other_api.get(f"/api/posts/{ids[0]}")
    assert theirs.status_code == 404 and theirs.json() == {"success": False, "message": "No such post.", "data": None}
    assert other_api.post(f"/api/posts/{ids[0]}/retry").status_code == 404


@pytest.mark.django_db
def test_a_published_target_shows_its_url_and_time(bluesky, api, publish):
    post_id = publish({"text": "hi", "targets": ["bluesky"]}).json()["data"]["id"]
    now = timezone.now()
    Delivery.objects.update(status=Status.PUBLISHED, url="https://bsky.app/profile/x/post/y", attempts=1, published_at=now)
    [target] = api.get(f"/api/posts/{post_id}").json()["data"]["targets"]
    assert target["status"] == "published" and target["url"] == "https://bsky.app/profile/x/post/y"
    assert target["publishedAt"].endswith("Z") and target["attempts"] == 1


@pytest.mark.django_db
def test_retry_queues_only_what_failed(bluesky, api, publish, django_capture_on_commit_callbacks):
    post_id = publish({"text": "hi", "targets": ["bluesky"]}).json()["data"]["id"]
    Delivery.objects.update(status=Status.FAILED, error="Bluesky refused the post.")
    DBTaskResult.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/posts/{post_id}/retry")
    assert response.status_code == 200 and response.json()["data"]["targets"][0]["status"] == "queued"
    assert task_args() == [Delivery.objects.get().pk]
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(f"/api/posts/{post_id}/retry").json()["message"].startswith("Nothing to retry")


# -- limits and authentication --------------------------------------------------------------------
@pytest.mark.django_db
def test_posting_is_rate_limited_per_user(bluesky, publish):
    for n in range(30):
        assert publish({"text": f"post {n}", "targets": ["bluesky"]}).status_code == 202
    refused = publish({"text": "one too many", "targets": ["bluesky"]})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert Post.objects.count() == 30


@pytest.mark.django_db
def test_a_browser_session_must_send_the_csrf_token(bluesky, user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    response = browser.post("/api/posts", data=json.dumps({"text": "hi", "targets": ["bluesky"]}),
                            content_type="application/json")
    assert response.status_code == 401 and "CSRF" in response.json()["message"]
    assert Post.objects.count() == 0


@pytest.mark.django_db
def test_the_api_needs_authentication(db):
    assert Client().post("/api/posts", data="{}", content_type="application/json").status_code == 401
    assert Client().get("/api/posts").status_code == 401


# -- media ---------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_an_uploaded_image_is_stored_under_a_random_name(api, user, media_root):
    response = upload(api, png(3, 2), name="my-holiday-in-paris.png", alt="A red square")
    assert response.status_code == 201
    data = response.json()["data"]
    item = MediaFile.objects.get()
    assert data == {"id": item.pk, "mimeType": "image/png", "width": 3, "height": 2, "size": item.size, "alt": "A red square"}
    assert "paris" not in item.file.name and item.file.name.endswith(".png")
    assert (media_root / item.file.name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.django_db
def test_a_file_that_is_not_an_image_is_refused_by_its_content(api):
    response = upload(api, b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", name="cat.png")
    assert response.status_code == 422 and "SVG" in response.json()["message"]
    assert MediaFile.objects.count() == 0


@pytest.mark.django_db
def test_an_upload_without_a_file_gets_a_clear_400(api):
    response = api.post("/api/media", {"alt": "nothing"})
    assert response.status_code == 400 and "'file'" in response.json()["message"]


@pytest.mark.django_db
def test_media_of_another_user_cannot_be_attached(bluesky, other_api, publish, api):
    theirs = upload(other_api, png()).json()["data"]["id"]
    response = publish({"text": "hi", "targets": ["bluesky"], "media": [theirs]})
    assert response.status_code == 422
    assert response.json()["data"]["problems"] == [{"target": None, "rule": "media", "limit": None, "actual": None,
                                                    "message": f"Media {theirs} is not one of your uploads."}]


@pytest.mark.django_db
def test_images_are_counted_against_the_platform_limit(bluesky, api, publish):
    ids = [upload(api, png()).json()["data"]["id"] for _ in range(5)]
    [problem] = publish({"text": "", "targets": ["bluesky"], "media": ids}).json()["data"]["problems"]
    assert problem["rule"] == "media_count" and problem["message"] == "Bluesky: 5 of 4 images."
    accepted = publish({"text": "", "targets": ["bluesky"], "media": ids[:4]})
    assert accepted.status_code == 202
    assert [m.pk for m in Post.objects.get().ordered_media()] == ids[:4]


@pytest.mark.django_db
def test_an_empty_post_is_refused(bluesky, publish):
    [problem] = publish({"text": "   ", "targets": ["bluesky"]}).json()["data"]["problems"]
    assert problem["rule"] == "empty"


@pytest.mark.django_db
def test_the_stored_copy_has_no_location_metadata(api):
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}  # GPSInfo: Paris
    exif[0x010F] = "PhoneMaker"
    out = io.BytesIO()
    Image.new("RGB", (8, 6), (10, 120, 200)).save(out, format="JPEG", exif=exif)
    assert Image.open(io.BytesIO(out.getvalue())).getexif().get_ifd(0x8825)  # the upload has it
    assert upload(api, out.getvalue(), name="photo.jpg").status_code == 201
    with MediaFile.objects.get().file.open("rb") as stored:
        kept = Image.open(io.BytesIO(stored.read()))
    assert not kept.getexif() and "exif" not in kept.info
