"""What can go wrong when Hayon talks to a platform, and what each failure means for health."""
from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .documents import Connection


class Kind(Enum):
    EXPIRED = "expired"  # the credential's lifetime ran out
    REVOKED = "revoked"  # the user or platform withdrew access
    REJECTED = "rejected"  # credentials or permissions refused (wrong password, permission removed)
    UNAVAILABLE = "unavailable"  # timeout, reset, 5xx: transient, credentials kept
    RATE_LIMITED = "rate_limited"
    BAD_REPLY = "bad_reply"  # a reply we could not understand
    SECRETS_UNREADABLE = "secrets_unreadable"  # our own encryption keys cannot read the stored secrets
    UNEXPECTED = "unexpected"  # a platform call failed in a way no provider foresaw (a bug or a hostile reply)
    NOT_CONFIGURED = "not_configured"

    @property
    def health_status(self) -> str:
        return _HEALTH[self][0]

    @property
    def needs_reconnection(self) -> bool:
        return _HEALTH[self][1]


# kind -> (health status, needs reconnection)
_HEALTH = {
    Kind.EXPIRED: ("expired", True),
    Kind.REVOKED: ("revoked", True),
    Kind.REJECTED: ("error", True),
    Kind.UNAVAILABLE: ("error", False),
    Kind.RATE_LIMITED: ("error", False),
    Kind.BAD_REPLY: ("error", False),
    Kind.SECRETS_UNREADABLE: ("error", False),
    Kind.UNEXPECTED: ("error", False),
    Kind.NOT_CONFIGURED: ("error", False),
}


class PlatformError(Exception):
    """A platform call failed. `message` is safe to show a user; it never holds a secret."""

    def __init__(self, kind: Kind, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.code = code
        # The connection as renewed before the failure (a rotated refresh token, a new expiry):
        # services stores its credential and expiry, because the platform already retired the old.
        self.replacement: Connection | None = None

    def __repr__(self):
        return f"PlatformError({self.kind.name}, {self.message!r}, status={self.status}, code={self.code!r})"


class FlowError(Exception):
    """An OAuth callback or connect request that must be refused. `code` goes into `?error=`."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
