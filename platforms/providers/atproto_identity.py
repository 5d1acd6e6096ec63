"""Who a Bluesky account is, found without taking its PDS's word: handle <-> DID -> DID document -> PDS.

Docs: https://atproto.com/specs/handle , https://atproto.com/specs/did ,
https://docs.bsky.app/docs/advanced-guides/resolving-identities
A PDS's createSession reply names a DID and a handle, and a hostile PDS can name anyone's (security
case 44). So the DID is resolved here (the PLC directory the administrator configured, or the
did:web host through the SSRF guard), its document must name the PDS Hayon logged in to, and the
handle must resolve back to the DID in both directions.
Hand-written instead of atproto_identity.IdResolver because that follows redirects and fetches
any host a handle names; here every host a user controls passes the SSRF guard first.
"""
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.exception
import dns.resolver
import httpx
from atproto_client.models.string_formats import is_valid_handle
from django.conf import settings

from .. import hosts, http, replies
from ..errors import FlowError, Kind, PlatformError

log = logging.getLogger(__name__)
DID = re.compile(r"^did:(plc:[a-z2-7]{24}|web:[a-zA-Z0-9.\-%:]+)$")
# Handles the network itself marks as failed verification (https://atproto.com/specs/handle).
UNUSABLE_HANDLES = {"handle.invalid"}


@dataclass
class Identity:
    did: str
    handle: str
    pds: str  # the account's home PDS, as its own DID document names it


# -- handle -> DID ---------------------------------------------------------------------------------
def txt_did(handle: str) -> str | None:
    """DNS TXT `_atproto.<handle>` = `did=...` (tests replace this: no DNS here)."""
    try:
        answers = dns.resolver.resolve(f"_atproto.{handle}", "TXT", lifetime=settings.HAYON_HTTP_TIMEOUT)
    except (dns.exception.DNSException, ValueError):
        return None
    for answer in answers:
        text = b"".join(answer.strings).decode(errors="replace")
        if text.startswith("did=") and DID.match(text[4:]):
            return text[4:]
    return None


def _get(url: str, **kwargs) -> httpx.Response | None:
    """A 200 reply from `url`, or None on any failure (the caller decides what None means)."""
    try:
        with http.httpx_client() as client:
            response = client.get(url, **kwargs)
    except (httpx.HTTPError, PlatformError):  # PlatformError: http.py's own caps and deadlines
        return None
    return response if response.status_code == 200 else None


def _get_public(host: str, path: str) -> httpx.Response | None:
    """GET https://<host><path> when the host passes the SSRF guard; None on any failure."""
    try:
        base = hosts.public_base_url(host)
    except FlowError:
        return None
    return _get(base + path)


def _json_object(response: httpx.Response | None) -> dict | None:
    """The reply's JSON object through the one validating parser (a deeply nested document raised
    RecursionError here, a 500: security case 45), or None."""
    try:
        return replies.json_object(response.content, label="The identity lookup") if response is not None else None
    except PlatformError:
        return None


def well_known_did(handle: str) -> str | None:
    response = _get_public(handle, "/.well-known/atproto-did")
    text = response.text.strip() if response is not None else ""
    return text if DID.match(text) else None


def service_did(handle: str) -> str | None:
    """`resolveHandle` at the configured service (BLUESKY_SERVICE_URL), never at a user's PDS.

    DNS and https://<handle>/ are the handle's own domain speaking, the spec's two methods. A
    server's resolveHandle is only its opinion: the configured service is the administrator's
    choice and trusted like the PLC directory, but a PDS that the user's input led to is the very
    party under test and would vouch for any handle ("victim.bsky.social is mine"). The local
    test PDS's `.test` handles have no DNS and resolve only this way, through the service.
    """
    base = settings.BLUESKY_SERVICE_URL.rstrip("/")
    data = _json_object(_get(f"{base}/xrpc/com.atproto.identity.resolveHandle", params={"handle": handle}))
    did = (data or {}).get("did")
    return did if isinstance(did, str) and DID.match(did) else None


def resolve_handle(handle: str) -> str | None:
    """The DID a handle names: DNS first (the docs' rule when methods disagree), then HTTPS, then the service."""
    return txt_did(handle) or well_known_did(handle) or service_did(handle)


# -- DID -> document -> PDS ------------------------------------------------------------------------
def did_document(did: str) -> dict | None:
    """The DID's document, only when it is a JSON object that says it is this DID's."""
    if not DID.match(did or ""):
        return None
    if did.startswith("did:plc:"):
        response = _get(f"{settings.BLUESKY_PLC_URL.rstrip('/')}/{did}")  # the configured directory is trusted
    else:
        response = _get_public(did[len("did:web:"):].replace("%3A", ":"), "/.well-known/did.json")
    document = _json_object(response)
    return document if document is not None and document.get("id") == did else None


def pds_from_document(doc: dict | None) -> str | None:
    services = (doc or {}).get("service")
    for service in services if isinstance(services, list) else []:
        if (
            isinstance(service, dict)
            and str(service.get("id", "")).endswith("#atproto_pds")
            and service.get("type") == "AtprotoPersonalDataServer"
            and isinstance(service.get("serviceEndpoint"), str)
        ):
            return service["serviceEndpoint"].rstrip("/")
    return None


def handles_claimed(doc: dict) -> set[str]:
    """The handles a DID document claims (`alsoKnownAs: ["at://alice.example"]`), lower-cased."""
    names = doc.get("alsoKnownAs")
    return {name[len("at://"):].lower() for name in names if isinstance(name, str) and name.startswith("at://")} \
        if isinstance(names, list) else set()


def checked_pds(endpoint: str | None) -> str | None:
    """A PDS endpoint that passes the SSRF guard, normalised; None otherwise."""
    if not endpoint:
        return None
    try:
        return hosts.public_base_url(endpoint)
    except FlowError:
        log.info("refused PDS endpoint outside the public network")
        return None


def pds_for_identifier(identifier: str) -> str | None:
    """The PDS of a handle or DID, or None (an email, or a handle that does not resolve)."""
    if "@" in identifier:
        return None
    did = identifier if DID.match(identifier) else (txt_did(identifier) or well_known_did(identifier))
    if not did:
        return None
    return checked_pds(pds_from_document(did_document(did)))


def same_server(a: str, b: str) -> bool:
    """Scheme, host and port equal ('https://PDS.example:443/' is 'https://pds.example')."""
    def key(url):
        parts = urlsplit(url or "")
        try:
            port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
        except ValueError:
            return None
        return parts.scheme.lower(), (parts.hostname or "").rstrip("."), port

    return key(a) is not None and key(a) == key(b)


# -- checking what a PDS says ------------------------------------------------------------------------
def handle_points_to(handle, did: str, document: dict | None = None) -> bool:
    """True when `handle` resolves to `did` and the DID's document claims the handle back."""
    if not isinstance(handle, str) or not is_valid_handle(handle) or handle.lower() in UNUSABLE_HANDLES:
        return False
    handle = handle.lower()
    document = document if document is not None else did_document(did)
    return document is not None and handle in handles_claimed(document) and resolve_handle(handle) == did


def session_did_at(pds: str, access_jwt: str) -> str | None:
    """The DID `pds` says this session belongs to (com.atproto.server.getSession), or None."""
    data = _json_object(_get(f"{pds}/xrpc/com.atproto.server.getSession",
                             headers={"Authorization": f"Bearer {access_jwt}"}))
    did = (data or {}).get("did")
    return did if isinstance(did, str) else None


def verify_session(*, did, handle, logged_in_at: str, access_jwt: str) -> Identity:
    """The identity a fresh session really is, or PlatformError when the PDS claims what it does not own.

    The DID's own document must name the PDS Hayon logged in to. One exception: the configured
    service (an entryway such as bsky.social) signs in accounts that live on other PDSes; then the
    PDS the document names must confirm that the session is this DID's.
    """
    if not isinstance(did, str) or not DID.match(did):
        raise PlatformError(Kind.BAD_REPLY, "The server did not name a valid account identity (DID). Nothing was connected.")
    document = did_document(did)
    if document is None:
        raise PlatformError(Kind.UNAVAILABLE, "Hayon could not look up this account's identity record (its DID "
                                              "document) to check it. Nothing was connected; please try again.")
    home = checked_pds(pds_from_document(document))
    if home is None:
        raise PlatformError(Kind.REJECTED, "This account's identity record names no server Hayon may connect to "
                                           "(a public https address). Nothing was connected.")
    vouched = same_server(home, logged_in_at) or (
        same_server(logged_in_at, settings.BLUESKY_SERVICE_URL) and session_did_at(home, access_jwt) == did
    )
    if not vouched:
        log.warning("refused a Bluesky session: the DID document names another PDS")
        raise PlatformError(Kind.REJECTED, f"{_host(logged_in_at)} answered for an account whose identity record "
                                           f"names another server ({_host(home)}). Hayon did not connect it.")
    if not handle_points_to(handle, did, document):
        log.warning("refused a Bluesky session: the handle does not resolve to its DID")
        shown = f"@{handle}" if isinstance(handle, str) and is_valid_handle(handle) else "the handle it reports"
        raise PlatformError(Kind.REJECTED, f"The handle {shown} does not point to this account, so Hayon cannot "
                                           "confirm who it is. Nothing was connected.")
    return Identity(did=did, handle=handle.lower(), pds=home)


def _host(url: str) -> str:
    return urlsplit(url).netloc or url
