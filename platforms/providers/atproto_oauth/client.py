"""Hayon as an AT Protocol OAuth client: PAR, code exchange, refresh, revocation, DPoP calls.

Which client Hayon is (https://atproto.com/specs/oauth#clients):
- PUBLIC_URL on http://127.0.0.1 or [::1] (development, tests): the loopback client form
  `http://localhost?redirect_uri=...&scope=...`, a public client (no client authentication; the
  reference server limits its sessions to two weeks).
- Otherwise a confidential client: its client_id is PUBLIC_URL/oauth/client-metadata.json, and it
  authenticates with private_key_jwt (ES256) signed by the newest key of ATPROTO_CLIENT_KEYS. A
  session stays bound to the key it began with (its `kid` is stored), as the spec asks.
Every token request and PDS call carries a DPoP proof from the connection's own key, and retries
once with the server's nonce on `use_dpop_nonce` (RFC 9449 §8, §9).
"""
import base64
import hashlib
import json
import logging
import secrets
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode, urlsplit

import httpx
from django.conf import settings

from ... import http, replies
from ...errors import FlowError, Kind, PlatformError
from . import keys

log = logging.getLogger(__name__)
LABEL = "The Bluesky sign-in server"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LOOPBACK_HOSTS = ("127.0.0.1", "[::1]")
# How long a refresh token lives at the reference server (@atproto/oauth-provider REFRESH_LIFETIME):
# two weeks for public clients, three months for confidential ones. Renewed well before.
REFRESH_LIFETIME = {"public": timedelta(weeks=2), "confidential": timedelta(days=90)}
METADATA_SCOPE = "atproto transition:generic repo:app.bsky.feed.post blob:*/*"  # all Hayon may ask for


# -- who Hayon is -----------------------------------------------------------------------------------
def callback_url() -> str:
    return f"{settings.PUBLIC_URL}/api/platform/bluesky/callback"


def is_loopback() -> bool:
    parts = urlsplit(settings.PUBLIC_URL)
    return parts.scheme == "http" and parts.netloc.rsplit(":", 1)[0] in LOOPBACK_HOSTS


def client_keys() -> list[dict]:
    """ATPROTO_CLIENT_KEYS: private ES256 JWKs, newest first, each with a distinct `kid` (the server
    binds a session to the key that began it, and Hayon finds that key again by it)."""
    value = settings.ATPROTO_CLIENT_KEYS
    try:
        found = json.loads(value) if isinstance(value, str) and value.strip() else list(value or [])
        if not isinstance(found, list):
            raise ValueError("not a list")
        for jwk in found:
            keys.check_private_jwk(jwk)
            if not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
                raise ValueError("a key has no kid")
    except (TypeError, ValueError) as exc:
        log.error("ATPROTO_CLIENT_KEYS is unusable: %s", type(exc).__name__)
        raise PlatformError(Kind.NOT_CONFIGURED, "Bluesky sign-in is misconfigured (ATPROTO_CLIENT_KEYS).") from None
    return found


def client_metadata() -> dict:
    """What PUBLIC_URL/oauth/client-metadata.json serves (https://atproto.com/specs/oauth#client-id-metadata-document)."""
    base = settings.PUBLIC_URL
    return {
        "client_id": f"{base}/oauth/client-metadata.json",
        "client_name": "Hayon",
        "client_uri": base,
        "application_type": "web",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": [callback_url()],
        "scope": METADATA_SCOPE,
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "ES256",
        "dpop_bound_access_tokens": True,
        "jwks_uri": f"{base}/oauth/jwks.json",
    }


def jwks() -> dict:
    """The public halves of every client key, so sessions bound to an older one keep working."""
    return {"keys": [keys.public_jwk(jwk) for jwk in client_keys()]}


def client_id_for(scope: str) -> str:
    if is_loopback():
        return "http://localhost?" + urlencode({"redirect_uri": callback_url(), "scope": scope})
    return client_metadata()["client_id"]


def is_configured() -> bool:
    try:
        return is_loopback() or bool(client_keys())
    except PlatformError:
        return False


def _client_auth(session: dict) -> dict:
    """The client authentication fields for a token-endpoint request of this session."""
    if not session["clientKid"]:  # the loopback client is public: no client authentication
        return {"client_id": session["clientId"]}
    jwk = next((k for k in client_keys() if k.get("kid") == session["clientKid"]), None)
    if jwk is None:  # the key was retired: the server ties the session to it, so it is over
        raise PlatformError(Kind.EXPIRED, "Hayon's sign-in key for this Bluesky session was retired. Reconnect.")
    assertion = keys.client_assertion(jwk, client_id=session["clientId"], audience=session["issuer"])
    return {"client_id": session["clientId"], "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}


def new_session(*, issuer: str, server: dict, scope: str) -> dict:
    """The flow's client side: which client, which DPoP key, where the endpoints are."""
    kid = None if is_loopback() else client_keys()[0]["kid"]
    return {
        "issuer": issuer,
        "clientId": client_id_for(scope),
        "clientKid": kid,
        "dpopKey": keys.new_private_jwk(),  # one key per flow and connection, stored encrypted
        "dpopNonce": None,
        "tokenEndpoint": server["token_endpoint"],
        "revocationEndpoint": server.get("revocation_endpoint"),
        "scope": scope,
    }


# -- DPoP requests ----------------------------------------------------------------------------------
def _is_nonce_error(response: httpx.Response) -> bool:
    """The server asks for a (new) nonce: 400 `use_dpop_nonce` from an authorization server, 401
    with `WWW-Authenticate: DPoP error="use_dpop_nonce"` from a resource server."""
    if "DPoP-Nonce" not in response.headers:
        return False
    if response.status_code == 401:
        return "use_dpop_nonce" in response.headers.get("WWW-Authenticate", "")
    if response.status_code == 400:
        try:
            return replies.json_object(response.content, label=LABEL).get("error") == "use_dpop_nonce"
        except PlatformError:
            return False
    return False


def dpop_send(session: dict, method: str, url: str, *, nonce_key: str = "dpopNonce", access_token: str | None = None,
              client: httpx.Client | None = None, **kwargs) -> httpx.Response:
    """One request with a DPoP proof; on `use_dpop_nonce` once more with the nonce the server sent.

    The last nonce a server sent is kept in `session[nonce_key]` for the next request.
    """
    headers = dict(kwargs.pop("headers", None) or {})
    if access_token:
        headers["Authorization"] = f"DPoP {access_token}"
    own = client is None
    client = client or http.httpx_client()
    try:
        for attempt in (1, 2):
            headers["DPoP"] = keys.dpop_proof(session["dpopKey"], method=method, url=url,
                                              nonce=session.get(nonce_key), access_token=access_token)
            response = client.request(method, url, headers=headers, **kwargs)
            if response.headers.get("DPoP-Nonce"):
                retry = attempt == 1 and _is_nonce_error(response)
                session[nonce_key] = response.headers["DPoP-Nonce"][:200]
                if retry:
                    continue
            return response
    except httpx.HTTPError as exc:
        if isinstance(exc, PlatformError):
            raise exc from None
        raise PlatformError(Kind.UNAVAILABLE, f"{LABEL} could not be reached.") from None
    finally:
        if own:
            client.close()
    return response  # pragma: no cover -- the loop always returns


def _token_error(response: httpx.Response, *, during: str) -> PlatformError:
    try:
        code = replies.json_object(response.content, label=LABEL).get("error")
    except PlatformError:
        code = None
    code = code if isinstance(code, str) and len(code) <= 64 else None
    status = response.status_code
    if status == 429:
        return PlatformError(Kind.RATE_LIMITED, f"{LABEL} is rate limiting Hayon; try again later.", status=status, code=code)
    if status >= 500:
        return PlatformError(Kind.UNAVAILABLE, f"{LABEL} is having trouble (HTTP {status}).", status=status, code=code)
    if code == "invalid_grant" and during == "refresh":
        return PlatformError(Kind.EXPIRED, "The Bluesky sign-in has ended (revoked or expired). Reconnect.", status=status, code=code)
    if code == "invalid_grant":
        return PlatformError(Kind.REJECTED, "Bluesky did not accept that sign-in (it may have been used already). "
                                            "Please connect again.", status=status, code=code)
    return PlatformError(Kind.REJECTED if status in (400, 401, 403) else Kind.BAD_REPLY,
                         f"{LABEL} refused Hayon's request (HTTP {status}{', ' + code if code else ''}).",
                         status=status, code=code)


# -- the flow ---------------------------------------------------------------------------------------
def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)  # 64 characters, within RFC 7636's 43..128
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def push_authorization(session: dict, *, server: dict, state: str, challenge: str, login_hint: str | None) -> str:
    """PAR (RFC 9126) with DPoP even where not demanded; returns the browser's authorization URL."""
    form = {
        "response_type": "code", "redirect_uri": callback_url(), "scope": session["scope"], "state": state,
        "code_challenge": challenge, "code_challenge_method": "S256", **_client_auth(session),
    }
    if login_hint:
        form["login_hint"] = login_hint
    response = dpop_send(session, "POST", server["pushed_authorization_request_endpoint"], data=form)
    if response.status_code not in (200, 201):
        raise _token_error(response, during="par")
    data = replies.json_object(response.content, label=LABEL)
    request_uri = replies.text(data, "request_uri", label=LABEL, required=True, max_length=1024)
    query = urlencode({"client_id": session["clientId"], "request_uri": request_uri})
    return f"{server['authorization_endpoint']}?{query}"


def exchange_code(session: dict, *, code: str, verifier: str) -> dict:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": callback_url(),
            "code_verifier": verifier, **_client_auth(session)}
    return _token_request(session, form, during="exchange")


def refresh(session: dict) -> dict:
    """Refresh tokens are single-use: the caller holds the renewal lease (services.renewal_lease)."""
    form = {"grant_type": "refresh_token", "refresh_token": session["refreshToken"], **_client_auth(session)}
    tokens = _token_request(session, form, during="refresh")
    if tokens["sub"] != session["sub"]:
        raise PlatformError(Kind.REJECTED, f"{LABEL} renewed the session for another account. Reconnect.")
    return tokens


def _token_request(session: dict, form: dict, *, during: str) -> dict:
    response = dpop_send(session, "POST", session["tokenEndpoint"], data=form)
    if response.status_code != 200:
        raise _token_error(response, during=during)
    data = replies.json_object(response.content, label=LABEL)
    token_type = replies.text(data, "token_type", label=LABEL, required=True, max_length=20)
    if token_type.lower() != "dpop":  # a bearer token would be usable by anyone who saw it
        raise PlatformError(Kind.BAD_REPLY, f"{LABEL} issued a token not bound to Hayon's key.")
    scope = replies.text(data, "scope", label=LABEL, required=True, max_length=2000)
    if "atproto" not in scope.split():
        raise PlatformError(Kind.BAD_REPLY, f"{LABEL} did not grant AT Protocol access.")
    expires_in = replies.integer(data, "expires_in", label=LABEL, minimum=1, maximum=10**7) or 300
    return {
        "accessToken": replies.text(data, "access_token", label=LABEL, required=True, max_length=8000),
        "refreshToken": replies.text(data, "refresh_token", label=LABEL, required=True, max_length=8000),
        "sub": replies.text(data, "sub", label=LABEL, required=True, max_length=2048),
        "grantedScope": scope,
        "accessExpiresAt": (datetime.now(timezone.utc) + timedelta(seconds=expires_in)).isoformat(),
    }


def revoke(session: dict) -> None:
    """RFC 7009 at the authorization server: the refresh token (the grant), then the access token."""
    endpoint = session.get("revocationEndpoint")
    if not endpoint:
        raise PlatformError(Kind.NOT_CONFIGURED, f"{LABEL} offers no way to revoke Hayon's access.")
    for token in (session.get("refreshToken"), session.get("accessToken")):
        if not token:
            continue
        response = dpop_send(session, "POST", endpoint, data={"token": token, **_client_auth(session)})
        if response.status_code != 200:  # RFC 7009 §2.2: 200 even for a token already invalid
            raise _token_error(response, during="revoke")


def refresh_expiry() -> datetime:
    return datetime.now(timezone.utc) + REFRESH_LIFETIME["public" if is_loopback() else "confidential"]


def check_callback(query_get, *, issuer: str) -> str:
    """The authorization code from a callback, after the mix-up defence (RFC 9207)."""
    error = query_get("error")
    if error:
        if error == "access_denied":
            raise FlowError("connection_cancelled", "Bluesky sign-in was cancelled.")
        raise FlowError("platform_error", f"Bluesky sign-in failed (error code: {error[:64]}).")
    if query_get("iss") != issuer:
        log.warning("refused a Bluesky callback: iss is not the server the flow began with")
        raise FlowError("invalid_state", "That answer came from a different sign-in server than the one "
                                         "your account uses. Nothing was connected; please connect again.")
    code = query_get("code")
    if not code or len(code) > 2048:
        raise FlowError("invalid_state", "Bluesky sent no authorization code. Please connect again.")
    return code
