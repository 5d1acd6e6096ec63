"""Signed, expiring media URLs (publishing/signed_media.py): what Threads and Instagram fetch."""
import io
import time
from urllib.parse import urlsplit

import pytest
from django.core import signing
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from publishing import signed_media
from publishing.models import MediaFile

pytestmark = pytest.mark.django_db


def png(width=4, height=3) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (200, 30, 30, 128)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def stored(api):
    reply = api.post("/api/media", {"file": SimpleUploadedFile("a.png", png(), content_type="image/png")})
    assert reply.status_code == 201, reply.content
    return MediaFile.objects.get(pk=reply.json()["data"]["id"])


def path_of(url: str) -> str:
    return urlsplit(url).path


def test_a_signed_url_serves_the_image_without_a_session(stored, settings):
    url = signed_media.signed_url(media_id=stored.pk)
    assert url.startswith(f"{settings.PUBLIC_URL}/media/s/")
    response = Client().get(path_of(url))  # no cookie, no token: as Meta's fetcher
    assert response.status_code == 200
    with stored.file.open("rb") as f:
        assert response.content == f.read()
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
    assert "sessionid" not in response.cookies


def test_the_jpeg_variant_is_a_jpeg_copy(stored):
    response = Client().get(path_of(signed_media.signed_url(media_id=stored.pk, variant="jpeg")))
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG" and image.size == (stored.width, stored.height)


def test_an_expired_url_is_gone(stored):
    url = signed_media.signed_url(media_id=stored.pk, seconds=-1)
    response = Client().get(path_of(url))
    assert response.status_code == 410
    assert response["Cache-Control"] == "private, no-store"


def test_a_url_expires_after_its_lifetime(stored, settings, monkeypatch):
    settings.HAYON_SIGNED_MEDIA_SECONDS = 3600
    url = signed_media.signed_url(media_id=stored.pk)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 3599)
    assert Client().get(path_of(url)).status_code == 200
    monkeypatch.setattr(time, "time", lambda: now + 3601)
    assert Client().get(path_of(url)).status_code == 410


def test_tampered_unsigned_and_foreign_tokens_are_not_found(stored, api):
    other = api.post("/api/media", {"file": SimpleUploadedFile("b.png", png(5, 5), content_type="image/png")})
    other_id = other.json()["data"]["id"]
    token = path_of(signed_media.signed_url(media_id=stored.pk)).rsplit("/", 1)[1]
    payload, rest = token.split(":", 1)
    forged = signing.b64_encode(f'{{"m":{other_id},"v":"","e":9999999999}}'.encode()).decode()
    unsalted = signing.dumps({"m": stored.pk, "v": "", "e": int(time.time()) + 60}, compress=False)  # no salt
    for bad in (f"{forged}:{rest}", token[:-2] + ("AA" if not token.endswith("AA") else "BB"), str(stored.pk),
                unsalted, "", "x"):
        response = Client().get(f"/media/s/{bad}")
        assert response.status_code == 404, bad


def test_a_longer_lifetime_cannot_be_claimed_by_editing_the_expiry(stored):
    url = signed_media.signed_url(media_id=stored.pk, seconds=-1)
    token = path_of(url).rsplit("/", 1)[1]
    payload, rest = token.split(":", 1)
    claims = signing.b64_decode(payload.encode()).decode().replace('"e":', '"e":9')
    assert Client().get(f"/media/s/{signing.b64_encode(claims.encode()).decode()}:{rest}").status_code == 404


def test_stored_files_are_never_served_from_media_url(stored):
    assert Client().get(f"/media/{stored.file.name}").status_code == 404
    assert Client().get("/media/").status_code == 404
    assert Client().get("/media/s/").status_code == 404
    assert Client().get("/media/uploads/").status_code == 404


def test_a_deleted_media_file_is_not_found(stored):
    url = signed_media.signed_url(media_id=stored.pk)
    stored.delete()
    assert Client().get(path_of(url)).status_code == 404


def test_only_reads_are_allowed(stored):
    path = path_of(signed_media.signed_url(media_id=stored.pk))
    assert Client().head(path).status_code == 200
    assert Client(enforce_csrf_checks=False).post(path).status_code == 405
