"""What Meta's Graph APIs (Facebook, Instagram, Threads) mean by their errors.

Docs: https://developers.facebook.com/docs/graph-api/guides/error-handling
Body: {"error": {"message", "type": "OAuthException", "code", "error_subcode", "fbtrace_id"}}.
"""
import hashlib
import hmac

from ..errors import Kind, PlatformError

RATE_LIMIT_CODES = {4, 17, 32, 341, 613}
TEMPORARY_CODES = {1, 2}
REVOKED_SUBCODES = {458, 460, 467, 492}  # app removed, password changed, logged out, session invalid
RESTRICTED_SUBCODES = {459, 464}  # checkpointed or unconfirmed: fix on the platform, then reconnect


def meta_error(response, label: str, *, during_exchange: bool = False) -> PlatformError | None:
    try:
        error = (response.json() or {}).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        return None
    code, subcode = error.get("code"), error.get("error_subcode")
    status = response.status_code
    tag = f"{code}/{subcode}" if subcode else str(code)
    if code in RATE_LIMIT_CODES:
        return PlatformError(Kind.RATE_LIMITED, f"{label} is rate limiting Hayon; try again later.", status=status, code=tag)
    if code in TEMPORARY_CODES or status >= 500:
        return PlatformError(Kind.UNAVAILABLE, f"{label} is having a temporary problem.", status=status, code=tag)
    if during_exchange:
        return PlatformError(Kind.REJECTED, f"{label} did not accept the authorization. Please connect again.", status=status, code=tag)
    if code in (190, 102):
        if subcode == 463 or (subcode is None and "expired" in str(error.get("message", "")).lower()):
            return PlatformError(Kind.EXPIRED, f"The {label} access token has expired. Reconnect.", status=status, code=tag)
        if subcode in RESTRICTED_SUBCODES:
            return PlatformError(Kind.REJECTED, f"{label} asks you to log in on {label} and confirm your account, then reconnect.", status=status, code=tag)
        return PlatformError(Kind.REVOKED, f"{label} access was removed (app removed or password changed). Reconnect.", status=status, code=tag)
    if code == 10 or (isinstance(code, int) and 200 <= code <= 299):
        return PlatformError(Kind.REJECTED, f"{label} permission was removed. Reconnect and allow every permission.", status=status, code=tag)
    return None


def token_invalid(error: dict, label: str) -> PlatformError:
    """debug_token said is_valid=false; its `error` has `code`, `subcode` and `message`."""
    subcode = error.get("subcode")
    if subcode == 463 or "expired" in str(error.get("message", "")).lower():
        return PlatformError(Kind.EXPIRED, f"The {label} access token has expired. Reconnect.", code=f"190/{subcode}")
    return PlatformError(Kind.REVOKED, f"{label} access was removed (app removed or password changed). Reconnect.",
                         code=f"190/{subcode}")


def appsecret_proof(access_token: str, app_secret: str) -> str:
    """HMAC-SHA256 of the access token keyed by the app secret, hex.

    Apps with "Require App Secret" on refuse server calls without it, and a stolen token is then
    useless without the secret. https://developers.facebook.com/docs/graph-api/securing-requests
    """
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


def with_token(access_token: str, app_secret: str, **params) -> dict:
    """Query parameters of a Graph call made with `access_token`: the token and its proof."""
    return {**params, "access_token": access_token, "appsecret_proof": appsecret_proof(access_token, app_secret)}
