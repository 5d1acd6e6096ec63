"""Bluesky sign-in: the AT Protocol OAuth side of the Bluesky provider (issue 16).

The provider (bluesky.py) mixes this in: `begin` and `finish` are the OAuth flow, the rest serve
refresh, upkeep and disconnect for connections whose stored auth has `"method": "oauth"`.
The protocol itself is in atproto_oauth/ (discovery, DPoP, PAR, tokens).

Callback checks (https://atproto.com/specs/oauth#authorization-response):
- `iss` must be the authorization server this flow began with (RFC 9207; mix-up, security case 39),
- the token's `sub` must be the DID resolved before sign-in (when the user typed a handle or DID),
- that DID's own document must name the PDS the flow began with (and so its authorization server),
- the state is single-use (oauth_state.consume), so a replayed callback is refused before any call.
A token issued but not kept (a failed check) is revoked at once.
"""
import logging
from datetime import datetime, timedelta, timezone

from django.conf import settings

from ..errors import FlowError, Kind, PlatformError
from . import atproto_identity as identity
from .atproto_oauth import client as oauth_client
from .atproto_oauth import discovery
from .base import Authorization, single_param

log = logging.getLogger(__name__)
METHOD = "oauth"


def is_oauth(auth: dict) -> bool:
    return auth.get("method") == METHOD


def enabled() -> bool:
    """Sign-in is offered: switched on, and Hayon can be a client (loopback, or keys configured).
    Otherwise the connect form is the app-password form it always was."""
    return bool(settings.BLUESKY_OAUTH) and oauth_client.is_configured()


def refresh_expiry(auth: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(auth["refreshExpiresAt"])
    except (KeyError, TypeError, ValueError):
        return None


def access_due(auth: dict, margin) -> bool:
    try:
        expires = datetime.fromisoformat(auth["accessExpiresAt"])
    except (KeyError, TypeError, ValueError):
        return True
    return expires - datetime.now(timezone.utc) < margin


class BlueskyOAuth:
    """Methods for BlueskyProvider; `_connection` comes from the provider."""

    def connects_within_request(self, data: dict) -> bool:
        """An app password connects within the request; Bluesky sign-in sends the browser away."""
        return data.get("method", "app_password") == "app_password"

    def connection_method(self, doc: dict) -> str:
        return "Bluesky sign-in" if doc.get("authMethod") == METHOD else "App password"

    def switch_offer(self, doc: dict) -> dict | None:
        """An app-password connection may switch to sign-in: one flow, and store_connection then
        ends the app-password session it replaces (deleteSession)."""
        if doc.get("authMethod") == METHOD or not enabled() or not oauth_client.is_configured():
            return None
        return {"label": "Switch to Bluesky sign-in",
                "fields": {"method": "signin", "identifier": doc.get("handle") or doc.get("did", "")}}

    def begin(self, *, state: str, data: dict) -> Authorization:
        if not oauth_client.is_configured():
            raise FlowError("not_configured", "Bluesky sign-in is not configured (ATPROTO_CLIENT_KEYS). "
                                              "Use an app password instead.", status=503)
        target = discovery.resolve(data["identifier"])
        session = oauth_client.new_session(issuer=target.issuer, server=target.server,
                                           scope=discovery.scope_for(target.server))
        verifier, challenge = oauth_client.pkce_pair()
        url = oauth_client.push_authorization(session, server=target.server, state=state, challenge=challenge,
                                              login_hint=target.login_hint)
        payload = {"session": session, "verifier": verifier, "did": target.did, "handle": target.handle,
                   "pds": target.pds}
        return Authorization(url=url, payload=payload)

    def finish(self, *, payload: dict, query):
        session = payload["session"]
        code = oauth_client.check_callback(lambda name: single_param(query, name), issuer=session["issuer"])
        session.update(oauth_client.exchange_code(session, code=code, verifier=payload["verifier"]))
        try:
            did, handle, pds = self._signed_in_identity(session["sub"], payload)
            auth = {**session, "method": METHOD, "pds": pds,
                    "refreshExpiresAt": oauth_client.refresh_expiry().isoformat()}
            return self._connection(auth, did=did, handle=handle)
        except Exception as exc:
            _revoke_quietly(session)  # nothing of it is kept: leave no live grant behind
            if isinstance(exc, (PlatformError, FlowError)):
                raise
            from . import bluesky  # the provider's module imports this one

            raise bluesky._call_error(exc) from None

    def _signed_in_identity(self, sub, payload: dict) -> tuple[str, str, str]:
        """(DID, verified handle or "", PDS) of the account that signed in, or PlatformError."""
        if not isinstance(sub, str) or not identity.DID.match(sub):
            raise PlatformError(Kind.BAD_REPLY, "Bluesky did not name a valid account (DID). Nothing was connected.")
        if payload["did"] and sub != payload["did"]:
            log.warning("refused a Bluesky sign-in: the token's sub is not the DID resolved before sign-in")
            raise PlatformError(Kind.REJECTED, "You signed in as a different account than the one you typed. "
                                               "Nothing was connected; connect again with that account's handle.")
        document = identity.did_document(sub)
        if document is None:
            raise PlatformError(Kind.UNAVAILABLE, "Hayon could not look up this account's identity record to check "
                                                  "it. Nothing was connected; please try again.")
        home = identity.checked_pds(identity.pds_from_document(document))
        if home is None or not identity.same_server(home, payload["pds"]):
            log.warning("refused a Bluesky sign-in: the DID document names another PDS")
            raise PlatformError(Kind.REJECTED, "This account's identity record names another server than the one "
                                               "that signed it in. Nothing was connected.")
        candidates = [payload["handle"]] if payload["handle"] else sorted(identity.handles_claimed(document))
        handle = next((h for h in candidates if identity.handle_points_to(h, sub, document)), "")
        return sub, handle, home

    # -- upkeep and disconnect (called by the provider for OAuth connections) --------------------------
    def confirm_session(self, auth: dict, *, did: str) -> None:
        """One authenticated call (getSession) proves the DPoP-bound token works and is this DID's:
        a profile can be read without any token, so reading it proves nothing."""
        from . import bluesky  # the provider's module imports this one

        client, _ = bluesky.client_for(auth)
        session_did = client.com.atproto.server.get_session().did
        if session_did != did:
            raise PlatformError(Kind.REJECTED, "Bluesky says this session belongs to another account. Reconnect.")

    def next_check_at(self, connection):
        """A sign-in's refresh token lives two weeks (public client) or three months, less than the
        app-password renew_window: look again at half its remaining life, so upkeep renews it with
        time to spare, and never later than check_interval."""
        if not (is_oauth(connection.auth) and connection.expires_at):
            return super().next_check_at(connection)
        now = datetime.now(timezone.utc)
        halfway = now + (connection.expires_at - now) / 2
        return min(now + self.check_interval, max(halfway, now + timedelta(minutes=5)))

    def oauth_renew(self, auth: dict) -> dict:
        session = dict(auth)
        tokens = oauth_client.refresh(session)
        # The server's nonce comes back in session; the refresh token is new (single-use).
        return {**session, **tokens, "refreshExpiresAt": oauth_client.refresh_expiry().isoformat()}

    def oauth_revoke(self, auth: dict) -> None:
        try:
            oauth_client.revoke(dict(auth))
        except PlatformError as error:
            if error.code != "invalid_grant" and error.kind is not Kind.EXPIRED:
                raise


def _revoke_quietly(session: dict) -> None:
    try:
        oauth_client.revoke(dict(session))
    except Exception as exc:  # noqa: BLE001 -- the connect's own error is what the user must see
        log.info("bluesky: revoking an unkept sign-in failed: %s", type(exc).__name__)
