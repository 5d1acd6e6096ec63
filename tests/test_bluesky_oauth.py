"""Bluesky sign-in (AT Protocol OAuth, issue 16) against replies shaped like the reference
authorization server's (@atproto/oauth-provider) and the atproto OAuth spec: discovery, PAR with
PKCE and DPoP (nonce retry), the callback's refusals (wrong `iss`, another `sub`, a DID document
naming another PDS, a replay, a bearer token), refresh, disconnect, and the client documents.
The real journey against the local PDS is tests/browser/test_bluesky_oauth_browser.py.
"""
import base64
import hashlib
import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from platforms import crypto
from platforms.documents import read_auth
from platforms.providers.atproto_oauth import keys
from platforms.services import account_for

from .conftest import SENTINEL, TXT_RECORDS
from .fixtures import bluesky as fx

pytestmark = pytest.mark.django_db
PDS = fx.PDS  # a self-hosted PDS: its own authorization server, as the reference PDS is
ISSUER = PDS
CALLBACK = "http://testserver/api/platform/bluesky/callback"
CLIENT_KEY = {**keys.new_private_jwk(kid="k2")}
OLD_KEY = {**keys.new_private_jwk(kid="k1")}
SERVER = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/oauth/authorize",
    "token_endpoint": f"{ISSUER}/oauth/token",
    "revocation_endpoint": f"{ISSUER}/oauth/revoke",
    "pushed_authorization_request_endpoint": f"{ISSUER}/oauth/par",
    "require_pushed_authorization_requests": True,
    "authorization_response_iss_parameter_supported": True,
    "scopes_supported": ["atproto", "transition:email", "transition:generic", "transition:chat.bsky"],
    "response_types_supported": ["code"],
    "grant_types_supported": ["authorization_code", "refresh_token"],
    "code_challenge_methods_supported": ["S256"],
    "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
    "dpop_signing_alg_values_supported": ["ES256", "ES256K"],
    "client_id_metadata_document_supported": True,
}


# -- JWT checks, done here with `cryptography` (Hayon signs, the server verifies) ---------------------
def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verified(token: str, jwk: dict | None = None) -> tuple[dict, dict]:
    """(header, payload) of an ES256 JWS whose signature verifies with `jwk` (or its header's jwk)."""
    head, body, signature = token.split(".")
    header, payload = json.loads(_b64(head)), json.loads(_b64(body))
    key = jwk or header["jwk"]
    public = ec.EllipticCurvePublicNumbers(int.from_bytes(_b64(key["x"]), "big"), int.from_bytes(_b64(key["y"]), "big"),
                                           ec.SECP256R1()).public_key()
    raw = _b64(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if forged
    assert header["alg"] == "ES256"
    return header, payload


def form(request: httpx.Request) -> dict:
    return {key: values[0] for key, values in parse_qs(request.content.decode()).items()}


def tokens(*, sub=fx.DID, tag="1", token_type="DPoP") -> dict:
    return {"access_token": f"{SENTINEL}-at-{tag}", "token_type": token_type, "refresh_token": f"{SENTINEL}-rt-{tag}",
            "scope": "atproto transition:generic", "expires_in": 3600, "sub": sub}


class Server:
    """The authorization server and PDS (one host): demands DPoP nonces and records requests."""

    def __init__(self, mock):
        self.mock = mock
        self.nonce = "nonce-1"
        self.token_replies = [tokens()]
        mock.get(f"https://plc.directory/{fx.DID}").respond(json=fx.PLC_DOCUMENT)
        mock.get(f"{PDS}/.well-known/oauth-protected-resource").respond(
            json={"resource": PDS, "authorization_servers": [ISSUER], "scopes_supported": [],
                  "bearer_methods_supported": ["header"]})
        self.metadata = mock.get(f"{ISSUER}/.well-known/oauth-authorization-server").respond(json=SERVER)
        self.par = mock.post(f"{ISSUER}/oauth/par").mock(side_effect=self._par)
        self.token = mock.post(f"{ISSUER}/oauth/token").mock(side_effect=self._token)
        self.revoke = mock.post(f"{ISSUER}/oauth/revoke").respond(200)
        self.session = mock.get(f"{PDS}/xrpc/com.atproto.server.getSession").mock(side_effect=self._get_session)
        mock.get(f"{PDS}/xrpc/app.bsky.actor.getProfile").respond(json=fx.PROFILE)

    def _needs_nonce(self, request, *, resource: bool) -> httpx.Response | None:
        _, proof = verified(request.headers["DPoP"])
        if proof.get("nonce") == self.nonce:
            return None
        if resource:  # RFC 9449 §9: a resource server answers 401 with WWW-Authenticate
            return httpx.Response(401, headers={"DPoP-Nonce": self.nonce, "WWW-Authenticate": 'DPoP error="use_dpop_nonce"'},
                                  json={"error": "use_dpop_nonce", "message": "Authorization server requires nonce in DPoP proof"})
        return httpx.Response(400, headers={"DPoP-Nonce": self.nonce},
                              json={"error": "use_dpop_nonce", "error_description": "Authorization server requires nonce in DPoP proof"})

    def _par(self, request):
        return self._needs_nonce(request, resource=False) or httpx.Response(
            201, json={"request_uri": "urn:ietf:params:oauth:request_uri:req-1", "expires_in": 299})

    def _token(self, request):
        return self._needs_nonce(request, resource=False) or httpx.Response(200, json=self.token_replies.pop(0))

    def _get_session(self, request):
        return self._needs_nonce(request, resource=True) or httpx.Response(200, json={"did": fx.DID, "handle": fx.HANDLE})


@pytest.fixture
def oauth(settings):
    settings.BLUESKY_OAUTH = True
    settings.ATPROTO_CLIENT_KEYS = json.dumps([CLIENT_KEY, OLD_KEY])
    TXT_RECORDS[fx.HANDLE] = fx.DID
    with respx.mock(assert_all_called=False) as mock:
        yield Server(mock)
    TXT_RECORDS.clear()


def start(client, identifier=fx.HANDLE) -> str:
    """Connect from the settings page; returns the authorization URL Hayon redirected to."""
    response = client.post("/settings/bluesky/connect", {"identifier": identifier, "method": "signin", "appPassword": ""})
    assert response.status_code == 302, response.content
    return response["Location"]


def callback(client, server, **params):
    state = form(server.par.calls.last.request)["state"]
    return client.get("/api/platform/bluesky/callback", {"state": state, "iss": ISSUER, "code": "cod-1", **params})


# -- starting: discovery, PAR, PKCE, DPoP -------------------------------------------------------------
def test_api_connect_without_app_password_answers_the_authorization_url(api, oauth):
    response = api.post("/api/platform/bluesky/connect", content_type="application/json",
                        data=json.dumps({"identifier": fx.HANDLE}))
    assert response.status_code == 200, response.content
    url = response.json()["data"]["url"]
    assert url.startswith(f"{ISSUER}/oauth/authorize?")
    query = parse_qs(urlsplit(url).query)
    assert query == {"client_id": ["http://testserver/oauth/client-metadata.json"],
                     "request_uri": ["urn:ietf:params:oauth:request_uri:req-1"]}
    first, second = (call.request for call in oauth.par.calls)  # use_dpop_nonce, then again with it
    assert "nonce" not in verified(first.headers["DPoP"])[1]
    header, proof = verified(second.headers["DPoP"])
    assert header["typ"] == "dpop+jwt" and "d" not in header["jwk"]
    assert proof["htm"] == "POST" and proof["htu"] == f"{ISSUER}/oauth/par" and proof["nonce"] == "nonce-1"
    sent = form(second)
    assert sent["response_type"] == "code" and sent["redirect_uri"] == CALLBACK and sent["login_hint"] == fx.HANDLE
    assert sent["code_challenge_method"] == "S256" and len(sent["code_challenge"]) == 43
    assert sent["scope"] == "atproto transition:generic"  # this server offers no granular scopes
    assert sent["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assertion_header, assertion = verified(sent["client_assertion"], CLIENT_KEY)  # the newest key signs
    assert assertion_header["kid"] == "k2"
    assert assertion["iss"] == assertion["sub"] == "http://testserver/oauth/client-metadata.json"
    assert assertion["aud"] == ISSUER
    assert len(sent["state"]) > 40 and sent["state"] not in url


def test_the_narrowest_scope_is_asked_for_where_the_server_offers_it(api, oauth):
    oauth.metadata.respond(json={**SERVER, "scopes_supported": [*SERVER["scopes_supported"], "repo:app.bsky.feed.post", "blob:*/*"]})
    api.post("/api/platform/bluesky/connect", content_type="application/json", data=json.dumps({"identifier": fx.HANDLE}))
    assert form(oauth.par.calls.last.request)["scope"] == "atproto repo:app.bsky.feed.post blob:*/*"


def test_an_authorization_server_naming_another_issuer_is_refused(api, oauth):
    oauth.metadata.respond(json={**SERVER, "issuer": "https://bsky.social"})
    response = api.post("/api/platform/bluesky/connect", content_type="application/json",
                        data=json.dumps({"identifier": fx.HANDLE}))
    assert response.status_code >= 400 and "claims to be another server" in response.json()["message"]
    assert not oauth.par.called


def test_a_pds_describing_another_server_as_itself_is_refused(api, oauth):
    """RFC 9728 §3.3: the protected-resource document must name the server it was fetched from."""
    oauth.mock.get(f"{PDS}/.well-known/oauth-protected-resource").respond(
        json={"resource": "https://social.example", "authorization_servers": [ISSUER]})
    response = api.post("/api/platform/bluesky/connect", content_type="application/json",
                        data=json.dumps({"identifier": fx.HANDLE}))
    assert response.status_code >= 400 and "describes another server" in response.json()["message"]
    assert not oauth.par.called


def test_a_plain_http_authorization_server_is_refused_outside_development(api, oauth):
    oauth.mock.get(f"{PDS}/.well-known/oauth-protected-resource").respond(
        json={"resource": PDS, "authorization_servers": ["http://pds.example"]})
    response = api.post("/api/platform/bluesky/connect", content_type="application/json",
                        data=json.dumps({"identifier": fx.HANDLE}))
    assert response.status_code >= 400 and "names no sign-in server Hayon may use" in response.json()["message"]
    assert not oauth.par.called


def test_an_email_cannot_sign_in_and_an_empty_app_password_is_still_refused(api, oauth):
    response = api.post("/api/platform/bluesky/connect", content_type="application/json",
                        data=json.dumps({"identifier": "alice@example.com"}))
    assert response.status_code == 400 and "email works only with an app password" in response.json()["message"]
    response = api.post("/api/platform/bluesky/connect", content_type="application/json",
                        data=json.dumps({"identifier": fx.HANDLE, "appPassword": ""}))
    assert response.status_code == 400 and "Enter an app password" in response.json()["message"]
    assert not oauth.par.called


def test_with_sign_in_switched_off_the_identifier_alone_is_refused(api, oauth, settings):
    settings.BLUESKY_OAUTH = False
    response = api.post("/api/platform/bluesky/connect", content_type="application/json",
                        data=json.dumps({"identifier": fx.HANDLE}))
    assert response.status_code == 400 and "app password" in response.json()["message"]
    assert not oauth.par.called


# -- the callback ----------------------------------------------------------------------------------
def test_the_callback_connects_with_dpop_bound_tokens(signed_in, user, oauth):
    start(signed_in)
    response = callback(signed_in, oauth)
    assert response.status_code == 302 and response["Location"].endswith("?success=bluesky_connected")
    exchange = form(oauth.token.calls.last.request)
    assert exchange["grant_type"] == "authorization_code" and exchange["code"] == "cod-1"
    assert exchange["redirect_uri"] == CALLBACK
    challenge = form(oauth.par.calls.last.request)["code_challenge"]
    assert base64.urlsafe_b64encode(hashlib.sha256(exchange["code_verifier"].encode()).digest()).rstrip(b"=").decode() == challenge
    verified(exchange["client_assertion"], CLIENT_KEY)
    par_key = verified(oauth.par.calls.last.request.headers["DPoP"])[0]["jwk"]
    assert verified(oauth.token.calls.last.request.headers["DPoP"])[0]["jwk"] == par_key  # one key per flow
    pds_call = oauth.session.calls.last.request
    assert pds_call.headers["Authorization"] == f"DPoP {SENTINEL}-at-1"
    _, proof = verified(pds_call.headers["DPoP"], par_key)
    assert proof["ath"] == keys.b64url(hashlib.sha256(f"{SENTINEL}-at-1".encode()).digest())
    assert proof["nonce"] == "nonce-1"
    doc = account_for(user).document("bluesky")
    assert doc["connected"] and doc["accountKey"] == fx.DID and doc["handle"] == fx.HANDLE
    assert doc["profile"]["displayName"] == "Alice" and SENTINEL not in json.dumps(doc)
    auth = read_auth(doc)
    assert auth["method"] == "oauth" and auth["issuer"] == ISSUER and auth["clientKid"] == "k2"
    assert auth["dpopKey"]["x"] == par_key["x"] and "d" in auth["dpopKey"]  # the private key, encrypted


def test_a_callback_from_another_issuer_is_refused_before_any_exchange(signed_in, user, oauth):
    """Mix-up (RFC 9207, security case 39): the answer claims another authorization server."""
    start(signed_in)
    response = callback(signed_in, oauth, iss="https://evil.example")
    assert response.status_code == 302 and "error=invalid_state" in response["Location"]
    assert not oauth.token.called and not account_for(user).document("bluesky").get("connected")
    response = callback(signed_in, oauth)  # and the flow is used up: the honest answer cannot follow
    assert "error=invalid_state" in response["Location"] and not oauth.token.called


def test_a_callback_without_iss_is_refused(signed_in, user, oauth):
    start(signed_in)
    state = form(oauth.par.calls.last.request)["state"]
    response = signed_in.get("/api/platform/bluesky/callback", {"state": state, "code": "cod-1"})
    assert "error=invalid_state" in response["Location"] and not oauth.token.called


def test_a_token_for_another_account_is_refused_and_revoked(signed_in, user, oauth):
    oauth.token_replies = [tokens(sub="did:plc:mallorymallorymallorymal")]
    start(signed_in)
    response = callback(signed_in, oauth)
    assert "error=platform_error" in response["Location"]
    page = signed_in.get(response["Location"]).content.decode()
    assert "You signed in as a different account than the one you typed" in page
    assert not account_for(user).document("bluesky").get("connected")
    revoked = [form(call.request)["token"] for call in oauth.revoke.calls]
    assert revoked == [f"{SENTINEL}-rt-1", f"{SENTINEL}-at-1"]


def test_a_did_document_that_no_longer_names_the_pds_is_refused(signed_in, user, oauth):
    start(signed_in)
    moved = {**fx.PLC_DOCUMENT, "service": [{**fx.PLC_DOCUMENT["service"][0], "serviceEndpoint": "https://alice.example"}]}
    oauth.mock.get(f"https://plc.directory/{fx.DID}").respond(json=moved)
    # The server the document names now would answer for the account: still not the one that signed in.
    oauth.mock.get("https://alice.example/xrpc/com.atproto.server.getSession").respond(json={"did": fx.DID, "handle": fx.HANDLE})
    oauth.mock.get("https://alice.example/xrpc/app.bsky.actor.getProfile").respond(json=fx.PROFILE)
    response = callback(signed_in, oauth)
    assert "error=platform_error" in response["Location"]
    assert not account_for(user).document("bluesky").get("connected") and oauth.revoke.called


def test_a_replayed_callback_is_refused(signed_in, user, oauth):
    start(signed_in)
    first = callback(signed_in, oauth)
    assert first["Location"].endswith("?success=bluesky_connected")
    stored = account_for(user).document("bluesky")
    replay = callback(signed_in, oauth)
    assert "error=invalid_state" in replay["Location"]
    assert len(oauth.token.calls) == 1  # the one exchange (with the nonce PAR was given); none for the replay
    assert account_for(user).document("bluesky") == stored


def test_a_bearer_token_is_refused(signed_in, user, oauth):
    oauth.token_replies = [tokens(token_type="Bearer")]
    start(signed_in)
    response = callback(signed_in, oauth)
    assert "error=platform_error" in response["Location"]
    assert not account_for(user).document("bluesky").get("connected")


def test_a_refused_sign_in_says_so(signed_in, user, oauth):
    start(signed_in)
    response = callback(signed_in, oauth, code="", error="access_denied")
    assert "error=connection_cancelled" in response["Location"] and not oauth.token.called


# -- refresh, disconnect ----------------------------------------------------------------------------
def connect(signed_in, oauth):
    start(signed_in)
    assert callback(signed_in, oauth)["Location"].endswith("?success=bluesky_connected")


def make_due(user):
    account = account_for(user)
    doc = account.document("bluesky")
    doc["auth"] = crypto.encrypt({**read_auth(doc), "accessExpiresAt": "2000-01-01T00:00:00+00:00"})
    account.set_document("bluesky", doc)
    account.save()


def test_refresh_rotates_the_single_use_refresh_token_with_the_same_key(signed_in, user, oauth):
    connect(signed_in, oauth)
    key = read_auth(account_for(user).document("bluesky"))["dpopKey"]
    make_due(user)
    oauth.nonce = "nonce-2"  # the server rotated its nonce meanwhile
    oauth.token_replies = [tokens(tag="2")]
    response = signed_in.post("/settings/bluesky/refresh")
    assert response["Location"].endswith("?success=bluesky_refreshed")
    renewal = form(oauth.token.calls.last.request)
    assert renewal["grant_type"] == "refresh_token" and renewal["refresh_token"] == f"{SENTINEL}-rt-1"
    assert verified(renewal["client_assertion"], CLIENT_KEY)[1]["aud"] == ISSUER
    header, proof = verified(oauth.token.calls.last.request.headers["DPoP"])
    assert header["jwk"]["x"] == key["x"] and proof["nonce"] == "nonce-2"
    auth = read_auth(account_for(user).document("bluesky"))
    assert auth["refreshToken"] == f"{SENTINEL}-rt-2" and auth["accessToken"] == f"{SENTINEL}-at-2"


def test_a_refresh_for_another_account_is_not_kept(signed_in, user, oauth):
    connect(signed_in, oauth)
    make_due(user)
    oauth.token_replies = [tokens(tag="2", sub="did:plc:mallorymallorymallorymal")]
    signed_in.post("/settings/bluesky/refresh")
    doc = account_for(user).document("bluesky")
    assert doc["health"]["needsReconnection"] and read_auth(doc)["refreshToken"] == f"{SENTINEL}-rt-1"


def test_an_ended_sign_in_asks_for_reconnection(signed_in, user, oauth):
    connect(signed_in, oauth)
    make_due(user)
    oauth.token.mock(side_effect=None).respond(400, json={"error": "invalid_grant", "error_description": "Invalid refresh token"})
    signed_in.post("/settings/bluesky/refresh")
    health = account_for(user).document("bluesky")["health"]
    assert health["status"] == "expired" and health["needsReconnection"]


def test_a_retired_client_key_ends_its_sessions(signed_in, user, oauth, settings):
    connect(signed_in, oauth)
    settings.ATPROTO_CLIENT_KEYS = json.dumps([keys.new_private_jwk(kid="k3")])
    make_due(user)
    signed_in.post("/settings/bluesky/refresh")
    assert account_for(user).document("bluesky")["health"]["needsReconnection"]


def test_disconnect_revokes_at_the_authorization_server(signed_in, user, oauth):
    connect(signed_in, oauth)
    response = signed_in.post("/settings/bluesky/disconnect")
    assert response.status_code == 302
    revoked = [form(call.request) for call in oauth.revoke.calls]
    assert [sent["token"] for sent in revoked] == [f"{SENTINEL}-rt-1", f"{SENTINEL}-at-1"]
    verified(revoked[0]["client_assertion"], CLIENT_KEY)
    assert account_for(user).document("bluesky") == {"connected": False}


# -- the client documents, and the loopback client ---------------------------------------------------
def test_client_metadata_and_jwks_publish_only_public_keys(client, settings):
    settings.ATPROTO_CLIENT_KEYS = json.dumps([CLIENT_KEY, OLD_KEY])
    metadata = client.get("/oauth/client-metadata.json").json()
    assert metadata["client_id"] == "http://testserver/oauth/client-metadata.json"
    assert metadata["redirect_uris"] == [CALLBACK] and metadata["dpop_bound_access_tokens"] is True
    assert metadata["token_endpoint_auth_method"] == "private_key_jwt" and metadata["token_endpoint_auth_signing_alg"] == "ES256"
    assert metadata["jwks_uri"] == "http://testserver/oauth/jwks.json"
    published = client.get("/oauth/jwks.json").json()["keys"]
    assert [key["kid"] for key in published] == ["k2", "k1"]  # all of them, for rotation
    assert all("d" not in key for key in published)
    assert [key["x"] for key in published] == [CLIENT_KEY["x"], OLD_KEY["x"]]


def test_on_127_0_0_1_hayon_is_the_loopback_client(api, oauth, settings):
    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    settings.ATPROTO_CLIENT_KEYS = ""
    url = api.post("/api/platform/bluesky/connect", content_type="application/json",
                   data=json.dumps({"identifier": fx.HANDLE})).json()["data"]["url"]
    client_id = parse_qs(urlsplit(url).query)["client_id"][0]
    assert client_id == ("http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%3A8000%2Fapi%2Fplatform%2Fbluesky%2Fcallback"
                         "&scope=atproto+transition%3Ageneric")
    assert "client_assertion" not in form(oauth.par.calls.last.request)  # a public client


def test_without_client_keys_elsewhere_sign_in_is_not_offered(api, signed_in, oauth, settings):
    settings.ATPROTO_CLIENT_KEYS = ""
    response = api.post("/api/platform/bluesky/connect", content_type="application/json",
                        data=json.dumps({"identifier": fx.HANDLE}))
    assert response.status_code == 400 and "Enter an app password" in response.json()["message"]
    assert "Sign in with Bluesky" not in signed_in.get("/settings").content.decode() and not oauth.par.called


# -- the card: which method, and switching an app-password connection to sign-in ------------------------
def test_the_card_says_bluesky_sign_in(signed_in, user, oauth):
    connect(signed_in, oauth)
    page = signed_in.get("/settings").content.decode()
    assert "Connected with</dt><dd>Bluesky sign-in" in page and "Switch to Bluesky sign-in" not in page
    assert signed_in.get("/api/platform/find").json()["data"]["bluesky"]["authMethod"] == "oauth"


def test_an_app_password_connection_switches_to_sign_in_and_its_session_ends(signed_in, user, oauth):
    from platforms import documents

    old = {"accessJwt": fx.jwt(7200, "old-access"), "refreshJwt": fx.jwt(86400, "old-refresh"), "pds": PDS}
    account = account_for(user)
    account.set_document("bluesky", documents.connected_document(documents.Connection(
        profile=documents.Profile("Alice", fx.HANDLE), account_key=fx.DID,
        identifiers={"did": fx.DID, "handle": fx.HANDLE}, auth=old)))
    account.save()
    ended = oauth.mock.post(f"{PDS}/xrpc/com.atproto.server.deleteSession").respond(200)
    page = signed_in.get("/settings").content.decode()
    assert "Connected with</dt><dd>App password" in page and "Switch to Bluesky sign-in" in page

    location = signed_in.post("/settings/bluesky/connect", {"method": "signin", "identifier": fx.HANDLE})["Location"]
    assert location.startswith(f"{ISSUER}/oauth/authorize?") and form(oauth.par.calls.last.request)["login_hint"] == fx.HANDLE
    assert callback(signed_in, oauth)["Location"].endswith("?success=bluesky_connected")
    assert read_auth(account_for(user).document("bluesky"))["method"] == "oauth"
    assert ended.calls.last.request.headers["Authorization"] == f"Bearer {old['refreshJwt']}"  # the app-password session is gone
