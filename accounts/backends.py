"""Sign-in: Django's username and password check behind one limit, whichever form asks.

Hayon's /login and the admin's /admin/login/ both end in django.contrib.auth.authenticate(),
which calls this backend, so one limiter covers both (the admin had none: issue 13 #5), and any
form added later. Every attempt is counted, before the password is checked: counting failures
only would let a burst of parallel guesses all pass the check before the first failure lands.
"""
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from . import ratelimit
from .identity import sign_in_key

SIGN_IN_PER_IP = ratelimit.Limit("signin-ip", 30, 300)
SIGN_IN_PER_IDENTITY = ratelimit.Limit("signin-user", 10, 300)


class SignInThrottled(PermissionDenied):
    """Too many attempts. authenticate() stops at a PermissionDenied and tries no other backend."""


def count_sign_in(*, request, username: str) -> None:
    """Count one attempt; raises ratelimit.RateLimited when the address or the identity is spent."""
    checks = [(SIGN_IN_PER_IDENTITY, sign_in_key(username))]
    address = ratelimit.client_ip(request) if request is not None else ""
    if address:
        checks.append((SIGN_IN_PER_IP, address))
    ratelimit.hit(checks)


class RateLimitedModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        try:
            count_sign_in(request=request, username=username)
        except ratelimit.RateLimited as exc:
            if request is not None:
                # Read by accounts.forms (the message) and accounts.middleware (429, Retry-After).
                request.sign_in_retry_after = exc.retry_after
            raise SignInThrottled(str(exc)) from exc
        return super().authenticate(request, username=username, password=password, **kwargs)
