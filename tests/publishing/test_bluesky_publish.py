"""Bluesky publishing against the real local PDS: the API, the worker, the record read back."""
import json
import logging
import os
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

from platforms.documents import read_auth
from platforms.services import account_for
from platforms.providers.bluesky_publish import new_tid
from publishing.models import Delivery, Status

from ..conftest import this_database_url
from ..pds_peer import PNG

TID_CHARS = set("234567abcdefghijklmnopqrstuvwxyz")


# -- record keys ---------------------------------------------------------------------------------
def test_tid_matches_the_spec_example():
    # @atcute/tid's documented example: TID.create(1724171495793000, 512) -> "3l25zusnsfck2"
    assert new_tid(1724171495793000, 512) == "3l25zusnsfck2"
    assert new_tid(0, 0) == "2222222222222"  # https://atproto.com/specs/tid: zero


def test_tids_are_13_sortable_characters_that_follow_the_clock():
    earlier, later = new_tid(1_700_000_000_000_000), new_tid(1_700_000_000_000_001)
    assert len(earlier) == 13 and set(earlier) <= TID_CHARS and earlier[0] in "234567abcdefghij"
    assert earlier < later
    assert new_tid() != new_tid()  # a random clock id apart even within one microsecond


# -- against the real PDS ------------------------------------------------------------------------
@pytest.fixture
def bluesky_connected(api, real_pds, pds_account):
    response = api.post("/api/platform/bluesky/connect", content_type="application/json",
                        data=json.dumps({"identifier": pds_account["handle"], "appPassword": pds_account["app_password"]}))
    assert response.status_code == 200, response.content
    return pds_account


def xrpc(pds_url: str, method: str, **params) -> dict:
    reply = httpx.get(f"{pds_url}/xrpc/{method}", params=params, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def byte_slice(text: str, index: dict) -> str:
    return text.encode("utf-8")[index["byteStart"]:index["byteEnd"]].decode("utf-8")


@pytest.mark.django_db(transaction=True)
def test_a_post_with_emoji_cjk_link_mention_and_tag_reaches_the_pds(
    api, user, bluesky_connected, pds_server, real_pds, run_worker, caplog
):
    info, fixture = pds_server
    friend = fixture.create_account(info)  # someone to mention, on the same PDS
    text = (f"Hé 👋🏽 日本語のテキスト 🇯🇵 see https://example.com/a?b=c, "
            f"hi @{friend['handle']} and @nobody.invalid #Hayon ✨")
    response = api.post("/api/posts", data=json.dumps({"text": text, "targets": ["bluesky"]}),
                        content_type="application/json")
    assert response.status_code == 202, response.content
    post = response.json()["data"]
    assert post["targets"] == [{"platform": "bluesky", "status": "queued", "url": None, "error": None,
                                "attempts": 0, "publishedAt": None}]

    caplog.set_level(logging.DEBUG)
    run_worker()
    secrets = read_auth(account_for(user).document("bluesky"))
    assert secrets["accessJwt"] not in caplog.text and secrets["refreshJwt"] not in caplog.text  # the worker's log

    target = api.get(f"/api/posts/{post['id']}").json()["data"]["targets"][0]
    assert target["status"] == "published", target
    did = bluesky_connected["did"]
    assert target["url"].startswith(f"https://bsky.app/profile/{did}/post/") and target["attempts"] == 1
    rkey = target["url"].rsplit("/", 1)[1]
    record = xrpc(real_pds["pdsUrl"], "com.atproto.repo.getRecord", repo=did, collection="app.bsky.feed.post",
                  rkey=rkey)["value"]
    assert record["text"] == text
    features = {}
    for facet in record["facets"]:
        [feature] = facet["features"]
        features[feature["$type"]] = (byte_slice(text, facet["index"]), feature)
    link, mention, tag = (features["app.bsky.richtext.facet#link"], features["app.bsky.richtext.facet#mention"],
                          features["app.bsky.richtext.facet#tag"])
    assert link == ("https://example.com/a?b=c", {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/a?b=c"})
    assert mention == (f"@{friend['handle']}", {"$type": "app.bsky.richtext.facet#mention", "did": friend["did"]})
    assert tag == ("#Hayon", {"$type": "app.bsky.richtext.facet#tag", "tag": "Hayon"})
    assert len(record["facets"]) == 3  # @nobody.invalid does not resolve: it stays plain text


@pytest.mark.django_db(transaction=True)
def test_images_with_alt_text_read_back_as_blobs(api, bluesky_connected, real_pds, run_worker):
    uploaded = api.post("/api/media", {"file": _upload("dot.png", PNG), "alt": "A single dot"})
    assert uploaded.status_code == 201, uploaded.content
    media = uploaded.json()["data"]
    response = api.post("/api/posts", data=json.dumps({"text": "", "targets": ["bluesky"], "media": [media["id"]]}),
                        content_type="application/json")
    assert response.status_code == 202, response.content
    run_worker()
    target = api.get(f"/api/posts/{response.json()['data']['id']}").json()["data"]["targets"][0]
    assert target["status"] == "published", target
    did, rkey = bluesky_connected["did"], target["url"].rsplit("/", 1)[1]
    record = xrpc(real_pds["pdsUrl"], "com.atproto.repo.getRecord", repo=did, collection="app.bsky.feed.post",
                  rkey=rkey)["value"]
    [image] = record["embed"]["images"]
    assert image["alt"] == "A single dot"
    assert (image["aspectRatio"]["width"], image["aspectRatio"]["height"]) == (media["width"], media["height"])
    blob = httpx.get(f"{real_pds['pdsUrl']}/xrpc/com.atproto.sync.getBlob",
                     params={"did": did, "cid": image["image"]["ref"]["$link"]}, timeout=10)
    assert blob.status_code == 200 and blob.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert image["image"]["size"] == len(blob.content) == media["size"]


CRASHING_WORKER = """
import os, sys
import django
django.setup()
from publishing import delivery

def die(*args, **kwargs):  # killed after the platform accepted, before the result is saved
    os._exit(137)

delivery._published = die
from django.core.management import call_command
call_command("worker", "--batch", "--no-startup-delay")
"""


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_after_the_post_was_made_leaves_exactly_one_record(
    api, user, bluesky_connected, real_pds, run_worker
):
    response = api.post("/api/posts", data=json.dumps({"text": "Only once, please.", "targets": ["bluesky"]}),
                        content_type="application/json")
    assert response.status_code == 202, response.content
    env = {**os.environ, "DJANGO_ENV": "test", "DJANGO_SETTINGS_MODULE": "hayon.settings.test",
           "DATABASE_URL": this_database_url(),
           "HAYON_ALLOW_PRIVATE_HOSTS": "true"}  # the PDS is on loopback; never set in production
    died = subprocess.run([sys.executable, "-c", CRASHING_WORKER], cwd=settings.BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=120)
    assert died.returncode == 137, (died.stderr[-2000:], list(Delivery.objects.values("status", "error")))
    did = bluesky_connected["did"]
    records = xrpc(real_pds["pdsUrl"], "com.atproto.repo.listRecords", repo=did, collection="app.bsky.feed.post")["records"]
    assert len(records) == 1  # the platform took it; Hayon never heard back
    item = Delivery.objects.get()
    assert item.status == Status.PUBLISHING and item.handle["rkey"] == records[0]["uri"].rsplit("/", 1)[1]

    run_worker()  # the lease still holds: nothing happens yet
    assert Delivery.objects.get().status == Status.PUBLISHING
    Delivery.objects.update(lease_until=timezone.now() - timedelta(seconds=1))  # the lease runs out
    run_worker()

    item = Delivery.objects.get()
    assert item.status == Status.PUBLISHED and item.attempts == 2
    records = xrpc(real_pds["pdsUrl"], "com.atproto.repo.listRecords", repo=did, collection="app.bsky.feed.post")["records"]
    assert len(records) == 1 and item.remote_id == records[0]["uri"]
    assert item.url.endswith(f"/post/{item.handle['rkey']}")


def _upload(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="application/octet-stream")
