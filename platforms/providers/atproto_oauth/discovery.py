"""From what the user typed to the authorization server that speaks for the account.

identifier (handle, DID or PDS URL) -> DID -> DID document -> PDS -> the PDS's
/.well-known/oauth-protected-resource -> authorization server -> its
/.well-known/oauth-authorization-server, whose `issuer` must be the server asked
(https://atproto.com/specs/oauth#identity-authentication, RFC 8414 §3.3, RFC 9728 §3.3).
Every host comes through the SSRF guard (hosts.public_base_url: http only on loopback with
HAYON_ALLOW_PRIVATE_HOSTS) and every call through http.httpx_client (deadline, size cap).
"""
import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from ... import hosts, http, replies
from ...errors import FlowError, Kind, PlatformError
from .. import atproto_identity as identity

log = logging.getLogger(__name__)
LABEL = "The Bluesky sign-in server"
GRANULAR_POST = "repo:app.bsky.feed.post"
GRANULAR_BLOB = "blob:*/*"
GENERIC = "atproto transition:generic"


@dataclass
class Target:
    """Who is signing in (when known before sign-in) and where."""

    did: str | None  # None when the user typed a PDS URL: the token's `sub` names the account
    handle: str | None
    pds: str
    issuer: str
    server: dict = field(repr=False)  # the authorization server's metadata, checked

    @property
    def login_hint(self) -> str | None:
        return self.handle or self.did


def _unusable(message: str) -> FlowError:
    return FlowError("invalid_input", message)


def _fetch_json(url: str, *, label: str) -> dict:
    try:
        with http.httpx_client() as client:
            response = client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:  # TransportFailure is both: keep http.py's readable message
        if isinstance(exc, PlatformError):
            raise exc from None
        raise PlatformError(Kind.UNAVAILABLE, f"{label} could not be reached.") from None
    if response.status_code != 200:
        raise PlatformError(Kind.BAD_REPLY, f"{label} does not offer Bluesky sign-in (HTTP {response.status_code}).",
                            status=response.status_code)
    return replies.json_object(response.content, label=label)


def origin(url) -> str | None:
    """`url` when it is a bare origin that passes the SSRF guard (normalised), else None."""
    if not isinstance(url, str) or len(url) > 2048:
        return None
    try:
        return hosts.public_base_url(url)
    except FlowError:
        return None


def endpoint(metadata: dict, key: str, *, required: bool = True) -> str | None:
    """An endpoint URL from the metadata: http(s), on a server the SSRF guard allows."""
    value = metadata.get(key)
    if value is None and not required:
        return None
    parts = urlsplit(value) if isinstance(value, str) and len(value) <= 2048 else None
    base = origin(f"{parts.scheme}://{parts.netloc}") if parts and parts.scheme and parts.netloc else None
    if base is None or parts.query or parts.fragment:
        raise PlatformError(Kind.BAD_REPLY, f"{LABEL} names an unusable {key}.")
    return value


# -- identifier -> DID -> PDS -----------------------------------------------------------------------
def resolve(identifier: str) -> Target:
    identifier = (identifier or "").strip().lstrip("@")
    if identifier.startswith(("https://", "http://")):
        pds = identity.checked_pds(identifier)
        if pds is None:
            raise _unusable("That server address cannot be used (Hayon signs in only at public https servers).")
        return _target(did=None, handle=None, pds=pds)
    if identifier.lower().startswith("did:"):
        did, handle = identifier, None
    else:
        handle = identifier.lower()
        did = identity.resolve_handle(handle)
        if did is None:
            raise _unusable(f"The handle @{handle} could not be found. Check its spelling, or type your server's address.")
    document = identity.did_document(did)
    if document is None:
        raise PlatformError(Kind.UNAVAILABLE, "Hayon could not look up this account's identity record (its DID document).")
    pds = identity.checked_pds(identity.pds_from_document(document))
    if pds is None:
        raise _unusable("This account's identity record names no server Hayon may connect to.")
    if handle and handle not in identity.handles_claimed(document):
        raise _unusable(f"The handle @{handle} does not point back to its account, so Hayon cannot sign it in.")
    return _target(did=did, handle=handle, pds=pds)


def _target(*, did, handle, pds) -> Target:
    issuer = authorization_server_of(pds)
    return Target(did=did, handle=handle, pds=pds, issuer=issuer, server=server_metadata(issuer))


# -- PDS -> authorization server --------------------------------------------------------------------
def authorization_server_of(pds: str) -> str:
    data = _fetch_json(f"{pds}/.well-known/oauth-protected-resource", label="The account's server")
    if origin(data.get("resource")) != pds:  # RFC 9728 §3.3: it must describe the server asked
        raise PlatformError(Kind.BAD_REPLY, "The account's server describes another server as itself.")
    servers = data.get("authorization_servers")
    issuer = origin(servers[0]) if isinstance(servers, list) and servers else None
    if issuer is None:
        raise PlatformError(Kind.BAD_REPLY, "The account's server names no sign-in server Hayon may use.")
    return issuer


def server_metadata(issuer: str) -> dict:
    """The authorization server's metadata, checked against what the atproto profile requires."""
    data = _fetch_json(f"{issuer}/.well-known/oauth-authorization-server", label=LABEL)
    if data.get("issuer") != issuer:  # RFC 8414 §3.3: a server may not speak for another issuer
        log.warning("refused Bluesky authorization server metadata: issuer differs from the server asked")
        raise PlatformError(Kind.REJECTED, f"{LABEL} claims to be another server. Hayon did not continue.")

    def offers(key, value):
        listed = data.get(key)
        return isinstance(listed, list) and value in listed

    missing = [name for name, ok in (
        ("PAR", isinstance(data.get("pushed_authorization_request_endpoint"), str)),
        ("PKCE S256", offers("code_challenge_methods_supported", "S256")),
        ("DPoP ES256", offers("dpop_signing_alg_values_supported", "ES256")),
        ("the atproto scope", offers("scopes_supported", "atproto")),
        ("the iss parameter", data.get("authorization_response_iss_parameter_supported") is True),
    ) if not ok]
    if missing:
        raise PlatformError(Kind.BAD_REPLY, f"{LABEL} lacks what AT Protocol sign-in needs ({', '.join(missing)}).")
    for key in ("authorization_endpoint", "token_endpoint", "pushed_authorization_request_endpoint"):
        endpoint(data, key)
    endpoint(data, "revocation_endpoint", required=False)
    return data


def scope_for(server: dict) -> str:
    """The narrowest scope the server offers for what Hayon does (post, with images)."""
    offered = server.get("scopes_supported") or []
    if GRANULAR_POST in offered:
        return " ".join(["atproto", GRANULAR_POST] + ([GRANULAR_BLOB] if GRANULAR_BLOB in offered else []))
    return GENERIC
