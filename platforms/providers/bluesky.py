"""Bluesky and any AT Protocol PDS: app-password sessions through the `atproto` SDK.

Docs: https://docs.bsky.app/docs/api/com-atproto-server-create-session (and refreshSession,
deleteSession), https://docs.bsky.app/docs/advanced-guides/rate-limits
Errors (shared/platform-apis.md §2.4): an expired access JWT is 400 ExpiredToken (not 401);
ExpiredToken/InvalidToken on refreshSession means the session is gone.
"""
import base64
import json
import logging
import re
from datetime import datetime, timedelta, timezone

import httpx
from atproto import Client
from atproto_client import exceptions as sdk
from atproto_client.models.string_formats import is_valid_handle
from atproto_client.request import Request, RequestBase, _handle_response
from django import forms
from django.conf import settings

from .. import http
from ..documents import Connection, Profile, profile_from
from ..errors import Kind, PlatformError
from . import atproto_identity, bluesky_oauth
from .atproto_oauth import client as oauth_client
from .base import Provider
from .bluesky_oauth import BlueskyOAuth
from .bluesky_publish import BlueskyPublishing

log = logging.getLogger(__name__)
APP_PASSWORD = re.compile(r"^[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}$")
CID = re.compile(r"^[a-zA-Z0-9]{8,128}$")  # a blob's CID goes into a URL: base32/base58 characters only
MAX_EXP = 253402300799  # 9999-12-31T23:59:59Z, the last second a datetime holds
# Lexicon limits (app.bsky.actor.profile: displayName 640 bytes, description 2560), kept as caps
# on whatever a PDS sends, so a hostile record cannot fill the page.
DISPLAY_NAME_MAX, DESCRIPTION_MAX, URL_MAX = 640, 2560, 2048
RENEW_BEFORE = timedelta(minutes=15)  # the SDK's own margin for renewing an access JWT
WRONG_CREDENTIALS = "That handle and app password do not match a Bluesky account."
SIGN_IN, APP_PASSWORD_METHOD = "signin", "app_password"  # the connect form's two ways


class AppPasswordForm(forms.Form):
    identifier = forms.CharField(
        label="Handle or email", max_length=253,
        error_messages={"required": "Enter your Bluesky handle or email."},
        widget=forms.TextInput(attrs={"placeholder": "you.bsky.social", "autocomplete": "username"}),
    )
    appPassword = forms.CharField(
        label="App password", max_length=40, strip=True, required=False,
        error_messages={"required": "Enter an app password (it looks like xxxx-xxxx-xxxx-xxxx)."},
        widget=forms.PasswordInput(attrs={"placeholder": "xxxx-xxxx-xxxx-xxxx", "autocomplete": "off"}),
        help_text='Create one in Bluesky under <a href="https://bsky.app/settings/app-passwords" '
        'target="_blank" rel="noopener noreferrer">Settings › Privacy and security › App passwords</a>. '
        "Never use your main password.",
    )

    method = forms.ChoiceField(
        label="How to connect", required=False, widget=forms.RadioSelect, initial=SIGN_IN,
        # "app-password", hyphenated: the field below stays the one labelled "App password".
        choices=[(SIGN_IN, "Sign in with Bluesky (recommended: Hayon never sees a password)"),
                 (APP_PASSWORD_METHOD, "Use an app-password instead")],
    )

    field_order = ["method", "identifier", "appPassword"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not bluesky_oauth.enabled():  # sign-in switched off: the app-password form as it always was
            del self.fields["method"]
            self.fields["appPassword"].required = True
            return
        self.fields["identifier"].help_text = "To sign in with Bluesky: your handle, DID or server address."
        self.fields["appPassword"].help_text = "Only with an app password. " + self.fields["appPassword"].help_text

    def clean(self):
        cleaned = super().clean()
        cleaned["method"] = method = self._method(cleaned)
        if method == APP_PASSWORD_METHOD and "appPassword" in cleaned and not cleaned["appPassword"]:
            self.add_error("appPassword", "Enter an app password (it looks like xxxx-xxxx-xxxx-xxxx).")
        identifier = cleaned.get("identifier", "")
        if method == SIGN_IN and "@" in identifier and "://" not in identifier:
            self.add_error("identifier", "Sign in with your handle (an email works only with an app password).")
        return cleaned

    def _method(self, cleaned) -> str:
        """An app password typed means the app-password flow; otherwise the choice made, and for a
        script that sent no choice, {"identifier"} alone signs in (issue 16)."""
        if not bluesky_oauth.enabled() or cleaned.get("appPassword"):
            return APP_PASSWORD_METHOD
        if cleaned.get("method"):
            return cleaned["method"]
        return APP_PASSWORD_METHOD if "appPassword" in self.data else SIGN_IN

    def clean_identifier(self):
        return self.cleaned_data["identifier"].strip().lstrip("@").lower()

    def clean_appPassword(self):
        value = self.cleaned_data["appPassword"].lower()
        if value and not APP_PASSWORD.match(value):
            # Refused before anything is sent, so a main password never leaves Hayon (case 29).
            raise forms.ValidationError("That is not an app password: it looks like xxxx-xxxx-xxxx-xxxx.")
        return value


class _Request(Request):
    """The SDK's transport, built from Hayon's httpx factory (timeouts, no redirects).

    The SDK wraps only httpx's timeouts and network errors. Any other httpx error (an oversized
    header is RemoteProtocolError, a broken gzip body DecodingError) escaped raw, and a body that
    claims JSON but is not (or nests too deep) escaped as ValueError: both became 500s (security
    case 45). Here they are the SDK's NetworkError and ModelError, which `sdk_error` maps.
    """

    def __init__(self):
        RequestBase.__init__(self)
        self._client_kwargs = {}
        self._client = http.httpx_client()

    def _send_request(self, method, url, **kwargs):
        try:
            return super()._send_request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise sdk.NetworkError() from exc

    def get(self, *args, **kwargs):
        try:
            return super().get(*args, **kwargs)
        except ValueError as exc:
            raise sdk.ModelError("the reply is not JSON") from exc

    def post(self, *args, **kwargs):
        try:
            return super().post(*args, **kwargs)
        except ValueError as exc:
            raise sdk.ModelError("the reply is not JSON") from exc


def sdk_client(pds: str) -> Client:
    return Client(base_url=pds, request=_Request())


class _DPoPRequest(_Request):
    """The SDK's transport for a Bluesky sign-in session: every call carries `Authorization: DPoP`
    and a fresh proof bound to the token, and retries once with the PDS's nonce (RFC 9449 §9)."""

    def __init__(self, auth: dict | None = None):
        super().__init__()
        self._session = dict(auth or {})  # a copy: the PDS's nonces are not part of the credential

    def _send_request(self, method, url, **kwargs):
        headers = {k: v for k, v in self.get_headers(kwargs.pop("headers", None)).items() if k.lower() != "authorization"}
        try:
            response = oauth_client.dpop_send(self._session, method, url, nonce_key="pdsNonce", client=self._client,
                                              access_token=self._session["accessToken"], headers=headers, **kwargs)
        except PlatformError as exc:
            raise sdk.NetworkError() from exc
        return _handle_response(response)  # the SDK's own status -> exception mapping

    def _new_instance(self):
        return type(self)(self._session)


def client_for(auth: dict) -> tuple[Client, dict]:
    """An SDK client for a stored session and the headers its calls carry: app password (Bearer)
    or Bluesky sign-in (DPoP, added per request by the transport)."""
    if bluesky_oauth.is_oauth(auth):
        return Client(base_url=auth["pds"], request=_DPoPRequest(auth)), {}
    return sdk_client(auth["pds"]), {"Authorization": f"Bearer {auth['accessJwt']}"}


def credential_due(auth: dict) -> bool:
    """The access token expires within RENEW_BEFORE (or when is unknown): renew first."""
    if bluesky_oauth.is_oauth(auth):
        return bluesky_oauth.access_due(auth, RENEW_BEFORE)
    return _due(auth["accessJwt"])


def method_extra(auth: dict) -> dict:
    """Public: how this connection signs in (the card says so; scripts see `authMethod`)."""
    return {"authMethod": bluesky_oauth.METHOD if bluesky_oauth.is_oauth(auth) else APP_PASSWORD_METHOD}


def session_expiry(auth: dict) -> datetime | None:
    """When the session dies unless renewed: the refresh JWT's or refresh token's expiry."""
    return bluesky_oauth.refresh_expiry(auth) if bluesky_oauth.is_oauth(auth) else jwt_expiry(auth["refreshJwt"])


def jwt_expiry(token: str) -> datetime | None:
    """A JWT's `exp`, or None when it has none that makes sense (whatever a PDS put there)."""
    try:
        payload = token.split(".")[1]
        exp = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
    except (AttributeError, IndexError, KeyError, ValueError, TypeError, RecursionError):
        return None
    # A NumericDate is a JSON number (RFC 7519 §2). A string, a time before 1970, or one past what a
    # datetime holds (exp=1e20 raised OverflowError, a 500) means "unknown".
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not 0 < exp <= MAX_EXP:
        return None
    return datetime.fromtimestamp(exp, tz=timezone.utc)


def sdk_error(exc: Exception, *, during: str) -> PlatformError:
    """Map an SDK exception to a PlatformError. `during`: 'login', 'refresh' or 'call'."""
    if isinstance(exc, httpx.HTTPError) or (isinstance(exc, sdk.NetworkError) and getattr(exc, "response", None) is None):
        return PlatformError(Kind.UNAVAILABLE, "Bluesky could not be reached. Please try again.")
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    content = getattr(response, "content", None)
    name = getattr(content, "error", None) or ""
    if name == "AuthFactorTokenRequired":
        return PlatformError(Kind.REJECTED, "This account asks for an email code at sign-in. Connect with an app password instead.", status=status, code=name)
    if name in ("AccountTakedown", "AccountDeactivated"):
        return PlatformError(Kind.REVOKED, "Bluesky says this account is suspended or deactivated.", status=status, code=name)
    if status == 429:
        return PlatformError(Kind.RATE_LIMITED, "Bluesky is rate limiting sign-ins; try again in a few minutes.", status=status, code=name)
    if status is not None and status >= 500 or isinstance(exc, sdk.NetworkError):
        return PlatformError(Kind.UNAVAILABLE, f"Bluesky is having trouble (HTTP {status}).", status=status, code=name)
    if during == "login" and status in (400, 401, 403):
        return PlatformError(Kind.REJECTED, WRONG_CREDENTIALS, status=status, code=name)
    if during == "refresh" and name in ("ExpiredToken", "InvalidToken"):
        return PlatformError(Kind.EXPIRED, "The Bluesky session has ended (app password revoked or session expired). Reconnect.", status=status, code=name)
    if status in (401, 403) or name in ("ExpiredToken", "InvalidToken", "AccountNotFound"):
        return PlatformError(Kind.REVOKED, "Bluesky no longer accepts Hayon's session. Reconnect.", status=status, code=name)
    return PlatformError(Kind.BAD_REPLY, "Bluesky sent a reply Hayon could not use.", status=status, code=name or None)


def is_expired_token(exc: Exception) -> bool:
    return getattr(getattr(getattr(exc, "response", None), "content", None), "error", None) == "ExpiredToken"


class BlueskyProvider(BlueskyOAuth, BlueskyPublishing, Provider):
    name = "bluesky"
    label = "Bluesky"
    color = "#1185fe"
    icon = "B"
    summary = "Bluesky or any AT Protocol server: sign in with Bluesky, or use an app password."
    connect_form = AppPasswordForm
    reconnect_initial = {"identifier": "handle"}
    credential_connect = True
    rotates_credentials = True  # refreshSession rotates the refresh JWT (platform-apis.md §2.3)
    revokes_single_credential = True  # deleteSession ends the one session it is given
    server_field = "pds"  # the account's PDS: any host its owner chose
    connect_rate_limits = {"user": (10, 300), "ip": (20, 300), "identifier": (10, 300)}
    rate_limit_field = "identifier"
    renew_window = timedelta(days=30)  # renew long before the 90-day refresh JWT runs out

    # -- connecting ----------------------------------------------------------------------------------
    def connect_with_credentials(self, *, data: dict) -> Connection:
        identifier = data["identifier"]
        pds = atproto_identity.pds_for_identifier(identifier) or settings.BLUESKY_SERVICE_URL.rstrip("/")
        try:
            session = sdk_client(pds).com.atproto.server.create_session(
                {"identifier": identifier, "password": data["appPassword"]}
            )
        except (sdk.AtProtocolError, ValueError) as exc:
            raise sdk_error(exc, during="login") from None
        try:
            return self._connect_session(session, logged_in_at=pds)
        except Exception as exc:  # noqa: BLE001 -- a reply nobody foresaw is a bad reply, not a 500
            _end_session(pds, session.refresh_jwt)  # nothing of it is kept: leave no live session behind
            if isinstance(exc, PlatformError):
                raise
            log.info("bluesky connect failed after sign-in: %s", type(exc).__name__)
            raise sdk_error(exc, during="call") from None

    def _connect_session(self, session, *, logged_in_at: str) -> Connection:
        if session.active is False:
            raise PlatformError(Kind.REJECTED, "Bluesky says this account is not active.", code=_text(session.status, 40) or None)
        # The DID and handle are the PDS's own claims and its didDoc is self-reported: who the account
        # is, and where it lives, come from resolving them independently (security case 44).
        identity = atproto_identity.verify_session(did=session.did, handle=session.handle,
                                                   logged_in_at=logged_in_at, access_jwt=session.access_jwt)
        auth = {"accessJwt": session.access_jwt, "refreshJwt": session.refresh_jwt, "pds": identity.pds}
        return self._connection(auth, did=identity.did, handle=identity.handle)

    def _connection(self, auth: dict, *, did: str, handle: str) -> Connection:
        """`handle` is one already checked against the DID (at connect, or the stored one)."""
        if bluesky_oauth.is_oauth(auth):
            self.confirm_session(auth, did=did)
        profile = self.fetch_profile(auth, did=did, handle=handle)
        profile.handle, notice = self.verified_handle(did=did, reported=profile.handle, known=handle)
        return Connection(
            profile=profile,
            account_key=did,
            identifiers={"did": did, "handle": profile.handle},
            auth=auth,
            expires_at=session_expiry(auth),  # the session dies unless renewed before this
            extra=method_extra(auth),
            notice=notice,
        )

    def verified_handle(self, *, did: str, reported: str, known: str) -> tuple[str, str]:
        """The handle to store, and a notice when the reported one was not believed.

        Handles change (issue 12 item 15), and the AppView or PDS reports the new one; it is
        accepted only once it resolves to the DID and the DID document claims it back. Otherwise
        the last verified handle stays, and the card says why.
        """
        reported = (reported or "").lower()
        if not reported or reported == known:
            return known, ""
        if atproto_identity.handle_points_to(reported, did):
            return reported, ""
        shown = f"@{reported}" if is_valid_handle(reported) else "a handle"
        log.info("bluesky: a reported handle does not resolve to its DID; keeping the verified one")
        kept = f"; Hayon keeps @{known}" if known else ""
        return known, f"Bluesky reports {shown} for this account, but it does not point back to it{kept}."

    def fetch_profile(self, auth: dict, *, did: str, handle: str) -> Profile:
        """Through the AppView when the PDS proxies to one, else from the repo's own profile record."""
        client, headers = client_for(auth)
        try:
            view = client.app.bsky.actor.get_profile({"actor": did}, headers=headers)
            return Profile(
                display_name=_text(view.display_name, DISPLAY_NAME_MAX) or handle,
                handle=_text(view.handle, 253) or handle,  # what the AppView reports: checked by the caller
                avatar=_web_url(view.avatar),
                description=_text(view.description, DESCRIPTION_MAX),
            )
        except sdk.BadRequestError as exc:  # a bare PDS: 400 "No service configured for ..."
            if is_expired_token(exc):
                raise
        except sdk.RequestException as exc:  # 404/501 "method not implemented"
            if getattr(exc.response, "status_code", 500) >= 500 and exc.response.status_code != 501:
                raise
        return self._profile_from_record(client, did=did, handle=handle, headers=headers, pds=auth["pds"])

    def _profile_from_record(self, client, *, did, handle, headers, pds) -> Profile:
        reported = _repo_handle(client, did=did) or handle  # no AppView to say it: the PDS does
        try:
            record = client.com.atproto.repo.get_record(
                {"repo": did, "collection": "app.bsky.actor.profile", "rkey": "self"}, headers=headers
            ).value
        except sdk.BadRequestError as exc:
            if is_expired_token(exc):
                raise
            return Profile(display_name=handle, handle=reported)  # no profile record yet
        # Any JSON may come back here (the SDK keeps a record that fails validation as a DotDict).
        value = _as_dict(record)
        avatar = value.get("avatar")
        ref = avatar.get("ref") if isinstance(avatar, dict) else None
        cid = ref.get("$link") if isinstance(ref, dict) else None
        return Profile(
            display_name=_text(value.get("displayName"), DISPLAY_NAME_MAX) or handle,
            handle=reported,
            avatar=f"{pds}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}" if isinstance(cid, str) and CID.match(cid) else "",
            description=_text(value.get("description"), DESCRIPTION_MAX),
        )

    # -- upkeep --------------------------------------------------------------------------------------
    def refresh(self, *, doc: dict, auth: dict) -> Connection:
        renewed = None
        try:
            if credential_due(auth):
                auth = renewed = self.renew(auth)
            try:
                return self._refreshed(doc, auth)
            except sdk.BadRequestError as exc:
                if not is_expired_token(exc) or renewed:
                    raise
                auth = renewed = self.renew(auth)  # the access JWT expired early: renew once, retry
                return self._refreshed(doc, auth)
        except Exception as exc:  # noqa: BLE001 -- whatever failed, a rotated session must be kept
            error = exc if isinstance(exc, PlatformError) else _call_error(exc)
            if renewed:
                error.replacement = self._kept(doc, renewed)
            if error is exc:
                raise
            raise error from None

    def _refreshed(self, doc: dict, auth: dict) -> Connection:
        connection = self._connection(auth, did=doc["did"], handle=doc.get("handle", ""))
        connection.identifiers["pds"] = auth["pds"]  # public: where upkeep's per-server share is counted
        return connection

    def _kept(self, doc: dict, auth: dict) -> Connection:
        """The connection as stored, with a renewed session: what a failure after renewal keeps."""
        return Connection(
            profile=profile_from(doc), account_key=doc["did"],
            identifiers={"did": doc["did"], "handle": doc.get("handle", ""), "pds": auth["pds"]},
            auth=auth, expires_at=session_expiry(auth), extra=method_extra(auth),
        )

    def upkeep(self, *, doc: dict, auth: dict) -> Connection:
        """One call: refreshSession keeps the session alive (a new 90-day refresh JWT) and proves it works."""
        return self._kept(doc, self.renew(auth))

    def renew(self, auth: dict) -> dict:
        if bluesky_oauth.is_oauth(auth):
            return self.oauth_renew(auth)
        try:
            session = sdk_client(auth["pds"]).com.atproto.server.refresh_session(
                headers={"Authorization": f"Bearer {auth['refreshJwt']}"}
            )
        except sdk.AtProtocolError as exc:
            raise sdk_error(exc, during="refresh") from None
        if not isinstance(session.refresh_jwt, str) or not isinstance(session.access_jwt, str):
            raise PlatformError(Kind.BAD_REPLY, "Bluesky renewed the session without its tokens.")
        return {**auth, "accessJwt": session.access_jwt, "refreshJwt": session.refresh_jwt}

    def revoke(self, *, doc: dict, auth: dict) -> None:
        if bluesky_oauth.is_oauth(auth):
            return self.oauth_revoke(auth)
        try:
            sdk_client(auth["pds"]).com.atproto.server.delete_session(
                headers={"Authorization": f"Bearer {auth['refreshJwt']}"}
            )
        except sdk.AtProtocolError as exc:
            error = sdk_error(exc, during="refresh")
            if error.kind is not Kind.EXPIRED:  # an already-dead session is as good as revoked
                raise error from None


def _call_error(exc: Exception) -> PlatformError:
    """An SDK error, a reply that failed validation, or anything else the SDK let through."""
    if isinstance(exc, (sdk.AtProtocolError, ValueError)):
        return sdk_error(exc, during="call")
    return PlatformError(Kind.UNEXPECTED, "Bluesky sent a reply Hayon could not use.")


def _due(access_jwt: str) -> bool:
    expiry = jwt_expiry(access_jwt)
    return expiry is None or expiry - datetime.now(timezone.utc) < RENEW_BEFORE


def _as_dict(value) -> dict:
    """A record as a plain dict ({} for anything that is not an object)."""
    if isinstance(value, dict):
        return value
    # The SDK hands back unknown-typed JSON as a DotDict and records as pydantic models.
    to_dict = getattr(value, "to_dict", None)
    dump = getattr(value, "model_dump", None)
    try:
        result = to_dict() if callable(to_dict) else dump(by_alias=True) if callable(dump) else {}
    except Exception:  # noqa: BLE001 -- a model that cannot dump itself is just an empty record
        return {}
    return result if isinstance(result, dict) else {}


def _text(value, limit: int) -> str:
    """A profile field as text: anything that is not a string is no text; long text is cut."""
    return value[:limit] if isinstance(value, str) else ""


def _web_url(value) -> str:
    """An http(s) URL as the page may link it; anything else (javascript:, a list, ...) is dropped."""
    text = value if isinstance(value, str) and len(value) <= URL_MAX else ""
    return text if text.startswith(("https://", "http://")) else ""


def _repo_handle(client, *, did: str) -> str:
    """The handle the PDS reports for the repo (com.atproto.repo.describeRepo), or ""."""
    try:
        return _text(client.com.atproto.repo.describe_repo({"repo": did}).handle, 253)
    except Exception:  # noqa: BLE001 -- only a hint, checked before use; the stored handle stays
        return ""


def _end_session(pds: str, refresh_jwt) -> None:
    """deleteSession, best effort, for a session Hayon will not keep (security case 44)."""
    try:
        sdk_client(pds).com.atproto.server.delete_session(headers={"Authorization": f"Bearer {refresh_jwt}"})
    except Exception as exc:  # noqa: BLE001 -- the connect's own error is what the user must see
        log.info("bluesky: deleteSession after a refused connect failed: %s", type(exc).__name__)
