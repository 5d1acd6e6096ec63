"""Shared OAuth 2.0 authorization-code machinery (RFC 6749, PKCE per RFC 7636).

Subclasses say where the endpoints are and which client to use; the checks on the callback, the
code exchange and the mapping of token-endpoint errors live here once. We build requests by hand
rather than through requests-oauthlib's OAuth2Session so every call goes through http.session()
(timeouts, no redirects, error kinds), which OAuth2Session would bypass.
"""
import base64
import hashlib
import re
import secrets
from urllib.parse import urlencode

from .. import http
from ..errors import FlowError, Kind, PlatformError
from .base import Authorization, Provider, single_param

CANCELLED_ERRORS = {"access_denied", "user_denied", "user_cancelled"}
MAX_QUOTE = 80  # of a server's own error text: enough to recognise it, too short to tell a story
_ERROR_CODE = re.compile(r"^[a-z][a-z0-9_.-]{0,49}$")  # RFC 6749 §4.1.2.1 codes are short ASCII words
_LINK = re.compile(r"(?i)\b(?:https?://|www\.)\S+")


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def quoted(text: str, limit: int = MAX_QUOTE) -> str:
    """A platform's own words, made safe to show as a quotation: one line, no links, shortened."""
    text = _LINK.sub("[link removed]", text or "")
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return f"“{text}”"


def callback_code(query, label: str) -> str:
    """The authorization code from a callback, or the FlowError it stands for (cases 12, 13).

    An error's `error_description` is the platform's text, not Hayon's (case 49): it is shown only
    as a short quotation attributed to the platform, after Hayon's own sentence and the error code.
    """
    error = single_param(query, "error") or query.get("error", "")
    if error or query.get("error_reason"):
        if error in CANCELLED_ERRORS or query.get("error_reason") == "user_denied":
            raise FlowError("connection_cancelled", f"Connection to {label} cancelled.")
        code = error if _ERROR_CODE.match(error) else "unknown"
        message = f"{label} did not authorize Hayon (error code: {code}). Please connect again."
        description = single_param(query, "error_description")
        if description.strip():
            message += f" {label} said: {quoted(description)}"
        raise FlowError("authorization_failed", message)
    code = single_param(query, "code")
    if not code or len(code) > 2048:
        raise FlowError("missing_code", f"{label} did not send an authorization code. Please connect again.")
    return code


def check_issuer(query, payload: dict, label: str) -> None:
    """RFC 9207: where the flow knows its server's issuer, an `iss` in the answer must name it.

    A server that advertises `authorization_response_iss_parameter_supported` must send it; others
    may not, and then the redirect URI (one per server, RFC 9700 §4.4) is the binding.
    """
    expected = payload.get("issuer")
    if not expected:
        return
    iss = single_param(query, "iss")
    if not iss and not payload.get("issRequired") and "iss" not in query:
        return
    # A trailing slash is the only variation allowed: issuers are URLs, and "https://x/" names "https://x".
    if iss.rstrip("/") != str(expected).rstrip("/"):
        raise FlowError(
            "invalid_state",
            f"The answer did not come from {label}, the server you chose, so Hayon refused it. Please connect again.",
        )


def token_error(response, label: str) -> PlatformError | None:
    """Map a token endpoint's RFC 6749 §5.2 error to a PlatformError kind."""
    try:
        code = str((response.json() or {}).get("error") or "")
    except (ValueError, AttributeError):
        code = ""
    if code in ("invalid_grant", "invalid_request"):
        return PlatformError(
            Kind.REJECTED, f"{label} did not accept the authorization. Please connect again.",
            status=response.status_code, code=code,
        )
    if code in ("invalid_client", "unauthorized_client"):
        return PlatformError(
            Kind.REJECTED, f"{label} does not recognise Hayon's app registration.",
            status=response.status_code, code=code,
        )
    return None


class OAuth2Provider(Provider):
    scope_delimiter = " "
    token_method = "POST"

    # -- what subclasses provide -----------------------------------------------------------------
    def client(self, data: dict) -> dict:
        """The client for a new flow: authorize_url, token_url, client_id, redirect_uri, scope, pkce."""
        raise NotImplementedError

    def client_secret(self, payload: dict) -> str:
        raise NotImplementedError

    def connection_from_token(self, *, payload: dict, token: dict):
        raise NotImplementedError

    def extra_authorize_params(self, client: dict) -> dict:
        return {}

    def flow_label(self, payload: dict) -> str:
        """How messages about this flow name the authorization server (a Mastodon server's host)."""
        return self.label

    def classify_token_error(self, response) -> PlatformError | None:
        """A platform's own reading of a token endpoint error; None leaves it to RFC 6749's codes."""
        return None

    # -- the flow --------------------------------------------------------------------------------
    def begin(self, *, state: str, data: dict) -> Authorization:
        client = self.client(data)
        params = {
            "response_type": "code",
            "client_id": client["client_id"],
            "redirect_uri": client["redirect_uri"],
            "scope": self.scope_delimiter.join(client["scope"]),
            "state": state,
            **self.extra_authorize_params(client),
        }
        payload = {key: client[key] for key in ("token_url", "client_id", "redirect_uri")}
        payload.update(client.get("payload", {}))
        if client.get("pkce"):
            verifier, challenge = pkce_pair()
            params.update(code_challenge=challenge, code_challenge_method="S256")
            payload["verifier"] = verifier  # server-side only, encrypted with the flow
        return Authorization(url=f"{client['authorize_url']}?{urlencode(params)}", payload=payload)

    def finish(self, *, payload: dict, query):
        label = self.flow_label(payload)
        check_issuer(query, payload, label)  # before anything else in the answer is believed
        code = callback_code(query, label)
        token = self.exchange_code(payload=payload, code=code)
        return self.connection_from_token(payload=payload, token=token)

    def exchange_code(self, *, payload: dict, code: str) -> dict:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            # The redirect URI recorded when the flow began, never one derived from this request.
            "redirect_uri": payload["redirect_uri"],
            "client_id": payload["client_id"],
            "client_secret": self.client_secret(payload),
        }
        if payload.get("verifier"):
            form["code_verifier"] = payload["verifier"]
        # Meta's Graph API takes the exchange as GET with query parameters; RFC 6749 says POST a form.
        body = {"params": form} if self.token_method == "GET" else {"data": form}
        response = http.session().request(self.token_method, payload["token_url"], **body)
        return self.access_token_from(response, label=self.flow_label(payload))

    def access_token_from(self, response, *, label: str = "") -> dict:
        label = label or self.label
        token = http.expect_json(
            response, label, classify=lambda r: self.classify_token_error(r) or token_error(r, label)
        )
        if token.get("error"):
            raise PlatformError(Kind.BAD_REPLY, f"{label} refused to issue a token.", code=str(token["error"])[:50])
        if not isinstance(token.get("access_token"), str) or not token["access_token"]:
            raise PlatformError(Kind.BAD_REPLY, f"{label} sent no access token.")
        return token
