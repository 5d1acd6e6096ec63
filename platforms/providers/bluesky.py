"""Bluesky and any AT Protocol PDS: app-password sessions through the `atproto` SDK.

Docs: https://docs.bsky.app/docs/api/com-atproto-server-create-session (and refreshSession,
deleteSession), https://docs.bsky.app/docs/advanced-guides/rate-limits
Errors (shared/platform-apis.md §2.4): an expired access JWT is 400 ExpiredToken (not 401);
ExpiredToken/InvalidToken on refreshSession means the session is gone.
"""
import base64
import json
import re
from datetime import datetime, timedelta, timezone

from atproto import Client
from atproto_client import exceptions as sdk
from atproto_client.request import Request, RequestBase
from django import forms
from django.conf import settings

from .. import http
from ..documents import Connection, Profile, profile_from
from ..errors import Kind, PlatformError
from . import atproto_identity
from .base import Provider

APP_PASSWORD = re.compile(r"^[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4}$")
RENEW_BEFORE = timedelta(minutes=15)  # the SDK's own margin for renewing an access JWT
WRONG_CREDENTIALS = "That handle and app password do not match a Bluesky account."


class AppPasswordForm(forms.Form):
    identifier = forms.CharField(
        label="Handle or email", max_length=253,
        error_messages={"required": "Enter your Bluesky handle or email."},
        widget=forms.TextInput(attrs={"placeholder": "you.bsky.social", "autocomplete": "username"}),
    )
    appPassword = forms.CharField(
        label="App password", max_length=40, strip=True,
        error_messages={"required": "Enter an app password (it looks like xxxx-xxxx-xxxx-xxxx)."},
        widget=forms.PasswordInput(attrs={"placeholder": "xxxx-xxxx-xxxx-xxxx", "autocomplete": "off"}),
        help_text='Create one in Bluesky under <a href="https://bsky.app/settings/app-passwords" '
        'target="_blank" rel="noopener noreferrer">Settings › Privacy and security › App passwords</a>. '
        "Never use your main password.",
    )

    def clean_identifier(self):
        return self.cleaned_data["identifier"].strip().lstrip("@").lower()

    def clean_appPassword(self):
        value = self.cleaned_data["appPassword"].lower()
        if not APP_PASSWORD.match(value):
            # Refused before anything is sent, so a main password never leaves Hayon (case 29).
            raise forms.ValidationError("That is not an app password: it looks like xxxx-xxxx-xxxx-xxxx.")
        return value


class _Request(Request):
    """The SDK's transport, built from Hayon's httpx factory (timeouts, no redirects)."""

    def __init__(self):
        RequestBase.__init__(self)
        self._client_kwargs = {}
        self._client = http.httpx_client()


def sdk_client(pds: str) -> Client:
    return Client(base_url=pds, request=_Request())


def jwt_expiry(token: str) -> datetime | None:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return datetime.fromtimestamp(int(claims["exp"]), tz=timezone.utc)
    except (IndexError, KeyError, ValueError, TypeError):
        return None


def sdk_error(exc: Exception, *, during: str) -> PlatformError:
    """Map an SDK exception to a PlatformError. `during`: 'login', 'refresh' or 'call'."""
    if isinstance(exc, (sdk.InvokeTimeoutError, sdk.NetworkError)) and getattr(exc, "response", None) is None:
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


class BlueskyProvider(Provider):
    name = "bluesky"
    label = "Bluesky"
    color = "#1185fe"
    icon = "B"
    summary = "Bluesky or any AT Protocol server, with an app password."
    connect_form = AppPasswordForm
    credential_connect = True
    refresh_under_lock = True  # refreshSession rotates the refresh JWT (platform-apis.md §2.3)
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
        if session.active is False:
            raise PlatformError(Kind.REJECTED, "Bluesky says this account is not active.", code=session.status)
        # The entryway (bsky.social) hands back the account's real PDS in the DID document.
        home = atproto_identity.checked_pds(atproto_identity.pds_from_document(_as_dict(session.did_doc))) or pds
        auth = {"accessJwt": session.access_jwt, "refreshJwt": session.refresh_jwt, "pds": home}
        try:
            return self._connection(auth, did=session.did, handle=session.handle)
        except (sdk.AtProtocolError, ValueError) as exc:
            raise sdk_error(exc, during="call") from None

    def _connection(self, auth: dict, *, did: str, handle: str) -> Connection:
        profile = self.fetch_profile(auth, did=did, handle=handle)
        return Connection(
            profile=profile,
            account_key=did,
            identifiers={"did": did, "handle": handle},
            auth=auth,
            expires_at=jwt_expiry(auth["refreshJwt"]),  # the session dies unless renewed before this
        )

    def fetch_profile(self, auth: dict, *, did: str, handle: str) -> Profile:
        """Through the AppView when the PDS proxies to one, else from the repo's own profile record."""
        client = sdk_client(auth["pds"])
        headers = {"Authorization": f"Bearer {auth['accessJwt']}"}
        try:
            view = client.app.bsky.actor.get_profile({"actor": did}, headers=headers)
            return Profile(view.display_name or handle, view.handle or handle, view.avatar or "", view.description or "")
        except sdk.BadRequestError as exc:  # a bare PDS: 400 "No service configured for ..."
            if is_expired_token(exc):
                raise
        except sdk.RequestException as exc:  # 404/501 "method not implemented"
            if getattr(exc.response, "status_code", 500) >= 500 and exc.response.status_code != 501:
                raise
        return self._profile_from_record(client, did=did, handle=handle, headers=headers, pds=auth["pds"])

    def _profile_from_record(self, client, *, did, handle, headers, pds) -> Profile:
        try:
            record = client.com.atproto.repo.get_record(
                {"repo": did, "collection": "app.bsky.actor.profile", "rkey": "self"}, headers=headers
            ).value
        except sdk.BadRequestError as exc:
            if is_expired_token(exc):
                raise
            return Profile(display_name=handle, handle=handle)  # no profile record yet
        value = _as_dict(record)
        avatar = value.get("avatar") or {}
        cid = ((avatar.get("ref") or {}).get("$link")) if isinstance(avatar, dict) else None
        return Profile(
            display_name=value.get("displayName") or handle,
            handle=handle,
            avatar=f"{pds}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}" if cid else "",
            description=value.get("description") or "",
        )

    # -- upkeep --------------------------------------------------------------------------------------
    def refresh(self, *, doc: dict, auth: dict) -> Connection:
        renewed = None
        try:
            if _due(auth["accessJwt"]):
                auth = renewed = self.renew(auth)
            try:
                return self._connection(auth, did=doc["did"], handle=doc.get("handle", ""))
            except sdk.BadRequestError as exc:
                if not is_expired_token(exc) or renewed:
                    raise
                auth = renewed = self.renew(auth)  # the access JWT expired early: renew once, retry
                return self._connection(auth, did=doc["did"], handle=doc.get("handle", ""))
        except PlatformError as error:
            error.replacement_auth = renewed
            raise
        except (sdk.AtProtocolError, ValueError) as exc:  # ValueError: a reply that fails validation
            error = sdk_error(exc, during="call")
            error.replacement_auth = renewed
            raise error from None

    def upkeep(self, *, doc: dict, auth: dict) -> Connection:
        """One call: refreshSession keeps the session alive (a new 90-day refresh JWT) and proves it works."""
        auth = self.renew(auth)
        return Connection(
            profile=profile_from(doc), account_key=doc["did"],
            identifiers={"did": doc["did"], "handle": doc.get("handle", "")},
            auth=auth, expires_at=jwt_expiry(auth["refreshJwt"]),
        )

    def renew(self, auth: dict) -> dict:
        try:
            session = sdk_client(auth["pds"]).com.atproto.server.refresh_session(
                headers={"Authorization": f"Bearer {auth['refreshJwt']}"}
            )
        except sdk.AtProtocolError as exc:
            raise sdk_error(exc, during="refresh") from None
        return {**auth, "accessJwt": session.access_jwt, "refreshJwt": session.refresh_jwt}

    def revoke(self, *, doc: dict, auth: dict) -> None:
        try:
            sdk_client(auth["pds"]).com.atproto.server.delete_session(
                headers={"Authorization": f"Bearer {auth['refreshJwt']}"}
            )
        except sdk.AtProtocolError as exc:
            error = sdk_error(exc, during="refresh")
            if error.kind is not Kind.EXPIRED:  # an already-dead session is as good as revoked
                raise error from None


def _due(access_jwt: str) -> bool:
    expiry = jwt_expiry(access_jwt)
    return expiry is None or expiry - datetime.now(timezone.utc) < RENEW_BEFORE


def _as_dict(value) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    # The SDK hands back unknown-typed JSON as a DotDict and records as pydantic models.
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    dump = getattr(value, "model_dump", None)
    return dump(by_alias=True) if callable(dump) else {}
