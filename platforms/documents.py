"""The typed pieces of a platform sub-document, and how they are written into it.

A sub-document (one per platform in `SocialAccount`) looks like the contract says:
    {"connected": true, "profile": {...}, "health": {...}, <identifiers>, "auth": "<ciphertext>",
     "expiresAt": "...", "connectedAt": "...", "accountKey": "...", "credentialVersion": 3}
`auth` is the only secret and is always ciphertext here.

`credentialVersion` counts the credentials one connection has had: it goes up only when the
decrypted credential really changes (a renewal, a reconnect), never when the same credential is
written again or re-encrypted under a new key. A writer that started from version N writes only
if N is still stored (see `credential_version`). `renewingUntil`/`renewingBy` are a short lease
held by whoever renews a rotating credential (services.renewal_lease).
"""
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone
from urllib.parse import urlsplit

from django.utils import timezone

from . import crypto


EPOCH = datetime(2000, 1, 1, tzinfo=dt_timezone.utc)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


LEASE_FIELDS = ("renewingUntil", "renewingBy")


def web_url(value: str) -> str:
    """An http(s) URL, or "" for anything else (javascript:, data:, relative): a platform's reply
    is untrusted, and these URLs end up in pages (issue 13, item 14)."""
    try:
        parts = urlsplit(str(value or "").strip())
    except ValueError:
        return ""
    return str(value).strip() if parts.scheme.lower() in ("http", "https") and parts.netloc else ""


@dataclass
class Profile:
    display_name: str = ""
    handle: str = ""
    avatar: str = ""
    description: str = ""

    def to_doc(self) -> dict:
        doc = {"displayName": self.display_name, "handle": self.handle, "avatar": web_url(self.avatar)}
        if self.description:
            doc["description"] = self.description
        return doc


@dataclass
class Connection:
    """What a provider hands back after connecting or refreshing. Providers never save it."""

    profile: Profile
    account_key: str  # stable identity at the platform, to stop one account linking to two users
    identifiers: dict = field(default_factory=dict)  # public ids: did, instanceUrl, platformId, ...
    auth: dict = field(default_factory=dict)  # secrets; encrypted before they touch a model
    expires_at: datetime | None = None
    extra: dict = field(default_factory=dict)  # public, platform-specific facts (posting limits, ...)
    linked: dict = field(default_factory=dict)  # sub-documents this one fills too: {"instagram": Connection | None}
    linked_reasons: dict = field(default_factory=dict)  # why a linked one is missing: {"instagram": "..."}
    notice: str = ""  # something the user should know although all is well (a consent about to lapse)
    next_check_at: datetime | None = None  # when upkeep should look again (set by services)


def profile_from(doc: dict) -> Profile:
    profile = doc.get("profile") or {}
    return Profile(profile.get("displayName", ""), profile.get("handle", ""), profile.get("avatar", ""),
                   profile.get("description", ""))


def health(status: str, *, reason: str = "", needs_reconnection: bool = False, failures: int = 0) -> dict:
    return {
        "status": status,
        "needsReconnection": needs_reconnection,
        "reason": reason,
        "checkedAt": iso(timezone.now()),
        "consecutiveFailures": failures,
    }


def credential_version(doc: dict) -> tuple[str | None, int]:
    """Which credential a document holds: its connection (a random id given at each connect) and
    the counter within it. The counter alone would start again after a disconnect, which keeps
    nothing; the id also tells a renewal of this connection from a reconnect."""
    return doc.get("connectionId"), int(doc.get("credentialVersion") or 0)


def new_connection(previous: dict, *, same_account: bool) -> dict:
    """What a fresh connect keeps of the document it replaces: the connection date (same account
    only) and a credential counter that only goes up."""
    return {"connectedAt": previous.get("connectedAt") if same_account else None,
            "connectionId": secrets.token_hex(8), "credentialVersion": credential_version(previous)[1]}


def connected_document(connection: Connection, *, previous: dict | None = None, version: int = 1) -> dict:
    """The sub-document for a fresh or refreshed connection (active health), credentialVersion
    `version`. `previous` gives connectedAt, connectionId and a renewal lease held on it."""
    previous = previous or {}
    doc = {
        "connected": True,
        "profile": connection.profile.to_doc(),
        "health": health("active", reason=connection.notice),
        **connection.identifiers,
        **connection.extra,
        "auth": crypto.encrypt(connection.auth),
        "expiresAt": iso(connection.expires_at),
        "connectedAt": previous.get("connectedAt") or iso(timezone.now()),
        "accountKey": connection.account_key,
        "nextCheckAt": iso(connection.next_check_at),
        "connectionId": previous.get("connectionId") or secrets.token_hex(8),
        "credentialVersion": version,
    }
    doc.update({key: previous[key] for key in LEASE_FIELDS if key in previous})
    return doc


def with_credential(doc: dict, connection: Connection) -> dict:
    """`doc` holding the credential (and its expiry) of `connection`, a new version of it.

    For a credential the platform issued before a later call failed: the rest of the document
    (profile, health) is left to the caller.
    """
    return {**doc, "auth": crypto.encrypt(connection.auth), "expiresAt": iso(connection.expires_at),
            "credentialVersion": credential_version(doc)[1] + 1}


def disconnected_document(*, reason: str = "") -> dict:
    doc = {"connected": False}
    if reason:
        doc["health"] = health("error", reason=reason, needs_reconnection=False)
    return doc


def read_auth(doc: dict) -> dict:
    """Decrypt a sub-document's secrets (raises crypto.SecretsUnreadable)."""
    return crypto.decrypt(doc["auth"]) if doc.get("auth") else {}
