"""Tumblr, Threads and Facebook played on 127.0.0.1 for the browser journeys and the fake-backed tests.

Each answers the calls Hayon makes with replies shaped like the platform's documentation
(tests/fixtures hold the recorded shapes), shows a consent page, and can withdraw access the way
a user does in the platform's settings (`revoke_all`). Each also checks what the real platform
checks, so a mistake in Hayon fails here as it would there: the app's secret and the redirect URI
at the code exchange, codes used once and within their lifetime, tokens that expire (`advance`
moves the fake's clock), Facebook's appsecret_proof on every call and its paged /me/accounts,
Tumblr's OAuth 1.0a signatures.
"""
import base64
import hashlib
import hmac
import io
import json
import time
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import unquote, urlencode

from django.conf import settings
from PIL import Image
from oauthlib.oauth1.rfc5849 import signature as oauth1

from .meta_publishing import FacebookPublishingRoutes, ThreadsPublishingRoutes
from .server import FakeServer, Reply, Request, multipart, redirect, secret

DAY = 86400


class Clock:
    """The fake's own time, which a test can move forward."""

    offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class FakeTumblr(Clock, FakeServer):
    """OAuth 1.0a (https://www.tumblr.com/docs/en/api/v2#oauth1-authorization) and /v2/user/info.

    Every call must be signed HMAC-SHA1 with the consumer secret (and the token's secret); a blog
    can be renamed (`rename_blog`), keeping its uuid as Tumblr does (#blog-unique-identifiers).
    """

    name = "Fake Tumblr"

    def __init__(self):
        super().__init__()
        self.consumer_key, self.consumer_secret = settings.TUMBLR_CONSUMER_KEY, settings.TUMBLR_CONSUMER_SECRET
        self.request_tokens, self.tokens = {}, {}  # token -> {"secret", ...}
        self.accounts = {"fakeblogger": [
            {"name": "fakeblogger", "title": "Fake Blog", "url": "https://fakeblogger.tumblr.com/",
             "primary": True, "uuid": "t:fake-primary"},
            {"name": "sideblog", "title": "Side Blog", "url": "https://sideblog.tumblr.com/",
             "primary": False, "uuid": "t:fake-side"}]}
        self.signed_in = "fakeblogger"  # the Tumblr account of the browser that approves the next consent
        # Publishing (https://www.tumblr.com/docs/en/api/v2#posts---createreblog-a-post-neue-post-format):
        self.posts: list[dict] = []  # every post made: {"id", "blog_uuid", "content", "images"}
        self.post_replies: list[Reply] = []  # scripted answers to the next POST /v2/blog/{id}/posts
        self.stall_after_accepting = 0.0  # seconds to hold the next accepted post's reply (a timeout)

    def revoke_all(self):
        self.tokens.clear()

    def add_account(self, account: str, blog_name: str, uuid: str) -> None:
        self.accounts[account] = [{"name": blog_name, "title": blog_name.title(), "primary": True, "uuid": uuid,
                                   "url": f"https://{blog_name}.tumblr.com/"}]

    def rename_blog(self, uuid: str, new_name: str) -> None:
        for blogs in self.accounts.values():
            for blog in blogs:
                if blog["uuid"] == uuid:
                    blog.update(name=new_name, url=f"https://{new_name}.tumblr.com/")

    def signed(self, request: Request, token_secret: str = "") -> bool:
        """RFC 5849 §3.4: recompute the HMAC-SHA1 signature the client should have sent."""
        if request.oauth1("oauth_consumer_key") != self.consumer_key or request.oauth1("oauth_signature_method") != "HMAC-SHA1":
            return False
        # Only a form-encoded body is signed (RFC 5849 §3.4.1.3.1); JSON and multipart bodies are not.
        form = request.form if request.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded") else {}
        params = oauth1.collect_parameters(uri_query=urlencode(request.query), body=form, headers=request.headers)
        base = oauth1.signature_base_string(request.method, oauth1.base_string_uri(f"{self.url}{request.path}"),
                                            oauth1.normalize_parameters(params))
        keys = SimpleNamespace(client_secret=self.consumer_secret, resource_owner_secret=token_secret)
        expected = oauth1.sign_hmac_sha1_with_client(base, keys)
        return hmac.compare_digest(expected, unquote(request.oauth1("oauth_signature")))

    def route(self, request: Request) -> Reply:
        unsigned = Reply(401, "oauth_signature does not match expected value", "text/plain")
        if request.path == "/oauth/request_token":
            if request.method != "POST" or not self.signed(request) or not request.oauth1("oauth_callback"):
                return unsigned
            token, token_secret = secret("request-token"), secret("request-secret")
            self.request_tokens[token] = {"secret": token_secret, "callback": unquote(request.oauth1("oauth_callback")),
                                          "verifier": None, "account": None}
            return Reply(body=f"oauth_token={token}&oauth_token_secret={token_secret}&oauth_callback_confirmed=true",
                         content_type="application/x-www-form-urlencoded")
        if request.path == "/oauth/authorize":
            return self.authorize_page(request, "/oauth/decide")
        if request.path == "/oauth/decide":
            return self._decide(request)
        if request.path == "/oauth/access_token":
            pending = self.request_tokens.get(request.oauth1("oauth_token"))
            if (not pending or request.method != "POST" or not self.signed(request, pending["secret"])
                    or not pending["verifier"] or pending["verifier"] != request.oauth1("oauth_verifier")):
                return unsigned
            del self.request_tokens[request.oauth1("oauth_token")]  # used once
            token, token_secret = secret("access-token"), secret("access-secret")
            self.tokens[token] = {"secret": token_secret, "account": pending["account"]}
            return Reply(body=f"oauth_token={token}&oauth_token_secret={token_secret}",
                         content_type="application/x-www-form-urlencoded")
        if request.path == "/v2/user/info":
            grant = self.tokens.get(request.oauth1("oauth_token"))
            if not grant or not self.signed(request, grant["secret"]):
                return Reply(401, {"meta": {"status": 401, "msg": "Unauthorized"}, "response": []})
            blogs = self.accounts[grant["account"]]
            primary = next(b for b in blogs if b["primary"])
            return Reply(body={"meta": {"status": 200, "msg": "OK"}, "response": {"user": {
                "name": primary["name"], "likes": 0, "following": 3, "default_post_format": "html",
                "blogs": [dict(blog, followers=1, type="public", tweet="N") for blog in blogs]}}})
        if request.path.startswith("/v2/blog/") and request.path.endswith("/posts") and request.method == "POST":
            return self._create_post(request)
        return Reply(404, {"meta": {"status": 404, "msg": "Not Found"}})

    def _blog(self, identifier: str) -> tuple[str, dict] | None:
        """(account, blog) for a blog name, hostname or uuid (#blog-identifiers)."""
        for account, blogs in self.accounts.items():
            for blog in blogs:
                if identifier in (blog["name"], blog["uuid"], f"{blog['name']}.tumblr.com"):
                    return account, blog
        return None

    def _create_post(self, request):
        """NPF post creation: JSON, or multipart with a `json` part and one part per uploaded image,
        named by the image block's `identifier`. 201 with `response.id` (a string), as documented."""
        grant = self.tokens.get(request.oauth1("oauth_token"))
        if not grant or not self.signed(request, grant["secret"]):
            return Reply(401, {"meta": {"status": 401, "msg": "Unauthorized"}, "response": [],
                               "errors": [{"title": "Unauthorized", "code": 0}]})
        found = self._blog(request.path.split("/")[3])
        if found is None:
            return _tumblr_error(404, "Not Found", "Not Found", 0)
        if found[0] != grant["account"]:
            return _tumblr_error(403, "Forbidden", "You do not have permission to post to this blog", 0)
        if self.post_replies:
            return self.post_replies.pop(0)
        parts = multipart(request)
        try:
            body = json.loads(parts["json"][2] if parts else request.raw)
        except (KeyError, ValueError):
            return _tumblr_error(400, "Bad Request", "'content' must be an array'", 8001)
        content, images = body.get("content"), []
        if not isinstance(content, list) or not content:
            return _tumblr_error(400, "Bad Request", "'content' must be an array'", 8001)
        for block in content:
            if block.get("type") == "text" and (not isinstance(block.get("text"), str) or len(block["text"]) > 4096):
                return _tumblr_error(400, "Bad Request", "Text blocks are limited to 4096 characters", 8001)
            if block.get("type") == "image":
                identifier = (block.get("media") or [{}])[0].get("identifier")
                if identifier not in parts:
                    return _tumblr_error(400, "Bad Request", "Missing media for identifier", 8001)
                try:
                    Image.open(io.BytesIO(parts[identifier][2])).load()
                except Exception:  # noqa: BLE001 -- not an image Tumblr can read
                    return _tumblr_error(400, "Bad Request", "The uploaded media is an invalid format", 8005)
                images.append({"data": parts[identifier][2], "type": parts[identifier][1],
                               "alt_text": block.get("alt_text")})
        if sum(1 for b in content if b.get("type") == "image") > 30:
            return _tumblr_error(400, "Bad Request", "Too many image blocks", 8001)
        post_id = str(7_000_000_000_000_000 + len(self.posts))
        self.posts.append({"id": post_id, "blog_uuid": found[1]["uuid"], "content": content, "images": images,
                           "state": body.get("state", "published")})
        stall, self.stall_after_accepting = self.stall_after_accepting, 0.0
        if stall:
            time.sleep(stall)  # taken, but the reply comes too late: the client has given up
        return Reply(201, {"meta": {"status": 201, "msg": "Created"}, "response": {"id": post_id}})

    def _decide(self, request):
        token = request.query["oauth_token"]
        pending = self.request_tokens[token]
        if request.query.get("decision") != "approve":
            return redirect(pending["callback"], denied=token)
        pending.update(verifier=secret("verifier"), account=self.signed_in)
        return redirect(pending["callback"], oauth_token=token, oauth_verifier=pending["verifier"])


def _tumblr_error(status: int, msg: str, title: str, code: int) -> Reply:
    """Tumblr's error shape: {"meta": {"status", "msg"}, "errors": [{"title", "code"}]}."""
    return Reply(status, {"meta": {"status": status, "msg": msg}, "response": [],
                          "errors": [{"title": title, "code": code}]})


@dataclass
class Grant:
    kind: str  # "short", "long", "user-short", "user-long", "page"
    user: str
    issued: float
    expires: float | None = None  # None: does not expire (a Page token from a long-lived user token)
    page: str = ""


class FakeMeta(Clock, FakeServer):
    """What Threads and Facebook share: a consent dialog that redirects with a code or an error,
    a code exchange that checks the app, and tokens that expire."""

    code_lifetime = 600
    user_id = "10158000000000001"

    def __init__(self, app_id: str, app_secret: str):
        super().__init__()
        self.app_id, self.app_secret = app_id, app_secret
        self.codes, self.tokens, self.revoked = {}, {}, set()

    def revoke_all(self):
        self.revoked.update(self.tokens)
        self.tokens.clear()

    def _decide(self, request):
        query = request.query
        if query.get("client_id") != self.app_id:
            return Reply(400, "<!doctype html><title>Error</title><p>Invalid App ID.</p>", "text/html")
        if query.get("decision") != "approve":  # https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow
            return redirect(query["redirect_uri"], error="access_denied", error_code="200",
                            error_description="Permissions error", error_reason="user_denied", state=query["state"])
        code = secret("code")
        self.codes[code] = {"redirect_uri": query["redirect_uri"], "issued": self.now()}
        return redirect(query["redirect_uri"], code=code, state=query["state"])

    def code_refusal(self, params: dict) -> Reply | None:
        """Meta's answers to a wrong code exchange; None when the exchange is right (the code is spent)."""
        entry = self.codes.pop(params.get("code", ""), None)
        if entry is None:
            return self.error(100, message="Invalid verification code format.")
        if self.now() - entry["issued"] > self.code_lifetime:
            return self.error(100, 36007, "This authorization code has expired.")
        if params.get("client_id") != self.app_id:
            return self.error(101, message="Error validating application. Invalid application ID.")
        if params.get("client_secret") != self.app_secret:
            return self.error(1, message="Error validating client secret.")
        if params.get("redirect_uri") != entry["redirect_uri"]:
            return self.error(100, 36008, "Error validating verification code. Please make sure your redirect_uri "
                                          "is identical to the one you used in the OAuth dialog request")
        return None

    def issue(self, kind: str, lifetime: float | None, page: str = "") -> str:
        token = secret(kind)
        now = self.now()
        self.tokens[token] = Grant(kind, self.user_id, now, now + lifetime if lifetime else None, page)
        return token

    def grant_refusal(self, token: str, *kinds: str) -> Reply | None:
        grant = self.tokens.get(token)
        if token in self.revoked:
            return self.error(190, 460, "The session has been invalidated because the user changed their password.")
        if grant is None or grant.kind not in kinds:
            return self.error(190, message="Invalid OAuth access token - Cannot parse access token")
        if grant.expires is not None and grant.expires <= self.now():
            return self.error(190, 463, "Error validating access token: Session has expired.")
        return None

    @staticmethod
    def error(code: int, subcode: int | None = None, message: str = "Error validating access token") -> Reply:
        error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"}
        if subcode:
            error["error_subcode"] = subcode
        return Reply(400, {"error": error})


class FakeThreads(ThreadsPublishingRoutes, FakeMeta):
    """https://developers.facebook.com/docs/threads/get-started/get-access-tokens-and-permissions ,
    /docs/threads/get-started/long-lived-tokens : codes live an hour, short-lived tokens an hour,
    long-lived ones 60 days and renew only once a day old."""

    name = "Fake Threads"
    code_lifetime = 3600
    user_id = "17841400000000001"

    def __init__(self):
        super().__init__(settings.THREADS_APP_ID, settings.THREADS_APP_SECRET)
        self.init_publishing()  # containers, publish, quota (meta_publishing.py)

    def route(self, request: Request) -> Reply:
        query = request.query
        if request.path == "/oauth/authorize":
            return self.authorize_page(request, "/oauth/decide")
        if request.path == "/oauth/decide":
            return self._decide(request)
        if request.path == "/oauth/access_token":  # code -> short-lived token (POST form)
            if request.method != "POST" or request.form.get("grant_type") != "authorization_code":
                return self.error(100, message="Unsupported request.")
            refusal = self.code_refusal(request.form)
            return refusal or Reply(body={"access_token": self.issue("short", 3600), "user_id": int(self.user_id)})
        if request.path == "/access_token":  # short -> long-lived (th_exchange_token)
            if query.get("grant_type") != "th_exchange_token" or query.get("client_secret") != self.app_secret:
                return self.error(1, message="Error validating client secret.")
            refusal = self.grant_refusal(query.get("access_token", ""), "short")
            return refusal or Reply(body={"access_token": self.issue("long", 60 * DAY), "token_type": "bearer",
                                          "expires_in": 60 * DAY})
        if request.path == "/refresh_access_token":  # th_refresh_token: long-lived, unexpired, a day old
            refusal = self.grant_refusal(query.get("access_token", ""), "long")
            if refusal or query.get("grant_type") != "th_refresh_token":
                return refusal or self.error(100, message="Unsupported grant type.")
            if self.now() - self.tokens[query["access_token"]].issued < DAY:
                return self.error(100, message="The access token cannot be refreshed yet.")
            return Reply(body={"access_token": self.issue("long", 60 * DAY), "token_type": "bearer", "expires_in": 60 * DAY})
        if request.path == "/v1.0/me":
            refusal = self.grant_refusal(query.get("access_token", ""), "short", "long")
            return refusal or Reply(body={"id": self.user_id, "username": "fakethreads", "name": "Fake Threads User",
                                          "threads_profile_picture_url": f"{self.url}/threads.png", "threads_biography": "hi"})
        return self.publishing_route(request) or Reply(404, {"error": {"message": "Unknown path", "code": 803}})


class FakeFacebook(FacebookPublishingRoutes, FakeMeta):
    """https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow ,
    /docs/pages/access-tokens/ , /docs/graph-api/reference/debug_token/ , /docs/graph-api/securing-requests ,
    /docs/graph-api/results (cursor paging), /docs/graph-api/reference/user/permissions/ .

    The app requires appsecret_proof ("Require App Secret"); the long-lived user token lives 60
    days and Page tokens made from it do not expire; /me/accounts answers `page_size` Pages a page.
    """

    name = "Fake Facebook"

    def __init__(self, pages: int = 2, page_size: int = 25):
        super().__init__(settings.FACEBOOK_APP_ID, settings.FACEBOOK_APP_SECRET)
        self.page_count, self.page_size = pages, page_size
        self.permissions_deleted = 0
        self.require_proof = True
        self.init_publishing()  # Page posts and Instagram containers (meta_publishing.py)

    def app_token(self) -> str:
        return f"{self.app_id}|{self.app_secret}"

    def page(self, number: int, token: str = "") -> dict:
        page = {"id": f"10{number}", "name": f"Fake Bakery {number}", "username": f"fakebakery{number}",
                "picture": {"data": {"url": f"{self.url}/page{number}.png"}}}
        if number == 1:
            page["instagram_business_account"] = {"id": "17841401", "username": "fakebakery.ig", "name": "Fake Bakery IG",
                                                  "profile_picture_url": f"{self.url}/ig.png"}
        if token:
            page["access_token"] = token
        return page

    def route(self, request: Request) -> Reply:
        path = request.path.removeprefix("/v24.0")
        if path == "/dialog/oauth":
            return self.authorize_page(request, "/v24.0/dialog/decide")
        if path == "/dialog/decide":
            return self._decide(request)
        if path == "/oauth/access_token":
            return self._exchange(request.query)
        params = {**request.query, **request.form}  # a POST carries the token in its form body
        token = params.get("access_token", "")
        refusal = self._proof_refusal(params)
        if refusal:
            return refusal
        if path == "/debug_token":
            return self._debug_token(request.query) if token == self.app_token() else self.error(
                190, message="Invalid OAuth access token - debug_token needs the app's token")
        if path in ("/me/permissions", f"/{self.user_id}/permissions") and request.method == "DELETE":
            allowed = token == self.app_token() and path != "/me/permissions"
            refusal = None if allowed else self.grant_refusal(token, "user-long")
            return refusal or self._revoke_user()
        if path in ("/me", "/me/accounts", f"/{self.user_id}/accounts"):
            refusal = self.grant_refusal(token, "user-short", "user-long")
            if refusal:
                return refusal
            return Reply(body={"id": self.user_id}) if path == "/me" else self._accounts(request.query)
        numbers = {f"/10{n}": n for n in range(1, self.page_count + 1)}
        if path in numbers:
            refusal = self.grant_refusal(token, "page", "user-long")
            return refusal or Reply(body=self.page(numbers[path]))
        return self.publishing_route(request, path, params, token) or self.error(803, message="Unknown path")

    def _proof_refusal(self, query: dict) -> Reply | None:
        """"Require App Secret": every call with a token carries HMAC-SHA256(app secret, token)."""
        token, proof = query.get("access_token", ""), query.get("appsecret_proof")
        if not self.require_proof or not token:
            return None
        if not proof:
            return Reply(400, {"error": {"message": "API calls from the server require an appsecret_proof argument",
                                         "type": "GraphMethodException", "code": 100, "fbtrace_id": "AbCdEf"}})
        expected = hmac.new(self.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(proof, expected):
            return Reply(400, {"error": {"message": "Invalid appsecret_proof provided in the API argument",
                                         "type": "GraphMethodException", "code": 100, "fbtrace_id": "AbCdEf"}})
        return None

    def _exchange(self, query: dict) -> Reply:
        if query.get("grant_type") == "fb_exchange_token":
            if query.get("client_id") != self.app_id or query.get("client_secret") != self.app_secret:
                return self.error(1, message="Error validating client secret.")
            refusal = self.grant_refusal(query.get("fb_exchange_token", ""), "user-short")
            return refusal or Reply(body={"access_token": self.issue("user-long", 60 * DAY), "token_type": "bearer",
                                          "expires_in": 60 * DAY})
        refusal = self.code_refusal(query)
        return refusal or Reply(body={"access_token": self.issue("user-short", 7200), "token_type": "bearer",
                                      "expires_in": 7200})

    def _accounts(self, query: dict) -> Reply:
        """Cursor paging: `after` names the last Page seen; `next` repeats the query with it."""
        size = min(int(query.get("limit") or self.page_size), 100)
        start = int(base64.urlsafe_b64decode(query["after"]).decode()) if query.get("after") else 0
        numbers = range(start + 1, min(start + size, self.page_count) + 1)
        data = [self.page(n, self.issue("page", None, page=f"10{n}")) for n in numbers]
        paging = {"cursors": {"before": _cursor(start + 1), "after": _cursor(start + len(data))}}
        if start + len(data) < self.page_count:
            following = {k: v for k, v in query.items() if k not in ("after", "appsecret_proof")}
            following.update(limit=size, after=_cursor(start + len(data)))
            paging["next"] = f"{self.url}/v24.0/{self.user_id}/accounts?{urlencode(following)}"
        return Reply(body={"data": data, "paging": paging})

    def _debug_token(self, query: dict) -> Reply:
        grant = self.tokens.get(query.get("input_token", ""))
        valid = grant is not None and (grant.expires is None or grant.expires > self.now())
        data = {"app_id": self.app_id, "type": "PAGE" if grant and grant.kind == "page" else "USER", "is_valid": valid,
                "expires_at": int(grant.expires or 0) if grant else 0, "data_access_expires_at": int(self.now() + 90 * DAY),
                "scopes": ["pages_manage_posts"]}
        if not valid:
            expired = grant is not None
            data["error"] = {"code": 190, "subcode": 463 if expired else 460,
                             "message": "Session has expired." if expired else "The session has been invalidated."}
        return Reply(body={"data": data})

    def _revoke_user(self) -> Reply:
        self.permissions_deleted += 1
        self.revoke_all()  # every token of the user, Page tokens too
        return Reply(body={"success": True})


def _cursor(number: int) -> str:
    return base64.urlsafe_b64encode(str(number).encode()).decode()
