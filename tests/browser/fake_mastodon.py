"""A small Mastodon-shaped OAuth server on 127.0.0.1 for browser tests.

It registers apps, shows an authorization page with Authorize / Deny buttons, exchanges codes
(checking client, secret, redirect URI and PKCE), answers verify_credentials, and records revocations.
"""
import base64
import hashlib
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit


class FakeMastodon:
    def __init__(self):
        self.apps, self.codes, self.tokens, self.revoked = {}, {}, {}, []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def revoke_all(self):
        """The user removes the app in their Mastodon settings."""
        self.revoked.extend(self.tokens)
        self.tokens.clear()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body, content_type="application/json", headers=None):
                data = body if isinstance(body, bytes) else (json.dumps(body) if content_type == "application/json" else body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _form(self):
                length = int(self.headers.get("Content-Length") or 0)
                return {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}

            def do_GET(self):
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/.well-known/oauth-authorization-server":
                    return self._send(200, {"issuer": fake.url, "code_challenge_methods_supported": ["S256"],
                                            "scopes_supported": ["read", "write", "push", "profile", "write:media", "write:statuses"]})
                if url.path == "/oauth/authorize":
                    return self._authorize_page(query)
                if url.path == "/oauth/decide":
                    return self._decide(query)
                if url.path == "/api/v1/accounts/verify_credentials":
                    token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                    if token not in fake.tokens:
                        return self._send(401, {"error": "The access token is invalid"})
                    return self._send(200, {"id": "42", "username": "tester", "acct": "tester", "display_name": "Fake Tester",
                                            "avatar": f"{fake.url}/avatar.png", "avatar_static": f"{fake.url}/avatar.png", "note": ""})
                if url.path == "/api/v2/instance":
                    return self._send(200, {"configuration": {"statuses": {"max_characters": 700, "max_media_attachments": 4}}})
                if url.path == "/avatar.png":
                    return self._send(200, base64.b64decode(
                        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="), "image/png")
                return self._send(404, {"error": "Record not found"})

            def do_POST(self):
                url = urlsplit(self.path)
                form = self._form()
                if url.path == "/api/v1/apps":
                    client_id, secret = secrets.token_hex(8), secrets.token_hex(16)
                    fake.apps[client_id] = {"secret": secret, "redirect_uri": form["redirect_uris"], "scopes": form["scopes"]}
                    return self._send(200, {"id": "1", "name": form["client_name"], "client_id": client_id, "client_secret": secret,
                                            "redirect_uri": form["redirect_uris"]})
                if url.path == "/oauth/token":
                    grant = fake.codes.pop(form.get("code"), None)
                    app = fake.apps.get(form.get("client_id"))
                    if not app or app["secret"] != form.get("client_secret"):
                        return self._send(401, {"error": "invalid_client"})
                    if not grant or grant["redirect_uri"] != form.get("redirect_uri") or not _pkce_ok(grant, form):
                        return self._send(400, {"error": "invalid_grant"})
                    token = secrets.token_hex(16)
                    fake.tokens[token] = grant["client_id"]
                    return self._send(200, {"access_token": token, "token_type": "Bearer", "scope": app["scopes"], "created_at": 0})
                if url.path == "/oauth/revoke":
                    fake.revoked.append(form.get("token"))
                    fake.tokens.pop(form.get("token"), None)
                    return self._send(200, {})
                return self._send(404, {"error": "Record not found"})

            def _authorize_page(self, query):
                approve = "/oauth/decide?" + urlencode({**query, "decision": "approve"})
                deny = "/oauth/decide?" + urlencode({**query, "decision": "deny"})
                html = (f"<!doctype html><title>Authorize Hayon</title><h1>Fake Mastodon</h1><p>Hayon wants {query.get('scope')}</p>"
                        f'<a id="approve" href="{approve}">Authorize</a> <a id="deny" href="{deny}">Deny</a>')
                return self._send(200, html, "text/html")

            def _decide(self, query):
                redirect = query["redirect_uri"]
                if query.get("decision") != "approve":
                    target = redirect + "?" + urlencode({"error": "access_denied", "error_description": "The resource owner denied the request.", "state": query["state"]})
                else:
                    code = secrets.token_hex(8)
                    fake.codes[code] = {"client_id": query["client_id"], "redirect_uri": redirect,
                                        "challenge": query.get("code_challenge")}
                    target = redirect + "?" + urlencode({"code": code, "state": query["state"]})
                return self._send(302, b"", "text/plain", {"Location": target})

        return Handler


def _pkce_ok(grant, form):
    if not grant.get("challenge"):
        return True
    digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == grant["challenge"]
