"""Meta's Data Deletion Request Callback: Meta asks us to delete what we hold for one of its users.

Docs: https://developers.facebook.com/docs/development/create-an-app/app-dashboard/data-deletion-callback/
Meta POSTs `signed_request` = base64url(HMAC-SHA256(app secret, payload)) "." base64url(JSON payload
with the app-scoped `user_id`). We answer {"url": <status page>, "confirmation_code": <code>}.
"""
import base64
import hashlib
import hmac
import json
import logging
import secrets

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .models import SocialAccount

log = logging.getLogger(__name__)
_CODES = signing.Signer(salt="hayon.platforms.meta-deletion", sep=".")


def _b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def parse_signed_request(signed_request: str, secret: str) -> dict | None:
    try:
        signature, payload = signed_request.split(".", 1)
        expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
        if not secret or not hmac.compare_digest(_b64decode(signature), expected):
            return None
        data = json.loads(_b64decode(payload))
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict) or str(data.get("algorithm", "")).upper() != "HMAC-SHA256":
        return None
    return data


@transaction.atomic
def delete_meta_user(meta_user_id: str) -> int:
    accounts = SocialAccount.objects.select_for_update().filter(facebook__metaUserId=meta_user_id)
    count = 0
    for account in accounts:
        account.set_document("facebook", {"connected": False})
        account.set_document("instagram", {"connected": False})
        account.save()
        count += 1
    return count


@csrf_exempt  # Meta's server calls this; the HMAC signature is the authentication
@require_POST
def data_deletion(request):
    data = parse_signed_request(request.POST.get("signed_request", ""), settings.FACEBOOK_APP_SECRET)
    if data is None or not data.get("user_id"):
        return JsonResponse({"error": "invalid signed_request"}, status=400)
    deleted = delete_meta_user(str(data["user_id"]))
    code = _CODES.sign(secrets.token_hex(8))
    log.info("Meta data deletion request handled: %s connection(s) cleared", deleted)
    url = f"{settings.PUBLIC_URL}{reverse('meta_deletion_status', args=[code])}"
    return JsonResponse({"url": url, "confirmation_code": code})


@require_GET
def data_deletion_status(request, code):
    try:
        _CODES.unsign(code)
    except signing.BadSignature:
        return HttpResponse("Unknown deletion request.", status=404, content_type="text/plain")
    # Deletion happens before the callback answers, so every valid code is complete.
    return HttpResponse(
        f"Deletion request {code}: completed. Hayon holds no Facebook or Instagram data for this user.",
        content_type="text/plain",
    )
