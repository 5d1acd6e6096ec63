"""A small Mastodon-shaped OAuth server on 127.0.0.1 for browser tests.

It registers apps, shows an authorization page with Authorize / Deny links, exchanges codes
(checking client, secret, redirect URI and PKCE), answers verify_credentials, and records
revocations. Shapes: https://docs.joinmastodon.org/methods/apps/ , /methods/oauth/ ,
/methods/accounts/#verify_credentials .
"""
import base64
import hashlib
import secrets

from .server import FakeServer, Reply, Request, redirect, secret


class FakeMastodon(FakeServer):
    name = "Fake Mastodon"

    def __init__(self):
        super().__init__()
        self.apps, self.codes, self.tokens, self.revoked = {}, {}, {}, []

    def revoke_all(self):
        """The user removes the app in their Mastodon settings."""
        self.revoked.extend(self.tokens)
        self.tokens.clear()

    def route(self, request: Request) -> Reply:
        handler = {
            "/.well-known/oauth-authorization-server": self._discovery,
            "/oauth/authorize": lambda r: self.authorize_page(r, "/oauth/decide"),
            "/oauth/decide": self._decide,
            "/api/v1/accounts/verify_credentials": self._account,
            "/api/v2/instance": lambda r: Reply(body={"configuration": {"statuses": {"max_characters": 700, "max_media_attachments": 4}}}),
            "/api/v1/apps": self._register,
            "/oauth/token": self._token,
            "/oauth/revoke": self._revoke,
        }.get(request.path)
        return handler(request) if handler else Reply(404, {"error": "Record not found"})

    def _discovery(self, request):
        return Reply(body={"issuer": self.url, "code_challenge_methods_supported": ["S256"],
                           "scopes_supported": ["read", "write", "push", "profile", "write:media", "write:statuses"]})

    def _account(self, request):
        if request.bearer() not in self.tokens:
            return Reply(401, {"error": "The access token is invalid"})
        return Reply(body={"id": "42", "username": "tester", "acct": "tester", "display_name": "Fake Tester",
                           "avatar": f"{self.url}/avatar.png", "avatar_static": f"{self.url}/avatar.png", "note": ""})

    def _register(self, request):
        form = request.form
        client_id, client_secret = secrets.token_hex(8), secret("client-secret")
        self.apps[client_id] = {"secret": client_secret, "redirect_uri": form["redirect_uris"], "scopes": form["scopes"]}
        return Reply(body={"id": "1", "name": form["client_name"], "client_id": client_id, "client_secret": client_secret,
                           "redirect_uri": form["redirect_uris"]})

    def _token(self, request):
        form = request.form
        grant = self.codes.pop(form.get("code"), None)
        app = self.apps.get(form.get("client_id"))
        if not app or app["secret"] != form.get("client_secret"):
            return Reply(401, {"error": "invalid_client"})
        if not grant or grant["redirect_uri"] != form.get("redirect_uri") or not _pkce_ok(grant, form):
            return Reply(400, {"error": "invalid_grant"})
        token = secret("token")
        self.tokens[token] = grant["client_id"]
        return Reply(body={"access_token": token, "token_type": "Bearer", "scope": app["scopes"], "created_at": 0})

    def _revoke(self, request):
        self.revoked.append(request.form.get("token"))
        self.tokens.pop(request.form.get("token"), None)
        return Reply(body={})

    def _decide(self, request):
        query = request.query
        if query.get("decision") != "approve":
            return redirect(query["redirect_uri"], error="access_denied",
                            error_description="The resource owner denied the request.", state=query["state"])
        code = secret("code")
        self.codes[code] = {"client_id": query["client_id"], "redirect_uri": query["redirect_uri"],
                            "challenge": query.get("code_challenge")}
        return redirect(query["redirect_uri"], code=code, state=query["state"])


def _pkce_ok(grant, form):
    if not grant.get("challenge"):
        return True
    digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == grant["challenge"]
