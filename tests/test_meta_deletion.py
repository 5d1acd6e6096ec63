"""Meta's signed callbacks (issue 13, item 13): Facebook's data deletion, Threads' uninstall and
data deletion. Every signed request is built here, as Meta builds it."""
import base64
import hashlib
import hmac
import json
import time

import pytest
from django.test import Client

from platforms import meta_deletion
from platforms.services import account_for

from .conftest import seed_connection

pytestmark = pytest.mark.django_db
FB_USER, THREADS_USER = "10158000000000001", "17841400000000001"
FB = "/api/platform/facebook/data-deletion"
THREADS_DELETE, THREADS_UNINSTALL = "/api/platform/threads/data-deletion", "/api/platform/threads/uninstall"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed_request(user_id=FB_USER, *, secret="facebook-app-secret", issued_at=None, **extra) -> str:
    payload = {"algorithm": "HMAC-SHA256", "user_id": user_id,
               "issued_at": int(time.time()) if issued_at is None else issued_at, **extra}
    body = b64(json.dumps(payload).encode())
    return f"{b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())}.{body}"


def threads_request(user_id=THREADS_USER, **kwargs) -> str:
    return signed_request(user_id, secret="threads-app-secret", **kwargs)


def post(path, signed):
    return Client(enforce_csrf_checks=True).post(path, {"signed_request": signed})


def doc(user, name):
    return account_for(user).document(name)


@pytest.fixture
def facebook_user(user):
    seed_connection(user, "facebook", handle="page", identifiers={"platformId": "101"}, metaUserId=FB_USER)
    seed_connection(user, "instagram", handle="ig", identifiers={"platformId": "1784101"})
    return user


@pytest.fixture
def threads_user(user):
    seed_connection(user, "threads", handle="threadsuser", identifiers={"platformId": THREADS_USER})
    return user


def test_facebook_deletion_clears_facebook_and_instagram_and_answers_with_a_status(facebook_user):
    response = post(FB, signed_request())
    assert response.status_code == 200
    body = response.json()
    assert body["url"] == f"http://testserver{FB}/{body['confirmation_code']}"
    assert doc(facebook_user, "facebook") == {"connected": False} and doc(facebook_user, "instagram") == {"connected": False}
    status = Client().get(body["url"].removeprefix("http://testserver"))
    assert status.status_code == 200 and "completed" in status.content.decode()
    assert Client().get(f"{FB}/forged.code").status_code == 404


def test_the_same_request_twice_answers_the_same_code_without_error(facebook_user):
    """Idempotent: Meta may retry; a second request for the same user gets the same code."""
    first, again = post(FB, signed_request()), post(FB, signed_request(issued_at=int(time.time()) - 5))
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    other = post(FB, signed_request("10158000000000002")).json()["confirmation_code"]
    assert other != first.json()["confirmation_code"]


def tamper_payload(signed: str) -> str:
    signature, _ = signed.split(".")
    forged = b64(json.dumps({"algorithm": "HMAC-SHA256", "user_id": "10158000000000002",
                             "issued_at": int(time.time())}).encode())
    return f"{signature}.{forged}"


@pytest.mark.parametrize("signed", [
    pytest.param(lambda: signed_request(secret="wrong-secret"), id="wrong-secret"),
    pytest.param(lambda: tamper_payload(signed_request()), id="tampered-payload"),
    pytest.param(lambda: signed_request(issued_at=int(time.time()) - 2 * 3600), id="stale"),
    pytest.param(lambda: signed_request(issued_at=int(time.time()) + 3600), id="future"),
    pytest.param(lambda: _without_issued_at(), id="no-issued-at"),
    pytest.param(lambda: signed_request(issued_at=True), id="issued-at-bool"),
    pytest.param(lambda: signed_request(algorithm="none"), id="wrong-algorithm"),
    pytest.param(lambda: signed_request().replace(".", "!!$$.", 1), id="invalid-characters-in-signature"),
    pytest.param(lambda: signed_request() + "!!$$", id="invalid-characters-in-payload"),
    pytest.param(lambda: signed_request().replace(".", "==.", 1), id="too-much-padding"),
    pytest.param(lambda: _noncanonical(signed_request()), id="non-canonical-last-character"),
    pytest.param(lambda: signed_request() + ".x", id="three-parts"),
    pytest.param(lambda: "", id="empty"),
])
def test_bad_signed_requests_are_refused_and_delete_nothing(facebook_user, signed):
    before = doc(facebook_user, "facebook")
    response = post(FB, signed())
    assert response.status_code == 400 and response.json() == {"error": "invalid signed_request"}
    assert doc(facebook_user, "facebook") == before


def _without_issued_at() -> str:
    body = b64(json.dumps({"algorithm": "HMAC-SHA256", "user_id": FB_USER}).encode())
    return f"{b64(hmac.new(b'facebook-app-secret', body.encode(), hashlib.sha256).digest())}.{body}"


def _noncanonical(signed: str) -> str:
    """A 32-byte digest is 43 characters; the last carries 2 unused bits. Setting one decodes the same."""
    signature, payload = signed.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(signature[-1]) ^ 1]
    return f"{signature[:-1]}{last}.{payload}"


def test_the_padded_signature_meta_sometimes_sends_is_accepted(facebook_user):
    signature, payload = signed_request().split(".")
    assert post(FB, f"{signature}=.{payload}").status_code == 200


def test_a_replay_after_reconnecting_keeps_the_new_connection(facebook_user):
    """A signed request captured and replayed within the hour must not undo a later reconnection."""
    signed = signed_request(issued_at=int(time.time()) - 60)
    assert post(FB, signed).status_code == 200
    seed_connection(facebook_user, "facebook", handle="page", identifiers={"platformId": "101"}, metaUserId=FB_USER)
    assert post(FB, signed).status_code == 200
    assert doc(facebook_user, "facebook")["connected"]


def test_other_users_and_other_meta_users_are_untouched(facebook_user, other_user):
    seed_connection(other_user, "facebook", handle="other", identifiers={"platformId": "202"}, metaUserId="10158000000000002")
    seed_connection(facebook_user, "threads", handle="t", identifiers={"platformId": FB_USER})  # same digits, another app
    post(FB, signed_request())
    assert doc(other_user, "facebook")["connected"] and doc(facebook_user, "threads")["connected"]


@pytest.mark.parametrize("path", [THREADS_UNINSTALL, THREADS_DELETE])
def test_threads_callbacks_forget_that_threads_user(threads_user, other_user, path):
    seed_connection(threads_user, "facebook", handle="page", identifiers={"platformId": "101"}, metaUserId=THREADS_USER)
    seed_connection(other_user, "threads", handle="someone", identifiers={"platformId": "17841400000000002"})
    response = post(path, threads_request())
    assert response.status_code == 200
    assert doc(threads_user, "threads") == {"connected": False}
    assert doc(threads_user, "facebook")["connected"] and doc(other_user, "threads")["connected"]


def test_threads_deletion_answers_with_its_own_status_page(threads_user):
    body = post(THREADS_DELETE, threads_request()).json()
    assert body["url"] == f"http://testserver{THREADS_DELETE}/{body['confirmation_code']}"
    page = Client().get(body["url"].removeprefix("http://testserver"))
    assert page.status_code == 200 and "Threads" in page.content.decode()
    assert post(THREADS_DELETE, threads_request()).json() == body
    facebook_code = post(FB, signed_request()).json()["confirmation_code"]
    assert Client().get(f"{THREADS_DELETE}/{facebook_code}").status_code == 404
    assert Client().get(f"{FB}/{body['confirmation_code']}").status_code == 404


@pytest.mark.parametrize("path", [THREADS_UNINSTALL, THREADS_DELETE])
@pytest.mark.parametrize("signed", [
    pytest.param(lambda: signed_request(THREADS_USER), id="signed-with-the-facebook-secret"),
    pytest.param(lambda: threads_request(issued_at=int(time.time()) - 2 * 3600), id="stale"),
    pytest.param(lambda: threads_request() + "!!$$", id="invalid-characters"),
])
def test_threads_callbacks_refuse_what_threads_did_not_sign(threads_user, path, signed):
    response = post(path, signed())
    assert response.status_code == 400
    assert doc(threads_user, "threads")["connected"]


def test_callbacks_need_post_and_a_configured_secret(threads_user, settings):
    assert Client().get(THREADS_UNINSTALL).status_code == 405
    settings.THREADS_APP_SECRET = ""
    assert post(THREADS_UNINSTALL, signed_request(THREADS_USER, secret="")).status_code == 400
    assert doc(threads_user, "threads")["connected"]


def test_strict_base64url():
    assert meta_deletion.b64url_decode("aGk") == b"hi" and meta_deletion.b64url_decode("aGk=") == b"hi"
    for bad in ("aGk==", "aG k", "aGk!", "aG+k", "aG/k", "a", "aGl="):
        with pytest.raises(ValueError):
            meta_deletion.b64url_decode(bad)
