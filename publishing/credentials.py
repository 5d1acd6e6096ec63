"""Publishing asks `platforms` for a usable credential and reports auth failures back to it.

`platforms` owns connections: renewing a credential goes through services.refresh_connection
(which renews under the connection's lock and version rules and records health), and an auth
failure at publish time through services.record_failure, so health stays one story.
"""
from platforms import crypto, documents, services
from platforms.errors import PlatformError


class CredentialUnusable(Exception):
    """The connection cannot publish now; `message` says why and what to do (reconnect)."""

    def __init__(self, message: str, *, reconnect: bool = True):
        super().__init__(message)
        self.message = message
        self.reconnect = reconnect


def connection_problem(provider, doc: dict) -> str:
    """Why this connection cannot be published to, or "" when it can."""
    if not doc.get("connected"):
        return f"{provider.label} is not connected. Connect it under Settings."
    health = doc.get("health") or {}
    if health.get("status", "active") != "active" or health.get("needsReconnection"):
        reason = health.get("reason") or f"{provider.label} needs attention."
        return f"{provider.label} needs reconnection: {reason} Reconnect it under Settings."
    return ""


def usable_credential(*, user, provider) -> tuple[dict, dict]:
    """(public document, decrypted auth) for publishing, renewed first when the provider asks.

    Raises CredentialUnusable (health already says why) instead of a PlatformError, so the
    caller does not record the same failure twice.
    """
    doc = services.account_for(user).document(provider.name)
    problem = connection_problem(provider, doc)
    if problem:
        raise CredentialUnusable(problem)
    try:
        auth = documents.read_auth(doc)
        if provider.credential_due(auth=auth):
            doc = services.refresh_connection(user=user, provider=provider)  # renews, stores, records health
            auth = documents.read_auth(doc)
    except crypto.SecretsUnreadable:
        raise CredentialUnusable("Hayon cannot read the stored credentials (encryption keys changed). Reconnect.") from None
    except PlatformError as error:
        reconnect = error.kind.needs_reconnection
        advice = f" Reconnect {provider.label} under Settings, then retry." if reconnect else ""
        raise CredentialUnusable(f"{provider.label}: {error.message}{advice}", reconnect=reconnect) from None
    return doc, auth


def report_auth_failure(*, user, provider, doc: dict, error: PlatformError) -> None:
    """Health records the failure, unless the connection got a new credential meanwhile."""
    parent = getattr(provider, "parent", None)
    if parent is not None:  # a linked document (Instagram): its credential and health are its parent's
        if documents.credential_version(services.account_for(user).document(provider.name)) != documents.credential_version(doc):
            return  # reconnected meanwhile: the failure is about a credential that is gone
        provider, doc = parent, services.account_for(user).document(parent.name)
    services.record_failure(user=user, provider=provider, error=error,
                            expected_version=documents.credential_version(doc))
