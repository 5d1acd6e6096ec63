"""Finding a Bluesky account's own PDS: handle -> DID -> DID document -> PDS endpoint.

Docs: https://atproto.com/specs/handle , https://atproto.com/specs/did ,
https://docs.bsky.app/docs/advanced-guides/resolving-identities
Hand-written instead of atproto_identity.IdResolver because that follows redirects and fetches
any host a handle names; here every host a user controls passes the SSRF guard first.
"""
import logging
import re

import dns.exception
import dns.resolver
import httpx
from django.conf import settings

from .. import hosts, http
from ..errors import FlowError

log = logging.getLogger(__name__)
DID = re.compile(r"^did:(plc:[a-z2-7]{24}|web:[a-zA-Z0-9.\-%:]+)$")


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


def _get_public(host: str, path: str) -> httpx.Response | None:
    """GET https://<host><path> when the host passes the SSRF guard; None on any failure."""
    try:
        base = hosts.public_base_url(host)
    except FlowError:
        return None
    try:
        with http.httpx_client() as client:
            response = client.get(base + path)
    except httpx.HTTPError:
        return None
    return response if response.status_code == 200 else None


def well_known_did(handle: str) -> str | None:
    response = _get_public(handle, "/.well-known/atproto-did")
    text = response.text.strip() if response is not None else ""
    return text if DID.match(text) else None


def did_document(did: str) -> dict | None:
    if did.startswith("did:plc:"):
        url = f"{settings.BLUESKY_PLC_URL.rstrip('/')}/{did}"  # the configured directory is trusted
        try:
            with http.httpx_client() as client:
                response = client.get(url)
        except httpx.HTTPError:
            return None
        response = response if response.status_code == 200 else None
    else:
        response = _get_public(did[len("did:web:"):].replace("%3A", ":"), "/.well-known/did.json")
    try:
        return response.json() if response is not None else None
    except ValueError:
        return None


def pds_from_document(doc: dict | None) -> str | None:
    for service in (doc or {}).get("service") or []:
        if (
            isinstance(service, dict)
            and str(service.get("id", "")).endswith("#atproto_pds")
            and service.get("type") == "AtprotoPersonalDataServer"
            and isinstance(service.get("serviceEndpoint"), str)
        ):
            return service["serviceEndpoint"].rstrip("/")
    return None


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
