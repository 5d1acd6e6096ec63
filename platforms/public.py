"""The allowlist of what a client may see of a connection. Feeds both /settings and the JSON API.

Anything not named here (auth, accountKey, whatever a provider adds later) stays server-side.
"""
from .models import PLATFORM_FIELDS

PROFILE_FIELDS = ("displayName", "handle", "avatar", "description")
HEALTH_FIELDS = ("status", "needsReconnection", "reason", "checkedAt")
IDENTIFIER_FIELDS = ("did", "handle", "blogHostname", "blogUuid", "platformId", "instanceUrl", "accountId")
DETAIL_FIELDS = ("expiresAt", "connectedAt", "limits", "blogs", "authMethod")


def _pick(source, fields) -> dict:
    source = source if isinstance(source, dict) else {}
    return {key: source[key] for key in fields if key in source}


def public_document(doc: dict) -> dict:
    doc = doc or {}
    public = {"connected": bool(doc.get("connected"))}
    if doc.get("health"):
        public["health"] = _pick(doc["health"], HEALTH_FIELDS)
    if not public["connected"]:
        return public
    public["profile"] = _pick(doc.get("profile"), PROFILE_FIELDS)
    public.update(_pick(doc, IDENTIFIER_FIELDS + DETAIL_FIELDS))
    return public


def public_account(account) -> dict:
    """Every platform key, present whether connected or not."""
    return {name: public_document(account.document(name)) for name in PLATFORM_FIELDS}
