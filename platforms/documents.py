"""The typed pieces of a platform sub-document, and how they are written into it.

A sub-document (one per platform in `SocialAccount`) looks like the contract says:
    {"connected": true, "profile": {...}, "health": {...}, <identifiers>, "auth": "<ciphertext>",
     "expiresAt": "...", "connectedAt": "...", "accountKey": "..."}
`auth` is the only secret and is always ciphertext here.
"""
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone

from django.utils import timezone

from . import crypto


EPOCH = datetime(2000, 1, 1, tzinfo=dt_timezone.utc)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Profile:
    display_name: str = ""
    handle: str = ""
    avatar: str = ""
    description: str = ""

    def to_doc(self) -> dict:
        doc = {"displayName": self.display_name, "handle": self.handle, "avatar": self.avatar}
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


def connected_document(connection: Connection, *, previous: dict | None = None) -> dict:
    """The sub-document for a fresh or refreshed connection (active health)."""
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
    }
    return doc


def disconnected_document(*, reason: str = "") -> dict:
    doc = {"connected": False}
    if reason:
        doc["health"] = health("error", reason=reason, needs_reconnection=False)
    return doc


def read_auth(doc: dict) -> dict:
    """Decrypt a sub-document's secrets (raises crypto.SecretsUnreadable)."""
    return crypto.decrypt(doc["auth"]) if doc.get("auth") else {}
