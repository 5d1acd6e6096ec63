"""Meta's signed callbacks: "delete this user's data" (Facebook and Threads) and Threads' uninstall.

Docs: https://developers.facebook.com/docs/development/create-an-app/app-dashboard/data-deletion-callback/
and the Threads use case's settings (https://developers.facebook.com/docs/development/create-an-app/threads-use-case):
its "Deauthorize callback URL" (uninstall) and "Data Deletion Requests URL".
Meta POSTs `signed_request` = base64url(HMAC-SHA256(app secret, payload)) "." base64url(JSON payload
with `algorithm`, `issued_at` and the app-scoped `user_id`). A deletion is answered with
{"url": <status page>, "confirmation_code": <code>}; the code is the same each time one user asks.
"""
import base64
import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.crypto import salted_hmac
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .documents import parse_iso
from .models import SocialAccount

log = logging.getLogger(__name__)
_CODES = signing.Signer(salt="hayon.platforms.meta-deletion", sep=".")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
MAX_AGE = 3600  # seconds: Meta calls at once; an older signed request is a replay
MAX_SKEW = 300  # seconds a signed request may come from the future (clocks differ a little)
MAX_LENGTH = 8192  # a signed request is a few hundred characters


@dataclass(frozen=True)
class MetaApp:
    """One Meta app whose callbacks Hayon answers: where its user id is kept, what it clears."""

    platform: str  # the sub-document that holds the app-scoped user id
    secret_setting: str
    user_id_field: str
    forgets: tuple[str, ...]  # the sub-documents cleared for that user
    status_route: str
    label: str


FACEBOOK = MetaApp("facebook", "FACEBOOK_APP_SECRET", "metaUserId", ("facebook", "instagram"), "meta_deletion_status",
                   "Facebook or Instagram")
THREADS = MetaApp("threads", "THREADS_APP_SECRET", "platformId", ("threads",), "threads_deletion_status", "Threads")


def b64url_decode(value: str) -> bytes:
    """Strict base64url: only its alphabet, padding only where it belongs, one encoding per value.

    Python's decoder silently skips characters outside the alphabet, so "<sig>!!$$" would verify.
    """
    body = value.rstrip("=")
    padding = len(value) - len(body)
    if not _BASE64URL.fullmatch(body) or len(body) % 4 == 1 or padding not in (0, -len(body) % 4):
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != body:
        raise ValueError("non-canonical base64url")  # stray bits in the last character
    return raw


def parse_signed_request(signed_request, secret: str, *, now: float | None = None) -> dict | None:
    """The verified payload, or None (bad form, bad signature, wrong algorithm, stale or future)."""
    try:
        return verify_signed_request(signed_request, secret, now=time.time() if now is None else now)
    except ValueError as refusal:
        log.info("Meta signed_request refused: %s", refusal)
        return None


def verify_signed_request(signed_request, secret: str, *, now: float) -> dict:
    """The payload of a signed request that verifies; ValueError saying why otherwise."""
    if not secret:
        raise ValueError("app secret not configured")
    if not isinstance(signed_request, str) or len(signed_request) > MAX_LENGTH or signed_request.count(".") != 1:
        raise ValueError("malformed")
    signature, payload = signed_request.split(".")
    expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(b64url_decode(signature), expected):
        raise ValueError("bad signature")
    data = json.loads(b64url_decode(payload))  # a JSONDecodeError is a ValueError
    if not isinstance(data, dict) or str(data.get("algorithm", "")).upper() != "HMAC-SHA256":
        raise ValueError("wrong algorithm")
    issued_at = data.get("issued_at")
    if not isinstance(issued_at, int) or isinstance(issued_at, bool):
        raise ValueError("no issued_at")
    if not now - MAX_AGE <= issued_at <= now + MAX_SKEW:
        raise ValueError("stale or from the future")
    return data


@transaction.atomic
def forget_meta_user(*, app: MetaApp, meta_user_id: str, issued_at: int) -> int:
    """Clear the app's documents of every Hayon user connected as that Meta user; how many were.

    A connection made after Meta signed the request is left alone: a replay within the window must
    not undo a reconnection.
    """
    accounts = SocialAccount.objects.select_for_update().filter(**{f"{app.platform}__{app.user_id_field}": meta_user_id})
    count = 0
    for account in accounts:
        connected_at = parse_iso(account.document(app.platform).get("connectedAt"))
        if connected_at and int(connected_at.timestamp()) > issued_at:  # issued_at counts whole seconds
            continue
        for name in app.forgets:
            account.set_document(name, {"connected": False})
        account.save()
        count += 1
    return count


def confirmation_code(app: MetaApp, meta_user_id: str) -> str:
    """The same code every time one user asks (the request is idempotent), signed for the status page."""
    digest = salted_hmac("hayon.platforms.meta-deletion.code", f"{app.platform}:{meta_user_id}").hexdigest()[:20]
    return _CODES.sign(f"{app.platform}-{digest}")


def _verified(request, app: MetaApp) -> dict | None:
    data = parse_signed_request(request.POST.get("signed_request", ""), getattr(settings, app.secret_setting, ""))
    user_id = data.get("user_id") if data else None
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)) or not str(user_id).strip():
        return None
    return data


def _deletion_view(app: MetaApp):
    @csrf_exempt  # Meta's server calls this; the HMAC signature is the authentication
    @require_POST
    def data_deletion(request):
        data = _verified(request, app)
        if data is None:
            return JsonResponse({"error": "invalid signed_request"}, status=400)
        user_id = str(data["user_id"])
        cleared = forget_meta_user(app=app, meta_user_id=user_id, issued_at=data["issued_at"])
        code = confirmation_code(app, user_id)
        log.info("Meta data deletion request for %s handled: %s connection(s) cleared", app.platform, cleared)
        url = f"{settings.PUBLIC_URL}{reverse(app.status_route, args=[code])}"
        return JsonResponse({"url": url, "confirmation_code": code})

    return data_deletion


def _uninstall_view(app: MetaApp):
    @csrf_exempt  # Meta's server calls this; the HMAC signature is the authentication
    @require_POST
    def uninstall(request):
        data = _verified(request, app)
        if data is None:
            return JsonResponse({"error": "invalid signed_request"}, status=400)
        cleared = forget_meta_user(app=app, meta_user_id=str(data["user_id"]), issued_at=data["issued_at"])
        log.info("Meta uninstall for %s handled: %s connection(s) cleared", app.platform, cleared)
        return JsonResponse({"success": True})

    return uninstall


def _status_view(app: MetaApp):
    @require_GET
    def data_deletion_status(request, code):
        try:
            value = _CODES.unsign(code)
        except signing.BadSignature:
            value = ""
        if not value.startswith(f"{app.platform}-"):
            return HttpResponse("Unknown deletion request.", status=404, content_type="text/plain")
        # Deletion happens before the callback answers, so every valid code is complete.
        return HttpResponse(
            f"Deletion request {code}: completed. Hayon holds no {app.label} data for this user.",
            content_type="text/plain",
        )

    return data_deletion_status


data_deletion = _deletion_view(FACEBOOK)
data_deletion_status = _status_view(FACEBOOK)
threads_data_deletion = _deletion_view(THREADS)
threads_deletion_status = _status_view(THREADS)
threads_uninstall = _uninstall_view(THREADS)
