"""Facebook Pages, with the Page's linked Instagram professional account (Meta Graph API).

Docs: https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow ,
/docs/facebook-login/guides/access-tokens/get-long-lived , /docs/pages/access-tokens/ ,
/docs/graph-api/reference/user/accounts , /docs/graph-api/reference/user/permissions/
A Page token obtained from a long-lived user token does not expire while the grant holds.
Every call made with a token carries its appsecret_proof (/docs/graph-api/securing-requests).
"""
import logging
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from urllib.parse import parse_qsl, urlsplit

from django.conf import settings
from django.utils import timezone

from .. import http
from ..documents import Connection, Profile, profile_from
from ..errors import FlowError, Kind, PlatformError
from .base import PendingChoice
from .meta import meta_error, token_invalid, with_token
from .facebook_publish import FacebookPublishing
from .oauth2 import OAuth2Provider

SCOPES = ("pages_show_list", "pages_manage_posts", "pages_read_engagement", "instagram_basic",
          "instagram_content_publish", "business_management")
PAGE_FIELDS = "id,name,username,access_token,picture{url},instagram_business_account{id,username,name,profile_picture_url}"
DATA_ACCESS_WARNING = timedelta(days=14)  # data access lapses 90 days after the user was last active
# /me/accounts pages its reply (25 Pages a page by default): follow `paging.next`, but only so far:
# a reply is untrusted input, and an endless `next` must not hold a request open.
MAX_PAGE_REQUESTS = 10
MAX_PAGES = 250
NO_INSTAGRAM = "No Instagram professional account is linked to this Page. Link one in the Page's settings, then refresh."
log = logging.getLogger(__name__)


def _picture(page: dict) -> str:
    picture = page.get("picture") or {}
    data = picture.get("data") if isinstance(picture, dict) else None
    return str((data or {}).get("url") or "") if isinstance(data, dict) else ""


def instagram_connection(page: dict, page_token: str) -> Connection | None:
    ig = page.get("instagram_business_account")
    if not isinstance(ig, dict) or not ig.get("id"):
        return None
    username = str(ig.get("username") or "")
    return Connection(
        profile=Profile(display_name=str(ig.get("name") or username), handle=username,
                        avatar=str(ig.get("profile_picture_url") or "")),
        account_key=f"ig:{ig['id']}",
        identifiers={"platformId": str(ig["id"])},
        auth={"pageToken": page_token},  # Instagram publishing uses the Page's token
    )


class FacebookProvider(FacebookPublishing, OAuth2Provider):
    name = "facebook"
    label = "Facebook"
    color = "#0866ff"
    icon = "f"
    summary = "A Facebook Page, and the Instagram account linked to it."
    linked = {"instagram": "Instagram"}
    required_settings = ("FACEBOOK_APP_ID", "FACEBOOK_APP_SECRET")
    scope_delimiter = ","
    token_method = "GET"  # Graph API: GET /oauth/access_token with query parameters

    def _graph(self, path: str) -> str:
        return f"{settings.FACEBOOK_GRAPH_URL.rstrip('/')}/{settings.FACEBOOK_GRAPH_VERSION}/{path.lstrip('/')}"

    def client(self, data: dict) -> dict:
        return {
            "authorize_url": f"{settings.FACEBOOK_WWW_URL.rstrip('/')}/{settings.FACEBOOK_GRAPH_VERSION}/dialog/oauth",
            "token_url": self._graph("oauth/access_token"),
            "client_id": settings.FACEBOOK_APP_ID,
            "redirect_uri": self.callback_url(),
            "scope": list(SCOPES),
        }

    def client_secret(self, payload: dict) -> str:
        return settings.FACEBOOK_APP_SECRET

    def classify_token_error(self, response):
        return meta_error(response, self.label, during_exchange=True)

    def _get(self, path: str, *, token: str = "", **params) -> dict:
        return self._get_url(self._graph(path), token=token, **params)

    def _get_url(self, url: str, *, token: str = "", **params) -> dict:
        if token:
            params = with_token(token, settings.FACEBOOK_APP_SECRET, **params)
        response = http.session().get(url, params=params)
        return http.expect_json(response, self.label, classify=lambda r: meta_error(r, self.label))

    def _app_token(self) -> str:
        # An app access token: never expires, unlike the user token (about 60 days, never renewed).
        # https://developers.facebook.com/docs/facebook-login/guides/access-tokens#apptokens
        return f"{settings.FACEBOOK_APP_ID}|{settings.FACEBOOK_APP_SECRET}"

    def fetch_pages(self, user_token: str) -> list[dict]:
        """Every Page the user shared, following `paging.next` within bounds and on the Graph host only."""
        pages, seen = [], set()
        url, params = self._graph("me/accounts"), {"fields": PAGE_FIELDS}
        for _ in range(MAX_PAGE_REQUESTS):
            reply = self._get_url(url, token=user_token, **params)
            data = reply.get("data")
            for page in data if isinstance(data, list) else []:
                if isinstance(page, dict) and page.get("id") and page.get("access_token") and str(page["id"]) not in seen:
                    seen.add(str(page["id"]))
                    pages.append(page)
            paging = reply.get("paging")
            following = self._next_page(paging.get("next") if isinstance(paging, dict) else None)
            if following is None or len(pages) >= MAX_PAGES:
                break
            url, params = following
        return pages[:MAX_PAGES]

    def _next_page(self, link) -> tuple[str, dict] | None:
        """`paging.next` as (url, params without the token), or None when there is none to follow.

        The link comes from the reply: it is followed only on the Graph host we called, and the
        token and proof are always ours, never the ones the link carries.
        """
        if not isinstance(link, str) or not link:
            return None
        base, parts = urlsplit(self._graph("")), urlsplit(link)
        same_host = (parts.scheme, parts.netloc.lower()) == (base.scheme, base.netloc.lower()) and not parts.username
        if not same_host or not parts.path.startswith(base.path):
            log.warning("facebook: ignored a paging link to another host or path")
            return None
        params = {k: v for k, v in parse_qsl(parts.query) if k not in ("access_token", "appsecret_proof")}
        return f"{parts.scheme}://{parts.netloc}{parts.path}", params

    def connection_from_token(self, *, payload: dict, token: dict):
        long_lived = self._get(
            "oauth/access_token", grant_type="fb_exchange_token", client_id=settings.FACEBOOK_APP_ID,
            client_secret=settings.FACEBOOK_APP_SECRET, fb_exchange_token=token["access_token"],
        )
        user_token = long_lived.get("access_token")
        if not user_token:
            raise PlatformError(Kind.BAD_REPLY, "Facebook sent no long-lived token.")
        me = self._get("me", fields="id", token=user_token)
        pages = self.fetch_pages(user_token)
        if not pages:
            raise FlowError(
                "no_pages",
                "Hayon publishes to Facebook Pages, and this account shared none. Create a Page, or connect "
                "again and tick your Page when Facebook asks which Pages Hayon may use.",
            )
        secret = {"userToken": user_token, "metaUserId": str(me.get("id") or ""), "pages": pages}
        if len(pages) == 1:
            return self.connect_choice(payload=secret, value=str(pages[0]["id"]))
        options = [{"id": str(p["id"]), "name": str(p.get("name") or p["id"]), "picture": _picture(p),
                    "note": "Instagram linked" if p.get("instagram_business_account") else "No Instagram account linked"}
                   for p in pages]
        return PendingChoice(options=options, payload=secret)

    def connect_choice(self, *, payload: dict, value: str) -> Connection:
        page = next(p for p in payload["pages"] if str(p["id"]) == value)
        auth = {"pageToken": page["access_token"], "userToken": payload["userToken"]}
        return self._connection(page, auth, meta_user_id=payload.get("metaUserId", ""))

    def _connection(self, page: dict, auth: dict, *, meta_user_id: str) -> Connection:
        instagram = instagram_connection(page, auth["pageToken"])
        return Connection(
            profile=Profile(display_name=str(page.get("name") or ""), handle=str(page.get("username") or page.get("name") or ""),
                            avatar=_picture(page)),
            account_key=f"page:{page['id']}",
            identifiers={"platformId": str(page["id"])},
            auth=auth,
            extra={"metaUserId": meta_user_id},
            linked={"instagram": instagram},
            linked_reasons={"instagram": NO_INSTAGRAM},
        )

    def refresh(self, *, doc: dict, auth: dict) -> Connection:
        page = self._get(doc["platformId"], fields=PAGE_FIELDS.replace("access_token,", ""), token=auth["pageToken"])
        if not page.get("id"):
            raise PlatformError(Kind.BAD_REPLY, "Facebook sent a Page without an id.")
        return self._connection(page, auth, meta_user_id=doc.get("metaUserId", ""))

    def upkeep(self, *, doc: dict, auth: dict) -> Connection:
        """debug_token on the Page token: still valid, and how long Meta keeps granting data access."""
        data = self._get("debug_token", input_token=auth["pageToken"], token=self._app_token()).get("data") or {}
        if not data.get("is_valid"):
            raise token_invalid(data.get("error") or {}, self.label)
        notice = ""
        lapses = data.get("data_access_expires_at")
        if isinstance(lapses, int) and lapses and lapses - timezone.now().timestamp() < DATA_ACCESS_WARNING.total_seconds():
            when = datetime.fromtimestamp(lapses, tz=dt_timezone.utc)
            notice = f"Facebook stops sharing data with Hayon on {when:%Y-%m-%d} unless you reconnect before then."
        return Connection(
            profile=profile_from(doc), account_key=doc.get("accountKey", f"page:{doc['platformId']}"),
            identifiers={"platformId": doc["platformId"]}, auth=auth,
            extra={"metaUserId": doc.get("metaUserId", "")}, notice=notice,
        )

    def revoke(self, *, doc: dict, auth: dict) -> None:
        """DELETE /{user-id}/permissions with the app token: the user token has lapsed after ~60 days.

        https://developers.facebook.com/docs/facebook-login/guides/permissions/request-revoke/
        Connections stored before the Meta user id was kept fall back to the user token.
        """
        user_id = str(doc.get("metaUserId") or "")
        user_id = user_id if user_id.isdigit() else ""  # a Graph id, never a path from a reply
        path, token = (f"{user_id}/permissions", self._app_token()) if user_id else ("me/permissions", auth["userToken"])
        response = http.session().delete(self._graph(path), params=with_token(token, settings.FACEBOOK_APP_SECRET))
        http.expect_json(response, self.label, classify=lambda r: meta_error(r, self.label))
