"""OAuth state: random, signed, single-use, short-lived, bound to the session, user and platform.

The state a platform carries back is `<random nonce>.<HMAC>`: it decodes to no user id, email or
platform. Everything the callback needs (PKCE verifier, chosen server, OAuth 1.0a request token
secret) stays server-side in a PendingFlow row keyed by a hash of the nonce, encrypted. Consuming
is a DELETE whose row count says who won, so two simultaneous callbacks make one exchange.
"""
import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.utils import timezone

from . import crypto
from .errors import FlowError
from .models import PendingFlow

_SIGNER = signing.Signer(salt="hayon.platforms.oauth-state", sep=".")
MAX_STATE_LENGTH = 200


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def session_hash(request) -> str:
    """The browser session a flow belongs to. A flow started by a script with an API token has none:
    the user finishes it in their own browser, so it is bound to the user alone (still checked)."""
    if getattr(request, "auth_by_token", False):
        return ""
    if not request.session.session_key:
        request.session.save()
    return _hash(request.session.session_key)


def new_state() -> tuple[str, str]:
    """A fresh (state, nonce) pair: 256 random bits, signed."""
    nonce = secrets.token_urlsafe(32)
    return _SIGNER.sign(nonce), nonce


def save(request, *, key: str, platform: str, payload: dict, purpose: str = "authorize") -> None:
    cutoff = timezone.now() - timedelta(seconds=settings.OAUTH_STATE_MAX_AGE)
    PendingFlow.objects.filter(created_at__lt=cutoff).delete()  # housekeeping, cheap with the index
    PendingFlow.objects.create(
        id=_hash(key),
        user=request.user,
        session_hash=session_hash(request),
        platform=platform,
        purpose=purpose,
        payload=crypto.encrypt(payload),
    )


def _invalid(message="This sign-in link is invalid or has expired. Please connect again."):
    return FlowError("invalid_state", message)


def unsign(state: str) -> str:
    if not state or len(state) > MAX_STATE_LENGTH or not state.isascii():
        raise _invalid()
    try:
        return _SIGNER.unsign(state)
    except signing.BadSignature:
        raise _invalid() from None


def _find(request, *, key: str, platform: str, purpose: str) -> PendingFlow:
    if not key or len(key) > MAX_STATE_LENGTH or not key.isascii():
        raise _invalid()
    row = PendingFlow.objects.filter(id=_hash(key)).first()
    if row is None:
        raise _invalid()
    if (
        not request.user.is_authenticated
        or row.user_id != request.user.pk
        or row.platform != platform
        or row.purpose != purpose
        or (row.session_hash and row.session_hash != session_hash(request))
    ):
        # Not this browser's flow. Left in place, so an attacker cannot cancel a victim's flow.
        raise _invalid("This sign-in link was started in another browser session. Please connect again.")
    if row.created_at < timezone.now() - timedelta(seconds=settings.OAUTH_STATE_MAX_AGE):
        row.delete()
        raise _invalid("The connection took too long and has expired. Please connect again.")
    return row


def peek(request, *, key: str, platform: str, purpose: str) -> dict:
    """Read a pending flow without using it up (to show a choice)."""
    return crypto.decrypt(_find(request, key=key, platform=platform, purpose=purpose).payload)


def consume(request, *, key: str, platform: str, purpose: str = "authorize") -> dict:
    """Use up a pending flow; returns its payload or raises FlowError. Nothing is reusable."""
    row = _find(request, key=key, platform=platform, purpose=purpose)
    deleted, _ = PendingFlow.objects.filter(id=row.id).delete()
    if not deleted:
        raise _invalid()  # a simultaneous callback used it first
    return crypto.decrypt(row.payload)


def drop_for_session(request) -> None:
    if request.session.session_key:
        PendingFlow.objects.filter(session_hash=_hash(request.session.session_key)).delete()
