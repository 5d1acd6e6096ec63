"""Connect, finish, refresh, disconnect: the only code that writes a connection.

Providers talk to platforms and return data or raise; this module decides what that means for
the stored document and its health, always under a row lock, so a failure never overwrites good
credentials and two writers never interleave.
"""
import logging
from dataclasses import dataclass
from urllib.parse import urlencode

from django.db import transaction
from django.urls import reverse

from accounts import ratelimit

from . import crypto, documents, health, oauth_state
from .errors import FlowError, Kind, PlatformError
from .models import SocialAccount
from .providers.base import PendingChoice, Provider

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    message: str
    redirect_url: str | None = None


def account_for(user) -> SocialAccount:
    return SocialAccount.objects.get_or_create(user=user)[0]


def _locked(user) -> SocialAccount:
    try:
        return SocialAccount.objects.select_for_update().get(user=user)
    except SocialAccount.DoesNotExist:  # first connection: create the row, then lock it
        account_for(user)
        return SocialAccount.objects.select_for_update().get(user=user)


# -- connecting ------------------------------------------------------------------------------------
def start_connect(*, request, provider: Provider, data) -> Outcome:
    """Begin connecting: a redirect URL for OAuth platforms, a stored connection for the others."""
    if not provider.is_configured():
        raise FlowError("not_configured", f"{provider.label} is not configured by the administrator.", status=503)
    cleaned = _cleaned(provider, data)
    if provider.credential_connect:
        _check_rate_limits(request, provider, cleaned)
        connection = provider.connect_with_credentials(data=cleaned)
        store_connection(user=request.user, provider=provider, connection=connection)
        return Outcome(message=f"{provider.label} connected.")
    state, nonce = oauth_state.new_state()
    authorization = provider.begin(state=state, data=cleaned)
    oauth_state.save(
        request, key=authorization.flow_key or nonce, platform=provider.name, payload=authorization.payload
    )
    return Outcome(message="", redirect_url=authorization.url)


def _check_rate_limits(request, provider: Provider, cleaned: dict) -> None:
    keys = {
        "user": str(request.user.pk),
        "ip": ratelimit.client_ip(request),
        "identifier": str(cleaned.get(provider.rate_limit_field, "")).lower(),
    }
    ratelimit.hit(
        [(ratelimit.Limit(f"{provider.name}-{scope}", count, seconds), keys[scope])
         for scope, (count, seconds) in provider.connect_rate_limits.items()]
    )


def _cleaned(provider: Provider, data) -> dict:
    if provider.connect_form is None:
        return {}
    form = provider.connect_form(data)
    if not form.is_valid():
        first = next(iter(form.errors.values()))[0]
        raise FlowError("invalid_input", first)
    return form.cleaned_data


def finish_connect(*, request, provider: Provider, query) -> Outcome:
    """Handle the platform's callback: check the flow, exchange, fetch the profile, store."""
    key = provider.flow_key(query)
    if provider.signed_state:
        key = oauth_state.unsign(key)
    payload = oauth_state.consume(request, key=key, platform=provider.name)
    result = provider.finish(payload=payload, query=query)
    if isinstance(result, PendingChoice):
        state, nonce = oauth_state.new_state()
        oauth_state.save(request, key=nonce, platform=provider.name, purpose="choose",
                         payload={"options": result.options, "secret": result.payload})
        return Outcome(message="", redirect_url=f"{reverse('platform_pick', args=[provider.name])}?{urlencode({'choice': state})}")
    store_connection(user=request.user, provider=provider, connection=result)
    return Outcome(message=f"{provider.label} connected.")


def pending_options(*, request, provider: Provider, choice: str) -> list[dict]:
    key = oauth_state.unsign(choice)
    return oauth_state.peek(request, key=key, platform=provider.name, purpose="choose")["options"]


def finish_choice(*, request, provider: Provider, choice: str, value: str) -> Outcome:
    payload = oauth_state.consume(request, key=oauth_state.unsign(choice), platform=provider.name, purpose="choose")
    if not any(option["id"] == value for option in payload["options"]):
        raise FlowError("invalid_input", "That is not one of the choices offered. Please connect again.")
    connection = provider.connect_choice(payload=payload["secret"], value=value)
    store_connection(user=request.user, provider=provider, connection=connection)
    return Outcome(message=f"{provider.label} connected.")


@transaction.atomic
def store_connection(*, user, provider: Provider, connection: documents.Connection) -> None:
    taken = (
        SocialAccount.objects.filter(**{f"{provider.name}__accountKey": connection.account_key})
        .exclude(user=user)
        .exists()
    )
    if taken:
        raise FlowError(
            "account_in_use",
            f"This {provider.label} account is already connected to another Hayon user.",
            status=409,
        )
    account = _locked(user)
    previous = account.document(provider.name)
    _schedule(provider, connection)
    same = previous.get("accountKey") == connection.account_key
    account.set_document(provider.name, documents.connected_document(connection, previous=previous if same else None))
    for name in provider.linked:
        linked = connection.linked.get(name)
        if linked is None:
            account.set_document(name, documents.disconnected_document(reason=connection.linked_reasons.get(name, "")))
        else:
            account.set_document(name, documents.connected_document(linked, previous=account.document(name)))
    account.save()
    log.info("connected %s for user %s", provider.name, user.pk)


def _schedule(provider: Provider, connection: documents.Connection) -> None:
    connection.next_check_at = provider.next_check_at(connection)
    for linked in connection.linked.values():
        if linked is not None:
            linked.next_check_at = connection.next_check_at


# -- refreshing ------------------------------------------------------------------------------------
def refresh_connection(*, user, provider: Provider) -> dict:
    """Re-read the profile (renewing credentials where possible) and record health."""
    if provider.refresh_under_lock:
        # Renewing rotates the credential: the lock spans the call so two refreshes never race.
        with transaction.atomic():
            doc, error = _refresh(_locked(user), provider)
    else:
        doc, error = _refresh(account_for(user), provider)
    if error:  # raised only now, so the health written above is committed, not rolled back
        raise error
    return doc


def _refresh(account: SocialAccount, provider: Provider) -> tuple[dict, PlatformError | None]:
    doc = account.document(provider.name)
    if not doc.get("connected"):
        raise FlowError("not_connected", f"{provider.label} is not connected.", status=409)
    stored, _, error = _check(account, provider, provider.refresh)
    return stored, error


def _attempt(call, doc: dict):
    """Run a provider call on a stored document: (connection, decrypted auth, None) or (None, None, error)."""
    try:
        auth = documents.read_auth(doc)
        return call(doc=doc, auth=auth), auth, None
    except crypto.SecretsUnreadable:
        return None, None, PlatformError(Kind.KEY_ERROR, "Hayon cannot read the stored credentials (encryption keys changed).")
    except PlatformError as error:
        return None, None, error


def check_connection(*, account: SocialAccount, provider: Provider) -> str:
    """The upkeep command's check of one connection: what the platform needs, then health.

    Returns the outcome for the summary: ok, renewed, expired, revoked, error, retrying, or
    superseded (the connection changed while we were checking it; what is stored now is newer).
    """
    return _check(account, provider, provider.upkeep)[1]


def _check(account: SocialAccount, provider: Provider, call) -> tuple[dict, str, PlatformError | None]:
    """Run a provider call (refresh or upkeep) and record what it found: the document now
    stored, the outcome, and the platform error if there was one."""
    doc = account.document(provider.name)
    connection, auth, error = _attempt(call, doc)
    if error:
        written = record_failure(user=account.user, provider=provider, error=error, expected_auth=doc.get("auth"))
        return doc, _outcome(written), error
    stored, written = _apply_refresh(account.user, provider, connection, expected_auth=doc.get("auth"))
    if not written:
        return stored, "superseded", None
    return stored, "renewed" if connection.auth != auth else "ok", None


@transaction.atomic
def _apply_refresh(user, provider: Provider, connection, *, expected_auth) -> tuple[dict, bool]:
    """Store a refreshed connection unless the stored one changed meanwhile.

    Returns (the document now stored, whether this connection was written).
    """
    account = _locked(user)
    current = account.document(provider.name)
    if not current.get("connected") or current.get("auth") != expected_auth:
        # Disconnected, reconnected or renewed while we were away: what is stored now is newer.
        return current, False
    _schedule(provider, connection)
    account.set_document(provider.name, documents.connected_document(connection, previous=current))
    for name in provider.linked:
        linked = connection.linked.get(name)
        if linked is not None:
            account.set_document(name, documents.connected_document(linked, previous=account.document(name)))
        elif name not in connection.linked:
            account.set_document(name, _follow(account.document(name), connection))
    _save(account, provider)
    return account.document(provider.name), True


def _save(account: SocialAccount, provider: Provider) -> None:
    """Write only the documents this provider owns: less to encode, and nothing else overwritten."""
    account.save(update_fields=[provider.name, *provider.linked, "updated_at"])


def _outcome(written: dict | None) -> str:
    if written is None:
        return "superseded"
    if written["needsReconnection"] or written["status"] != "active":
        return written["status"] if written["status"] in ("expired", "revoked") else "error"
    return "retrying"


def _follow(doc: dict, connection: documents.Connection) -> dict:
    """A linked document checked through its parent's credential (Instagram through the Page token)."""
    if doc.get("connected"):
        doc["health"] = documents.health("active", reason=connection.notice)
        doc["nextCheckAt"] = documents.iso(connection.next_check_at)
    return doc


def choose(*, user, provider: Provider, value: str) -> Outcome:
    """Switch a connection to another of the user's items (a blog) without reconnecting."""
    if not provider.choice_field:
        raise FlowError("invalid_input", f"{provider.label} has nothing to choose between.")
    doc = account_for(user).document(provider.name)
    if not doc.get("connected"):
        raise FlowError("not_connected", f"{provider.label} is not connected.", status=409)
    connection = provider.choose(doc=doc, auth=documents.read_auth(doc), value=value)
    _apply_refresh(user, provider, connection, expected_auth=doc.get("auth"))
    return Outcome(message=f"{provider.label} now uses {connection.profile.display_name}.")


@transaction.atomic
def record_failure(*, user, provider: Provider, error: PlatformError, expected_auth=None) -> dict | None:
    """The one place a platform error becomes health. Credentials are never touched here.

    Returns the health written for the provider's own document (None when it changed meanwhile).
    """
    account = _locked(user)
    written = None
    if expected_auth and account.document(provider.name).get("auth") != expected_auth:
        return None  # reconnected or renewed meanwhile: this failure is about credentials now gone
    for name in (provider.name, *provider.linked):
        doc = account.document(name)
        if not doc.get("connected"):
            continue
        if name == provider.name and error.replacement_auth:
            doc["auth"] = crypto.encrypt(error.replacement_auth)
        doc["health"] = health.after_failure(doc.get("health"), error)
        doc["nextCheckAt"] = documents.iso(health.retry_at(error, doc["health"]["consecutiveFailures"]))
        account.set_document(name, doc)
        if name == provider.name:
            written = doc["health"]
    _save(account, provider)
    log.info(
        "%s refresh failed for user %s: %s (status %s, code %s)",
        provider.name, user.pk, error.kind.name, error.status, error.code,
    )
    return written


# -- disconnecting ---------------------------------------------------------------------------------
def disconnect(*, user, provider: Provider) -> Outcome:
    """Revoke at the platform where it can, then forget every secret and profile field."""
    doc = account_for(user).document(provider.name)
    message = f"{provider.label} disconnected."
    if doc.get("connected"):
        message = _revoke(provider, doc)
    with transaction.atomic():
        account = _locked(user)
        for name in (provider.name, *provider.linked):
            account.set_document(name, {"connected": False})
        account.save()
    log.info("disconnected %s for user %s", provider.name, user.pk)
    return Outcome(message=message)


def _revoke(provider: Provider, doc: dict) -> str:
    if not provider.revokes_remotely:
        return (
            f"{provider.label} disconnected. {provider.label} has no way for Hayon to withdraw its access: "
            f"remove Hayon in your {provider.label} app settings ({provider.manage_access_url})."
        )
    try:
        provider.revoke(doc=doc, auth=documents.read_auth(doc))
    except (PlatformError, crypto.SecretsUnreadable, KeyError) as error:
        reason = getattr(error, "message", "the stored credentials could not be read")
        log.info("%s revoke failed: %s", provider.name, type(error).__name__)
        return (
            f"{provider.label} disconnected from Hayon, but revoking its access at {provider.label} failed "
            f"({reason}). Remove Hayon in your {provider.label} settings to be sure."
        )
    return f"{provider.label} disconnected and Hayon's access revoked."
