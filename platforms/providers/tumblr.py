"""Tumblr over OAuth 1.0a (requests-oauthlib signs; http.session() sends).

Docs: https://www.tumblr.com/docs/en/api/v2#oauth1-authorization , #userinfo--get-a-users-information ,
#avatar--retrieve-a-blog-avatar . Tokens do not expire; there is no revoke API; the consumer key
is limited to 1,000 calls an hour for the whole app, so a refresh makes exactly one call.
The account is keyed on the primary blog's uuid: blog names (and the user's name, which is the
primary blog's) can be renamed, the uuid stays (#blog-unique-identifiers).
"""
from urllib.parse import parse_qs, urlencode, urlsplit

from django.conf import settings
from requests_oauthlib import OAuth1

from .. import http
from ..documents import Connection, Profile
from ..errors import FlowError, Kind, PlatformError
from .base import Authorization, Provider, single_param
from .tumblr_publish import TumblrPublishing


def _form(response, label: str) -> dict:
    if response.status_code == 401:
        raise PlatformError(Kind.REJECTED, f"{label} did not accept the authorization. Please connect again.", status=401)
    if not 200 <= response.status_code < 300:
        raise http.default_error(response, label)
    values = {key: v[0] for key, v in parse_qs(response.text).items()}
    if not values.get("oauth_token") or not values.get("oauth_token_secret"):
        raise PlatformError(Kind.BAD_REPLY, f"{label} sent an incomplete token reply.", status=response.status_code)
    return values


def extract_blogs(user: dict) -> list[dict]:
    blogs = []
    for blog in user.get("blogs") or []:
        if not isinstance(blog, dict) or not blog.get("name"):
            continue
        host = urlsplit(blog.get("url") or "").hostname or f"{blog['name']}.tumblr.com"
        blogs.append({
            "name": blog["name"], "title": blog.get("title") or blog["name"], "hostname": host,
            "uuid": str(blog.get("uuid") or ""), "primary": bool(blog.get("primary")),
        })
    return blogs


class TumblrProvider(TumblrPublishing, Provider):
    name = "tumblr"
    label = "Tumblr"
    color = "#001935"
    icon = "t"
    summary = "Your Tumblr blogs, over OAuth 1.0a."
    required_settings = ("TUMBLR_CONSUMER_KEY", "TUMBLR_CONSUMER_SECRET")
    signed_state = False  # the request token names the flow; OAuth 1.0a has no state parameter
    revokes_remotely = False
    manage_access_url = "https://www.tumblr.com/settings/apps"
    # The consumer key allows 1,000 calls an hour for the whole app: upkeep takes at most this many,
    # leaving the rest for people refreshing and posting.
    upkeep_per_hour_setting = "HAYON_TUMBLR_UPKEEP_PER_HOUR"
    choice_field = "blogs"
    choice_label = "Blog"

    def _auth(self, token: str = "", secret: str = "", **extra) -> OAuth1:
        return OAuth1(
            settings.TUMBLR_CONSUMER_KEY, settings.TUMBLR_CONSUMER_SECRET,
            resource_owner_key=token or None, resource_owner_secret=secret or None, **extra,
        )

    def begin(self, *, state: str, data: dict) -> Authorization:
        response = http.session().post(
            f"{settings.TUMBLR_WWW_URL}/oauth/request_token", auth=self._auth(callback_uri=self.callback_url())
        )
        token = _form(response, self.label)
        query = urlencode({"oauth_token": token["oauth_token"]})
        return Authorization(
            url=f"{settings.TUMBLR_WWW_URL}/oauth/authorize?{query}",
            payload={"token": token["oauth_token"], "secret": token["oauth_token_secret"]},
            flow_key=token["oauth_token"],
        )

    def flow_key(self, query) -> str:
        return single_param(query, "oauth_token") or single_param(query, "denied")

    def finish(self, *, payload: dict, query) -> Connection:
        if "denied" in query:
            raise FlowError("connection_cancelled", "Connection to Tumblr cancelled.")
        verifier = single_param(query, "oauth_verifier")
        if not verifier or single_param(query, "oauth_token") != payload["token"]:
            raise FlowError("missing_code", "Tumblr did not send a verifier. Please connect again.")
        response = http.session().post(
            f"{settings.TUMBLR_WWW_URL}/oauth/access_token",
            auth=self._auth(payload["token"], payload["secret"], verifier=verifier),
        )
        token = _form(response, self.label)
        auth = {"oauthToken": token["oauth_token"], "oauthTokenSecret": token["oauth_token_secret"]}
        return self._connection(auth, chosen_uuid=None)

    def _connection(self, auth: dict, *, chosen_uuid: str | None) -> Connection:
        user = self.fetch_user(auth)
        return self._from_blogs(auth, str(user.get("name") or ""), extract_blogs(user), chosen_uuid)

    def _from_blogs(self, auth: dict, user_name: str, blogs: list[dict], chosen_uuid: str | None) -> Connection:
        if not blogs:
            raise PlatformError(Kind.BAD_REPLY, "This Tumblr account has no blog to connect.")
        primary = next((b for b in blogs if b["primary"]), None)
        if primary is None or not primary["uuid"]:
            raise PlatformError(Kind.BAD_REPLY, "Tumblr did not say which blog is your primary one, or sent it without its id.")
        blog = next((b for b in blogs if chosen_uuid and b["uuid"] == chosen_uuid), primary)
        return Connection(
            profile=Profile(
                display_name=blog["title"], handle=blog["name"],
                avatar=f"{settings.TUMBLR_API_URL}/v2/blog/{blog['hostname']}/avatar/128",
            ),
            account_key=primary["uuid"],
            identifiers={"blogHostname": blog["hostname"], "blogUuid": blog["uuid"]},
            auth=auth,
            extra={"blogs": blogs, "userName": user_name},
        )

    def fetch_user(self, auth: dict) -> dict:
        response = http.session().get(
            f"{settings.TUMBLR_API_URL}/v2/user/info",
            auth=self._auth(auth["oauthToken"], auth["oauthTokenSecret"]),
        )
        data = http.expect_json(response, self.label, classify=self._error)
        user = (data.get("response") or {}).get("user")
        if not isinstance(user, dict):
            raise PlatformError(Kind.BAD_REPLY, "Tumblr sent a reply Hayon could not read.")
        return user

    def _error(self, response):
        if response.status_code == 401:  # OAuth 1.0a tokens do not expire: 401 means access removed
            return PlatformError(Kind.REVOKED, "Tumblr no longer accepts Hayon's access. Reconnect.", status=401)
        return None

    def refresh(self, *, doc: dict, auth: dict) -> Connection:
        return self._connection(auth, chosen_uuid=doc.get("blogUuid"))

    def choice_options(self, doc: dict) -> list[dict]:
        chosen = doc.get("blogUuid")
        return [{"value": blog["uuid"], "text": f"{blog['title']} ({blog['name']})", "selected": blog["uuid"] == chosen}
                for blog in doc.get("blogs") or []]

    def choose(self, *, doc: dict, auth: dict, value: str) -> Connection:
        """Switch blogs from the list read at the last refresh: no Tumblr call, no rate limit spent."""
        blogs = doc.get("blogs") or []
        if not any(b.get("uuid") == value for b in blogs):
            raise FlowError("invalid_input", "That blog is not one of yours.")
        return self._from_blogs(auth, doc.get("userName", ""), blogs, value)
