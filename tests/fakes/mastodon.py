"""A small Mastodon-shaped OAuth server on 127.0.0.1, honest about what it checks.

It registers apps, shows an authorization page with Authorize / Deny links (or approves at once
with `auto_approve`), exchanges codes, answers verify_credentials and /api/v2/instance, and records
revocations. Like Mastodon (Doorkeeper) it refuses an authorization request whose `redirect_uri`
was not registered for the client or whose scopes were not registered, and a token request whose
client secret, redirect URI, client or PKCE verifier does not match the code. Shapes:
https://docs.joinmastodon.org/methods/apps/ , /methods/oauth/ , /methods/accounts/#verify_credentials ,
/methods/instance/ .

`software="takahe"` plays Takahē 0.11 instead: no discovery document, `400 {"error": "Invalid
Bearer token"}` for a revoked token, `version: "takahe/0.11.0"` and no video.
`FakeHostileMastodon` is the attacker's server of the OAuth mix-up (security case 39).
"""
import base64
import hashlib
import html
import io
import secrets
import threading
import time
from urllib.parse import parse_qs, urlencode, urlsplit

from PIL import Image

from publishing.text import mastodon_length

from .server import FakeServer, Reply, Request, multipart, redirect, secret


class FakeMastodon(FakeServer):
    name = "Fake Mastodon"

    def __init__(self, *, software: str = "mastodon", send_iss: bool = False, auto_approve: bool = False):
        super().__init__()
        self.software, self.send_iss, self.auto_approve = software, send_iss, auto_approve
        self.apps, self.codes, self.tokens, self.revoked = {}, {}, {}, []
        self.max_characters = 700
        self.characters_reserved_per_url = 23
        self.token_requests: list[dict] = []  # every form posted to /oauth/token
        # Publishing (https://docs.joinmastodon.org/methods/statuses/ , /methods/media/):
        self.statuses: list[dict] = []  # every status made, in order
        self.media: dict[str, dict] = {}  # media id -> {"data", "mime", "description", "polls_left", ...}
        self.idempotency: dict[tuple, dict] = {}  # (token, Idempotency-Key) -> the status it made
        self.processing_polls = 1  # GETs of a new upload answered 206 before it is processed
        self.image_size_limit = 16 * 1024 * 1024  # Mastodon 4.4's, reported in /api/v2/instance
        self.image_matrix_limit = 33_177_600
        self.status_replies: list[Reply] = []  # scripted answers to the next POST /api/v1/statuses
        self.stall_after_accepting = 0.0  # seconds to hold the next accepted status's reply (a timeout)
        self._lock = threading.Lock()

    @property
    def issuer(self) -> str:
        return f"{self.url}/"  # Mastodon's issuer ends with a slash

    def revoke_all(self):
        """The user removes the app in their Mastodon settings."""
        self.revoked.extend(self.tokens)
        self.tokens.clear()

    def route(self, request: Request) -> Reply:
        handler = {
            "/.well-known/oauth-authorization-server": self._discovery,
            "/oauth/authorize": self._authorize,
            "/oauth/decide": self._decide,
            "/api/v1/accounts/verify_credentials": self._account,
            "/api/v2/instance": self._instance,
            "/api/v1/apps": self._register,
            "/oauth/token": self._token,
            "/oauth/revoke": self._revoke,
            "/api/v2/media": self._upload,
            "/api/v1/statuses": self._status,
        }.get(request.path)
        if request.path.startswith("/api/v1/media/"):
            handler = self._media_state
        return handler(request) if handler else Reply(404, {"error": "Record not found"})

    # -- publishing ---------------------------------------------------------------------------------
    def _token_refusal(self, request) -> Reply | None:
        if request.bearer() in self.tokens:
            return None
        if self.software == "takahe":
            return Reply(400, {"error": "Invalid Bearer token"})
        return Reply(401, {"error": "The access token is invalid"}, headers={
            "WWW-Authenticate": 'Bearer realm="Doorkeeper", error="invalid_token"'})

    def _attachment(self, media_id: str) -> dict:
        item = self.media[media_id]
        done = item["polls_left"] <= 0
        return {"id": media_id, "type": "image", "url": f"{self.url}/media/{media_id}.png" if done else None,
                "preview_url": f"{self.url}/media/{media_id}_small.png", "remote_url": None,
                "description": item["description"] or None, "blurhash": None,
                "meta": {"original": {"width": item["width"], "height": item["height"]}}}

    def _upload(self, request):
        """POST /api/v2/media: 202 with `url: null` while processing (always, here, unless
        `processing_polls` is 0); 422 for what Mastodon refuses."""
        refusal = self._token_refusal(request)
        if refusal:
            return refusal
        parts = multipart(request)
        if "file" not in parts:
            return Reply(422, {"error": "Validation failed: File can't be blank"})
        _, mime, data = parts["file"]
        if len(data) > self.image_size_limit:
            return Reply(422, {"error": f"Validation failed: File file size must be less than "
                                        f"{self.image_size_limit // (1024 * 1024)} MB"})
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except Exception:  # noqa: BLE001 -- anything Pillow cannot read is "not an image"
            return Reply(422, {"error": "Validation failed: File has contents that are not what they are reported to be"})
        if image.width * image.height > self.image_matrix_limit:
            return Reply(422, {"error": "Validation failed: File dimensions are too large"})
        description = parts.get("description", (None, "", b""))[2].decode()
        with self._lock:
            media_id = str(100000 + len(self.media))
            self.media[media_id] = {"data": data, "mime": mime, "format": image.format, "width": image.width,
                                    "height": image.height, "description": description,
                                    "polls_left": self.processing_polls, "token": request.bearer()}
        attachment = self._attachment(media_id)
        return Reply(200 if attachment["url"] else 202, attachment)

    def _media_state(self, request):
        """GET /api/v1/media/:id: 206 while processing, 200 with `url` when done."""
        refusal = self._token_refusal(request)
        if refusal:
            return refusal
        media_id = request.path.rsplit("/", 1)[1]
        item = self.media.get(media_id)
        if item is None or item["token"] != request.bearer():
            return Reply(404, {"error": "Record not found"})
        if request.method == "PUT":  # the description changed after upload
            item["description"] = request.form.get("description", item["description"])
        elif item["polls_left"] > 0:
            item["polls_left"] -= 1
            return Reply(206, self._attachment(media_id) | {"url": None})
        return Reply(200 if item["polls_left"] <= 0 else 206, self._attachment(media_id))

    def _status(self, request):
        """POST /api/v1/statuses, honouring `Idempotency-Key` as Mastodon does: the same key from the
        same token answers the status it already made, never a second one."""
        refusal = self._token_refusal(request)
        if refusal:
            return refusal
        if self.status_replies:
            return self.status_replies.pop(0)
        key = request.headers.get("Idempotency-Key")
        with self._lock:
            if key and (request.bearer(), key) in self.idempotency:
                return Reply(body=_public(self.idempotency[(request.bearer(), key)]))
            form = parse_qs(request.raw.decode(), keep_blank_values=True)
            text = (form.get("status") or [""])[0]
            media_ids = form.get("media_ids[]", [])
            problem = self._status_problem(request, text, media_ids)
            if problem:
                return Reply(422, {"error": problem})
            status_id = str(110000000000000000 + len(self.statuses))
            status = {"id": status_id, "created_at": "2026-11-23T16:00:00.000Z", "visibility": "public",
                      "uri": f"{self.url}/users/tester/statuses/{status_id}", "url": f"{self.url}/@tester/{status_id}",
                      "content": f"<p>{html.escape(text)}</p>", "text": text, "idempotency_key": key,
                      "media_attachments": [self._attachment(i) for i in media_ids],
                      "account": {"id": "42", "username": "tester", "acct": "tester"}}
            self.statuses.append(status)
            if key:
                self.idempotency[(request.bearer(), key)] = status
            stall, self.stall_after_accepting = self.stall_after_accepting, 0.0
        if stall:
            time.sleep(stall)  # accepted, but the reply comes too late: the client has given up
        return Reply(body=_public(status))

    def _status_problem(self, request, text: str, media_ids: list) -> str:
        """Mastodon's own validation: its length rule (StatusLengthValidator), its media checks."""
        if not text.strip() and not media_ids:
            return "Validation failed: Text can't be blank"
        if mastodon_length(text, characters_reserved_per_url=self.characters_reserved_per_url) > self.max_characters:
            return f"Validation failed: Text character limit of {self.max_characters} exceeded"
        if len(media_ids) > 4:
            return "Validation failed: Media attachments too many"
        for media_id in media_ids:
            item = self.media.get(media_id)
            if item is None or item["token"] != request.bearer():
                return "Validation failed: Media attachment not found"
            if item["polls_left"] > 0:
                return "Cannot attach files that have not finished processing. Try again in a moment!"
        return ""

    def _discovery(self, request):
        if self.software == "takahe":
            return Reply(404, "<html>Not found</html>", "text/html")
        document = {"issuer": self.issuer, "code_challenge_methods_supported": ["S256"],
                    "scopes_supported": ["read", "write", "push", "profile", "read:accounts", "write:media",
                                         "write:statuses"]}
        if self.send_iss:
            document["authorization_response_iss_parameter_supported"] = True
        return Reply(body=document)

    def _instance(self, request):
        if self.software == "takahe":
            return Reply(body={
                "domain": urlsplit(self.url).hostname, "version": "takahe/0.11.0",
                "source_url": "https://github.com/jointakahe/takahe",
                "configuration": {
                    "statuses": {"max_characters": self.max_characters, "max_media_attachments": 4,
                                 "characters_reserved_per_url": 23},
                    "media_attachments": {
                        "supported_mime_types": ["image/apng", "image/avif", "image/gif", "image/jpeg", "image/png",
                                                 "image/webp"],
                        "image_size_limit": 10485760, "image_matrix_limit": 4000000, "video_size_limit": 0,
                        "video_frame_rate_limit": 60, "video_matrix_limit": 4000000}}})
        return Reply(body={
            "domain": urlsplit(self.url).hostname, "version": "4.4.0", "source_url": "https://github.com/mastodon/mastodon",
            "configuration": {"statuses": {"max_characters": self.max_characters, "max_media_attachments": 4,
                                           "characters_reserved_per_url": self.characters_reserved_per_url},
                              "media_attachments": {"image_size_limit": self.image_size_limit,
                                                    "image_matrix_limit": self.image_matrix_limit}}})

    def _account(self, request):
        if request.bearer() not in self.tokens:
            if self.software == "takahe":
                return Reply(400, {"error": "Invalid Bearer token"})
            return Reply(401, {"error": "The access token is invalid"})
        return Reply(body={"id": "42", "username": "tester", "acct": "tester", "display_name": "Fake Tester",
                           "uri": f"{self.url}/users/tester", "url": f"{self.url}/@tester",
                           "avatar": f"{self.url}/avatar.png", "avatar_static": f"{self.url}/avatar.png", "note": ""})

    def _register(self, request):
        form = request.form
        client_id, client_secret = secrets.token_hex(8), secret("client-secret")
        self.apps[client_id] = {"secret": client_secret, "redirect_uris": form["redirect_uris"].split(),
                                "scopes": form.get("scopes", "read").split()}
        return Reply(body={"id": "1", "name": form["client_name"], "client_id": client_id, "client_secret": client_secret,
                           "redirect_uri": form["redirect_uris"], "redirect_uris": form["redirect_uris"].split(),
                           "scopes": form.get("scopes", "read").split()})

    def _authorize(self, request):
        query = request.query
        app = self.apps.get(query.get("client_id"))
        # Doorkeeper shows an error page and never redirects to an unregistered URI.
        if not app or query.get("redirect_uri") not in app["redirect_uris"]:
            return Reply(400, "<html>The redirect uri included is not valid.</html>", "text/html")
        if not set(query.get("scope", "read").split()) <= set(app["scopes"]):
            return redirect(query["redirect_uri"], error="invalid_scope", state=query.get("state", ""))
        if self.auto_approve:
            return self._decide(Request(request.method, "/oauth/decide", {**query, "decision": "approve"}, {}, {}))
        return self.authorize_page(request, "/oauth/decide")

    def _token(self, request):
        form = request.form
        self.token_requests.append(form)
        grant = self.codes.pop(form.get("code"), None)
        app = self.apps.get(form.get("client_id"))
        if not app or app["secret"] != form.get("client_secret"):
            return Reply(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
        if (not grant or grant["client_id"] != form.get("client_id") or grant["redirect_uri"] != form.get("redirect_uri")
                or not _pkce_ok(grant, form)):
            return Reply(400, {"error": "invalid_grant"})
        token = secret("token")
        self.tokens[token] = grant["client_id"]
        return Reply(body={"access_token": token, "token_type": "Bearer", "scope": " ".join(app["scopes"]), "created_at": 0})

    def _revoke(self, request):
        app = self.apps.get(request.form.get("client_id"))
        if not app or app["secret"] != request.form.get("client_secret"):
            return Reply(403, {"error": "unauthorized_client"})
        self.revoked.append(request.form.get("token"))
        self.tokens.pop(request.form.get("token"), None)
        return Reply(body={})

    def _decide(self, request):
        query = request.query
        extra = {"iss": self.issuer} if self.send_iss else {}
        if query.get("decision") != "approve":
            return redirect(query["redirect_uri"], error="access_denied",
                            error_description="The resource owner denied the request.", state=query["state"], **extra)
        code = secret("code")
        self.codes[code] = {"client_id": query["client_id"], "redirect_uri": query["redirect_uri"],
                            "challenge": query.get("code_challenge")}
        return redirect(query["redirect_uri"], code=code, state=query["state"], **extra)


class FakeHostileMastodon(FakeMastodon):
    """Server A of the mix-up: when a victim authorizes Hayon here, it forwards the browser to an
    honest server's authorization URL taken from the attacker's own Hayon flow, with the victim's
    state put in; its token endpoint keeps every code Hayon posts to it."""

    name = "Hostile Mastodon"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.forward_to = ""  # the attacker's authorization URL at the honest server
        self.codes_received: list[str] = []

    def _authorize(self, request):
        target = urlsplit(self.forward_to)
        params = {k: v[0] for k, v in parse_qs(target.query).items()}
        params["state"] = request.query["state"]  # the victim's state, with the attacker's PKCE challenge
        return Reply(302, b"", "text/plain",
                     {"Location": f"{target.scheme}://{target.netloc}{target.path}?{urlencode(params)}"})

    def _token(self, request):
        self.codes_received.append(request.form.get("code", ""))
        return Reply(400, {"error": "invalid_grant"})


def _public(status: dict) -> dict:
    """A status as the API shows it (without what the fake keeps for the tests to read)."""
    return {k: v for k, v in status.items() if k not in ("text", "idempotency_key")}


def _pkce_ok(grant, form):
    if not grant.get("challenge"):
        return True
    digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == grant["challenge"]
