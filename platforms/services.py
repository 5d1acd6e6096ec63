"""Connect, finish, refresh, disconnect: the only code that writes a connection.

Providers talk to platforms and return data or raise; this module decides what that means for
the stored document and its health. Every write happens in a short transaction under the row
lock, never around a platform call: a write that started from an older credential version than
the one stored is dropped, a rotating credential is renewed by one holder of a short lease at a
time (renewal_lease), and a credential the platform issued but Hayon will not keep is revoked.
"""
import logging
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts import ratelimit

from . import claims, crypto, documents, health, oauth_state
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
    if provider.connects_within_request(cleaned):
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


def finish_connect(*, request, provider: Provider, query, callback_id: str = "") -> Outcome:
    """Handle the platform's callback: check the flow, exchange, fetch the profile, store."""
    key = provider.flow_key(query)
    if provider.signed_state:
        key = oauth_state.unsign(key)
    payload = oauth_state.consume(request, key=key, platform=provider.name)
    if payload.get("callbackId", "") != callback_id:
        # Mix-up (RFC 9700 §4.4, case 39): the answer came back at another server's redirect URI
        # than the one this flow was sent with. Refused before any code is exchanged.
        raise FlowError("invalid_state", "That answer came back from a different server than the one you chose. Please connect again.")
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


# -- storing a connection --------------------------------------------------------------------------
def store_connection(*, user, provider: Provider, connection: documents.Connection) -> None:
    """Store a new connection, claiming its account for this user; revoke what Hayon will not keep.

    Refused (409) when another Hayon user holds the account: the token just issued is revoked, as
    is a token this connection replaces (both after the decision is committed, best effort).
    """
    try:
        replaced = _store_connection(user, provider, connection)
    except FlowError as refused:
        if refused.code == "account_in_use":
            _revoke_unkept(provider, _unsaved_doc(connection), connection.auth, why="refused connect")
        raise
    if replaced is not None and replaced[1] != connection.auth:
        _revoke_unkept(provider, *replaced, why="replaced credential")
    log.info("connected %s for user %s", provider.name, user.pk)


@transaction.atomic
def _store_connection(user, provider: Provider, connection: documents.Connection) -> tuple[dict, dict] | None:
    """Claim and write, in one transaction. Returns the (doc, auth) this replaced, if any."""
    account = _locked(user)
    previous = account.document(provider.name)
    same = previous.get("connected") and previous.get("accountKey") == connection.account_key
    if not claims.take(user=user, platform=provider.name, account_key=connection.account_key):
        raise FlowError(
            "account_in_use",
            f"This {provider.label} account is already connected to another Hayon user.",
            status=409,
        )
    if previous.get("connected") and not same:
        claims.give_up(user=user, platform=provider.name, account_key=previous.get("accountKey"))
    _schedule(provider, connection)
    previous_auth = _readable_auth(previous)
    start = documents.new_connection(previous, same_account=bool(same))
    account.set_document(provider.name, documents.connected_document(
        connection, previous=start, version=start["credentialVersion"] + 1))
    _write_linked(account, provider, connection)
    account.save()
    return (previous, previous_auth) if previous.get("connected") and previous_auth else None


def _schedule(provider: Provider, connection: documents.Connection) -> None:
    connection.next_check_at = provider.next_check_at(connection)
    for linked in connection.linked.values():
        if linked is not None:
            linked.next_check_at = connection.next_check_at


def _write_linked(account: SocialAccount, provider: Provider, connection: documents.Connection) -> None:
    """The documents a connection fills besides its own (Instagram, with a Facebook Page), the same
    way on connect, refresh and upkeep: present -> stored and claimed; None -> disconnected with
    the reason; absent (upkeep checked only the parent) -> health follows the parent."""
    for name in provider.linked:
        doc = account.document(name)
        if name not in connection.linked:
            account.set_document(name, _follow(doc, connection))
            continue
        linked = connection.linked[name]
        same = doc.get("connected") and linked is not None and doc.get("accountKey") == linked.account_key
        if doc.get("connected") and not same:
            claims.give_up(user=account.user, platform=name, account_key=doc.get("accountKey"))
        if linked is None:
            account.set_document(name, documents.disconnected_document(reason=connection.linked_reasons.get(name, "")))
        elif not claims.take(user=account.user, platform=name, account_key=linked.account_key):
            label = provider.linked[name]
            account.set_document(name, documents.disconnected_document(
                reason=f"This {label} account is already connected to another Hayon user."))
        else:
            start = doc if same else documents.new_connection(doc, same_account=False)
            version = _version_after(start, linked.auth, _readable_auth(doc) if same else None)
            account.set_document(name, documents.connected_document(linked, previous=start, version=version))


def _version_after(previous: dict, auth: dict, previous_auth: dict | None) -> int:
    """The credentialVersion for `auth` written over `previous`: up by one only when it changed."""
    version = documents.credential_version(previous)[1]
    return version if previous_auth is not None and previous_auth == auth else version + 1


def _readable_auth(doc: dict) -> dict | None:
    try:
        return documents.read_auth(doc) if doc.get("connected") else None
    except crypto.SecretsUnreadable:
        return None


def _unsaved_doc(connection: documents.Connection) -> dict:
    """The public part of a connection that was never stored: what revoke() may read."""
    return {**connection.identifiers, **connection.extra, "accountKey": connection.account_key}


# -- refreshing ------------------------------------------------------------------------------------
RENEWAL_WAIT = 15  # seconds a user's refresh waits for a renewal under way (well within a web worker's timeout)


class RenewalBusy(Exception):
    """Another renewal of this rotating credential is under way (its lease has not run out)."""


def _lease_length() -> timedelta:
    # Longer than the slowest renewal: at most four platform calls (refresh, profile, retry), each
    # within HAYON_HTTP_TIMEOUT, with room to spare. A holder that dies leaves a lease that runs out.
    return timedelta(seconds=max(60, 6 * settings.HAYON_HTTP_TIMEOUT))


@contextmanager
def renewal_lease(*, user, provider: Provider, wait: bool, account: SocialAccount | None = None):
    """The stored document, with the right to renew its credential until the block ends.

    For rotating credentials (provider.rotates_credentials) only one renewal may run at a time,
    or two would each retire the other's token. The right is a short lease written into the
    document, not a transaction: no database lock is held while the platform is called. `wait`:
    wait up to RENEWAL_WAIT seconds for a lease held by someone else (FlowError after), else
    raise RenewalBusy at once. Other providers get the document and no lease (from `account`
    when the caller has just read it: the write checks the version anyway).
    """
    if not provider.rotates_credentials:
        yield (account or account_for(user)).document(provider.name)
        return
    owner = secrets.token_hex(8)
    doc = _take_lease(user, provider, owner, wait=wait)
    try:
        yield doc
    finally:
        _give_back_lease(user, provider, owner)


def _take_lease(user, provider: Provider, owner: str, *, wait: bool) -> dict:
    give_up_at = time.monotonic() + RENEWAL_WAIT
    while True:
        with transaction.atomic():
            account = _locked(user)
            doc = account.document(provider.name)
            held_until = documents.parse_iso(doc.get("renewingUntil"))
            if not doc.get("connected"):
                return doc
            if held_until is None or held_until <= timezone.now():
                doc.update(renewingUntil=documents.iso(timezone.now() + _lease_length()), renewingBy=owner)
                account.set_document(provider.name, doc)
                account.save(update_fields=[provider.name, "updated_at"])
                return doc
        if not wait:
            raise RenewalBusy()
        while _lease_held(user, provider):  # wait with plain reads: no write lock taken meanwhile
            if time.monotonic() > give_up_at:
                raise FlowError("renewal_in_progress", f"Hayon is renewing the {provider.label} connection right "
                                "now. Try again in a minute.", status=409)
            time.sleep(0.1)


def _lease_held(user, provider: Provider) -> bool:
    held_until = documents.parse_iso(account_for(user).document(provider.name).get("renewingUntil"))
    return held_until is not None and held_until > timezone.now()


def _give_back_lease(user, provider: Provider, owner: str) -> None:
    with transaction.atomic():
        account = _locked(user)
        doc = account.document(provider.name)
        if doc.get("renewingBy") != owner:
            return  # ran out and taken by another, or the connection is gone
        for key in documents.LEASE_FIELDS:
            doc.pop(key, None)
        account.set_document(provider.name, doc)
        account.save(update_fields=[provider.name, "updated_at"])


def refresh_connection(*, user, provider: Provider) -> dict:
    """Re-read the profile (renewing credentials where possible) and record health."""
    with renewal_lease(user=user, provider=provider, wait=True) as doc:
        if not doc.get("connected"):
            raise FlowError("not_connected", f"{provider.label} is not connected.", status=409)
        stored, _, error = _call_and_record(user, provider, provider.refresh, doc)
    if error:  # raised only now, so the health written above is kept
        raise error
    return stored


def upkeep_connection(*, account: SocialAccount, provider: Provider) -> str:
    """The upkeep command's check of one connection: what the platform needs, then health.

    Returns the outcome for the summary: ok, renewed, expired, revoked, error, retrying,
    superseded (the connection changed while we were checking it; what is stored now is newer)
    or deferred (a renewal of it is already under way).
    """
    try:
        with renewal_lease(user=account.user, provider=provider, wait=False, account=account) as doc:
            if not doc.get("connected"):
                return "superseded"
            return _call_and_record(account.user, provider, provider.upkeep, doc)[1]
    except RenewalBusy:
        return "deferred"


def _call_and_record(user, provider: Provider, call, doc: dict) -> tuple[dict, str, PlatformError | None]:
    """Run a provider call (refresh or upkeep) on `doc` and record what it found: the document now
    stored, the outcome, and the platform error if there was one. Written only if `doc`'s
    credential version is still the stored one; a renewed credential that cannot be kept is
    revoked."""
    expected = documents.credential_version(doc)
    connection, auth, error = _attempt(provider, call, doc)
    if error:
        written = record_failure(user=user, provider=provider, error=error, expected_version=expected)
        if written is None and error.replacement is not None:
            _revoke_superseded(user, provider, doc, error.replacement.auth)
        return doc, _outcome(written), error
    stored, written = _apply_refresh(user, provider, connection, expected_version=expected, previous_auth=auth)
    renewed = connection.auth != auth
    if not written:
        if renewed:
            _revoke_superseded(user, provider, doc, connection.auth)
        return stored, "superseded", None
    return stored, "renewed" if renewed else "ok", None


def _attempt(provider: Provider, call, doc: dict):
    """Run a provider call on a stored document: (connection, decrypted auth, None) or (None, None, error).

    Any exception becomes a PlatformError, so a surprise from a platform (a reply the SDK chokes
    on) is recorded as health like any other failure.
    """
    try:
        auth = documents.read_auth(doc)
        return call(doc=doc, auth=auth), auth, None
    except crypto.SecretsUnreadable:
        return None, None, PlatformError(Kind.SECRETS_UNREADABLE, "Hayon cannot read the stored credentials (encryption keys changed).")
    except PlatformError as error:
        return None, None, error
    except Exception as exc:  # noqa: BLE001 -- the type only: the text can quote a URL with a token
        log.warning("%s call for a stored connection failed unexpectedly: %s", provider.name, type(exc).__name__)
        return None, None, PlatformError(Kind.UNEXPECTED, f"Hayon could not make sense of {provider.label}'s reply.")


@transaction.atomic
def _apply_refresh(user, provider: Provider, connection, *, expected_version, previous_auth) -> tuple[dict, bool]:
    """Store a refreshed connection unless the stored credential changed meanwhile.

    Returns (the document now stored, whether this connection was written).
    """
    account = _locked(user)
    current = account.document(provider.name)
    if not current.get("connected") or documents.credential_version(current) != expected_version:
        # Disconnected, reconnected or renewed while we were away: what is stored now is newer.
        return current, False
    _schedule(provider, connection)
    _move_claim(user, provider, current, connection)
    version = _version_after(current, connection.auth, previous_auth)
    account.set_document(provider.name, documents.connected_document(connection, previous=current, version=version))
    _write_linked(account, provider, connection)
    _save(account, provider)
    return account.document(provider.name), True


def _move_claim(user, provider: Provider, current: dict, connection: documents.Connection) -> None:
    """A refresh may name the account by a new key (Tumblr's blog uuid where the renamable blog
    name was, Mastodon's account URI where `server|id` was): the claim moves with it, so the
    one-user-per-account guarantee holds under the new key. Should another user already hold the
    new key, the connection keeps its old one (and its claim) rather than lose either."""
    old = current.get("accountKey")
    if not old or connection.account_key == old:
        return
    if claims.take(user=user, platform=provider.name, account_key=connection.account_key):
        claims.give_up(user=user, platform=provider.name, account_key=old)
    else:
        log.warning("%s refresh for user %s: its new account key is held by another user", provider.name, user.pk)
        connection.account_key = old


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
    auth = documents.read_auth(doc)
    connection = provider.choose(doc=doc, auth=auth, value=value)
    _, written = _apply_refresh(user, provider, connection, expected_version=documents.credential_version(doc),
                                previous_auth=auth)
    if not written:
        raise FlowError("changed_meanwhile", f"{provider.label} changed while switching (reconnected or "
                        "disconnected elsewhere). Look again and choose once more.", status=409)
    return Outcome(message=f"{provider.label} now uses {connection.profile.display_name}.")


@transaction.atomic
def record_failure(*, user, provider: Provider, error: PlatformError, expected_version=None) -> dict | None:
    """The one place a platform error becomes health, for the provider's document and its linked
    ones. A credential the platform issued before failing (error.replacement) is stored too,
    with its expiry, because the platform has already retired the old one.

    `expected_version`: the credential version the failed call started from; when another is
    stored now, nothing is written (the failure is about a credential that is gone). Returns the
    health written for the provider's own document, or None when nothing was.
    """
    account = _locked(user)
    written = None
    if expected_version is not None and documents.credential_version(account.document(provider.name)) != expected_version:
        return None
    for name in (provider.name, *provider.linked):
        doc = account.document(name)
        if not doc.get("connected"):
            continue
        if name == provider.name and error.replacement is not None:
            doc = documents.with_credential(doc, error.replacement)
        doc["health"] = health.after_failure(doc.get("health"), error)
        doc["nextCheckAt"] = documents.iso(health.retry_at(error, doc["health"]["consecutiveFailures"]))
        account.set_document(name, doc)
        if name == provider.name:
            written = doc["health"]
    _save(account, provider)
    log.info(
        "%s check failed for user %s: %s (status %s, code %s)",
        provider.name, user.pk, error.kind.name, error.status, error.code,
    )
    return written


# -- revoking what Hayon does not keep -------------------------------------------------------------
def _revoke_superseded(user, provider: Provider, doc: dict, auth: dict) -> None:
    """A credential renewed for a connection that was disconnected or reconnected meanwhile.

    Not when the same connection was renewed by someone else: a rotating platform may hand both
    renewals the same successor (the PDS reuses it within its grace period), so revoking ours
    could end the session that is stored.
    """
    current = account_for(user).document(provider.name)
    if current.get("connected") and current.get("connectionId") == doc.get("connectionId"):
        return
    _revoke_unkept(provider, doc, auth, why="superseded renewal")


def _revoke_unkept(provider: Provider, doc: dict, auth: dict, *, why: str) -> None:
    """Best effort: withdraw a credential Hayon will not store. Failures are logged, never raised."""
    if not (provider.revokes_remotely and provider.revokes_single_credential):
        return  # nothing to call, or revoking would withdraw the grant the kept credential uses
    try:
        provider.revoke(doc=doc, auth=auth)
    except Exception as exc:  # noqa: BLE001 -- a failed clean-up must not fail what the user did
        log.warning("%s: revoking a %s failed: %s (status %s)", provider.name, why, type(exc).__name__,
                    getattr(exc, "status", None))
    else:
        log.info("%s: revoked a %s", provider.name, why)


# -- disconnecting ---------------------------------------------------------------------------------
def disconnect(*, user, provider: Provider) -> Outcome:
    """Forget every secret and profile field, then revoke at the platform where it can.

    Forgetting first means what is revoked is what was stored at the end: a renewal finishing
    meanwhile finds the connection gone and revokes its own credential (_revoke_superseded).
    """
    with transaction.atomic():
        account = _locked(user)
        doc = account.document(provider.name)
        for name in (provider.name, *provider.linked):
            gone = account.document(name)
            if gone.get("connected"):
                claims.give_up(user=user, platform=name, account_key=gone.get("accountKey"))
            account.set_document(name, {"connected": False})
        account.save()
    log.info("disconnected %s for user %s", provider.name, user.pk)
    if not doc.get("connected"):
        return Outcome(message=f"{provider.label} disconnected.")
    return Outcome(message=_revoke(provider, doc))


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
