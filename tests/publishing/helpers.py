"""What the publishing tests do over and over: make an image, upload it, read a target, skip a back-off."""
import io
from datetime import timedelta

from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from PIL import Image

from publishing.models import Delivery


def png(width=40, height=30, colour=(20, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def upload(api, data: bytes, alt: str = "") -> int:
    """Upload through POST /api/media; the new image's id."""
    response = api.post("/api/media", {"file": SimpleUploadedFile("p.png", data, content_type="image/png"), "alt": alt})
    assert response.status_code == 201, response.content
    return response.json()["data"]["id"]


def target(api, post_id) -> dict:
    """The post's first (or only) target, as GET /api/posts/<id> shows it."""
    return api.get(f"/api/posts/{post_id}").json()["data"]["targets"][0]


def make_due() -> None:
    """Skip the back-off: the retry is due now (what time would do)."""
    past = timezone.now() - timedelta(seconds=1)
    Delivery.objects.update(next_attempt_at=past)
    DBTaskResult.objects.filter(status="READY").update(run_after=past)
