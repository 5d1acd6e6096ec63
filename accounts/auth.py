"""Authentication of `/api/...` requests: a Bearer token, or the signed-in browser session."""
from django.middleware.csrf import CsrfViewMiddleware

from .models import ApiToken


class ApiAuthError(Exception):
    """The request named credentials that do not authenticate anybody."""


def _bearer(request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiAuthError("The Authorization header must be 'Bearer <token>'.")
    return value.strip()


def _csrf_fails(request) -> bool:
    # A browser session is a cookie, so a state-changing call needs the CSRF token as forms do.
    middleware = CsrfViewMiddleware(lambda req: None)
    return middleware.process_view(request, None, (), {}) is not None


def authenticate_api_request(request):
    """Return the user or raise ApiAuthError. Tokens in the query string are never read."""
    raw = _bearer(request)
    if raw is not None:
        token = ApiToken.objects.by_raw_token(raw)
        if token is None:
            raise ApiAuthError("This API token is not valid.")
        if (lapsed := token.lapsed()) is not None:  # expired, or the password changed since
            raise ApiAuthError(ApiToken.LAPSES[lapsed])
        token.mark_used()
        return token.user
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        raise ApiAuthError("Authentication required: send 'Authorization: Bearer <token>'.")
    if request.method not in ("GET", "HEAD", "OPTIONS") and _csrf_fails(request):
        raise ApiAuthError("CSRF check failed for a session-authenticated request.")
    return user
