"""The plumbing shared by the browser tests' fake platforms: an HTTP server on 127.0.0.1 in a
thread, and an authorization page with Authorize and Deny links, as each platform shows one.

A fake answers `route(request)` with a `Reply`; what it answers is shaped like the platform's
documentation (see each fake's docstring).
"""
import base64
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from ..conftest import SENTINEL



def secret(kind: str) -> str:
    """Every secret a fake issues carries the sentinel, so the sweep can find any leak of it."""
    return f"{SENTINEL}-{kind}-{secrets.token_hex(6)}"


PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


@dataclass
class Request:
    method: str
    path: str
    query: dict
    form: dict
    headers: dict
    raw: bytes = b""  # the body as sent (a multipart upload is not text)

    def bearer(self) -> str:
        return self.headers.get("Authorization", "").removeprefix("Bearer ")

    def oauth1(self, name: str) -> str:
        """A parameter of an OAuth 1.0a Authorization header (RFC 5849 §3.5.1)."""
        found = re.search(rf'{name}="([^"]*)"', self.headers.get("Authorization", ""))
        return found.group(1) if found else ""


@dataclass
class Reply:
    status: int = 200
    body: object = field(default_factory=dict)
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)


def multipart(request: Request) -> dict:
    """A multipart/form-data body as {name: (filename or None, content type, bytes)}."""
    from email import policy
    from email.parser import BytesParser

    content_type = request.headers.get("Content-Type", "")
    if not content_type.startswith("multipart/form-data"):
        return {}
    message = BytesParser(policy=policy.default).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + request.raw)
    return {part.get_param("name", header="content-disposition"):
            (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
            for part in message.iter_parts()}


def redirect(url: str, **params) -> Reply:
    return Reply(302, b"", "text/plain", {"Location": f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"})


class FakeServer:
    name = "Fake platform"

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.calls: list[Request] = []

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def route(self, request: Request) -> Reply:
        raise NotImplementedError

    def authorize_page(self, request: Request, decide_path: str) -> Reply:
        """The consent screen: Authorize and Deny lead to `decide_path` with the query kept."""
        approve = f"{decide_path}?" + urlencode({**request.query, "decision": "approve"})
        deny = f"{decide_path}?" + urlencode({**request.query, "decision": "deny"})
        html = (f"<!doctype html><title>Authorize Hayon</title><h1>{self.name}</h1>"
                f'<p>Hayon asks for access.</p><a id="approve" href="{approve}">Authorize</a> '
                f'<a id="deny" href="{deny}">Deny</a>')
        return Reply(200, html, "text/html")


def _handler(fake: FakeServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self._answer()

        do_POST = do_DELETE = do_PUT = do_GET

        def _answer(self):
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = raw.decode("utf-8", "replace")
            request = Request(
                self.command, url.path, {k: v[0] for k, v in parse_qs(url.query).items()},
                {k: v[0] for k, v in parse_qs(body).items()}, dict(self.headers), raw,
            )
            fake.calls.append(request)
            is_image = url.path.endswith(".png") or "/avatar/" in url.path  # Tumblr: /v2/blog/{host}/avatar/128
            reply = Reply(200, PNG, "image/png") if is_image else fake.route(request)
            body = reply.body
            data = body if isinstance(body, bytes) else (json.dumps(body) if reply.content_type == "application/json" else body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
