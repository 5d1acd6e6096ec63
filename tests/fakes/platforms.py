"""Tumblr, Threads and Facebook played on 127.0.0.1 for the browser journeys.

Each answers the calls Hayon makes with replies shaped like the platform's documentation
(tests/fixtures hold the recorded shapes), shows a consent page, and can withdraw access the way
a user does in the platform's settings (`revoke_all`).
"""
from urllib.parse import unquote

from .server import FakeServer, Reply, Request, redirect, secret


class FakeTumblr(FakeServer):
    """OAuth 1.0a (https://www.tumblr.com/docs/en/api/v2#oauth1-authorization) and /v2/user/info."""

    name = "Fake Tumblr"

    def __init__(self):
        super().__init__()
        self.request_tokens, self.tokens = {}, set()

    def revoke_all(self):
        self.tokens.clear()

    def route(self, request: Request) -> Reply:
        if request.path == "/oauth/request_token":
            token = secret("request-token")
            self.request_tokens[token] = {"callback": unquote(request.oauth1("oauth_callback")), "verifier": None}
            return Reply(body=f"oauth_token={token}&oauth_token_secret={secret('request-secret')}&oauth_callback_confirmed=true",
                         content_type="application/x-www-form-urlencoded")
        if request.path == "/oauth/authorize":
            return self.authorize_page(request, "/oauth/decide")
        if request.path == "/oauth/decide":
            return self._decide(request)
        if request.path == "/oauth/access_token":
            pending = self.request_tokens.pop(request.oauth1("oauth_token"), None)
            if not pending or pending["verifier"] != request.oauth1("oauth_verifier"):
                return Reply(401, "oauth_signature does not match expected value", "text/plain")
            token = secret("access-token")
            self.tokens.add(token)
            return Reply(body=f"oauth_token={token}&oauth_token_secret={secret('access-secret')}",
                         content_type="application/x-www-form-urlencoded")
        if request.path == "/v2/user/info":
            if request.oauth1("oauth_token") not in self.tokens:
                return Reply(401, {"meta": {"status": 401, "msg": "Unauthorized"}, "response": []})
            return Reply(body={"meta": {"status": 200, "msg": "OK"}, "response": {"user": {
                "name": "fakeblogger", "blogs": [
                    {"name": "fakeblogger", "title": "Fake Blog", "url": "https://fakeblogger.tumblr.com/",
                     "primary": True, "uuid": "t:fake-primary"},
                    {"name": "sideblog", "title": "Side Blog", "url": "https://sideblog.tumblr.com/",
                     "primary": False, "uuid": "t:fake-side"}]}}})
        return Reply(404, {"meta": {"status": 404, "msg": "Not Found"}})

    def _decide(self, request):
        token = request.query["oauth_token"]
        pending = self.request_tokens[token]
        if request.query.get("decision") != "approve":
            return redirect(pending["callback"], denied=token)
        pending["verifier"] = secret("verifier")
        return redirect(pending["callback"], oauth_token=token, oauth_verifier=pending["verifier"])


class FakeMeta(FakeServer):
    """What Threads and Facebook share: a consent dialog that redirects with a code or an error."""

    def __init__(self):
        super().__init__()
        self.codes, self.tokens = set(), set()

    def revoke_all(self):
        self.tokens.clear()

    def _decide(self, request):
        query = request.query
        if query.get("decision") != "approve":  # https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow
            return redirect(query["redirect_uri"], error="access_denied", error_code="200",
                            error_description="Permissions error", error_reason="user_denied", state=query["state"])
        code = secret("code")
        self.codes.add(code)
        return redirect(query["redirect_uri"], code=code, state=query["state"])

    def _new_token(self, prefix: str) -> str:
        token = secret(prefix)
        self.tokens.add(token)
        return token

    @staticmethod
    def error(code: int, subcode: int | None = None, message: str = "Error validating access token") -> Reply:
        error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"}
        if subcode:
            error["error_subcode"] = subcode
        return Reply(400, {"error": error})


class FakeThreads(FakeMeta):
    """https://developers.facebook.com/docs/threads/get-started/get-access-tokens-and-permissions"""

    name = "Fake Threads"

    def route(self, request: Request) -> Reply:
        if request.path == "/oauth/authorize":
            return self.authorize_page(request, "/oauth/decide")
        if request.path == "/oauth/decide":
            return self._decide(request)
        if request.path == "/oauth/access_token":  # code -> short-lived token (POST form)
            if request.form.get("code") not in self.codes:
                return self.error(100, message="Invalid verification code format.")
            self.codes.discard(request.form["code"])
            return Reply(body={"access_token": self._new_token("short"), "user_id": 17841400000000001})
        if request.path == "/access_token":  # short -> long-lived (th_exchange_token)
            if request.query.get("access_token") not in self.tokens:
                return self.error(190)
            return Reply(body={"access_token": self._new_token("long"), "token_type": "bearer", "expires_in": 5183944})
        if request.path == "/v1.0/me":
            if request.query.get("access_token") not in self.tokens:
                return self.error(190, 460, "The session has been invalidated because the user changed their password.")
            return Reply(body={"id": "17841400000000001", "username": "fakethreads", "name": "Fake Threads User",
                               "threads_profile_picture_url": f"{self.url}/threads.png", "threads_biography": "hi"})
        return Reply(404, {"error": {"message": "Unknown path", "code": 803}})


class FakeFacebook(FakeMeta):
    """https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow ,
    /docs/pages/access-tokens/ , /docs/graph-api/reference/debug_token/ ."""

    name = "Fake Facebook"

    def __init__(self, pages: int = 2):
        super().__init__()
        self.page_count = pages
        self.permissions_deleted = 0

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
        token = request.query.get("access_token", "")
        if path == "/dialog/oauth":
            return self.authorize_page(request, "/v24.0/dialog/decide")
        if path == "/dialog/decide":
            return self._decide(request)
        if path == "/oauth/access_token":
            return self._exchange(request.query)
        if path == "/debug_token":
            valid = request.query.get("input_token") in self.tokens
            data = {"app_id": "1234567890", "type": "PAGE", "is_valid": valid, "expires_at": 0,
                    "data_access_expires_at": 1893456000, "scopes": ["pages_manage_posts"]}
            if not valid:
                data["error"] = {"code": 190, "subcode": 460, "message": "The session has been invalidated."}
            return Reply(body={"data": data})
        if token not in self.tokens:
            return self.error(190, 460)
        if path == "/me":
            return Reply(body={"id": "10158000000000001"})
        if path == "/me/accounts":
            return Reply(body={"data": [self.page(n, self._new_token(f"page{n}")) for n in range(1, self.page_count + 1)]})
        if path == "/me/permissions" and request.method == "DELETE":
            self.permissions_deleted += 1
            self.tokens.clear()
            return Reply(body={"success": True})
        if path.startswith("/10"):
            return Reply(body=self.page(int(path[3:])))
        return self.error(803, message="Unknown path")

    def _exchange(self, query: dict) -> Reply:
        if query.get("grant_type") == "fb_exchange_token":
            if query.get("fb_exchange_token") not in self.tokens:
                return self.error(190)
            return Reply(body={"access_token": self._new_token("user-long"), "token_type": "bearer", "expires_in": 5183944})
        if query.get("code") not in self.codes:
            return self.error(100, message="Invalid verification code format.")
        self.codes.discard(query["code"])
        return Reply(body={"access_token": self._new_token("user-short"), "token_type": "bearer", "expires_in": 5183})
