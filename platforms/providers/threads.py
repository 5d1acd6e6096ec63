"""Threads (a Meta app of its own, separate from Facebook): OAuth 2.0, long-lived tokens.

Docs: https://developers.facebook.com/docs/threads/get-started/get-access-tokens-and-permissions ,
https://developers.facebook.com/docs/threads/get-started/long-lived-tokens
A long-lived token lives 60 days and can be renewed with th_refresh_token once it is 24 hours old
and not expired. Threads has no revoke API.
"""
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .. import http
from ..documents import Connection, Profile, iso, parse_iso, profile_from
from ..errors import Kind, PlatformError
from .meta import meta_error
from .threads_publish import ThreadsPublishing
from .oauth2 import OAuth2Provider, callback_code

PROFILE_FIELDS = "id,username,name,threads_profile_picture_url,threads_biography"
RENEWABLE_AFTER = timedelta(hours=24)


class ThreadsProvider(ThreadsPublishing, OAuth2Provider):
    name = "threads"
    label = "Threads"
    color = "#101010"
    icon = "@"
    summary = "Your Threads profile (a separate Meta app from Facebook)."
    required_settings = ("THREADS_APP_ID", "THREADS_APP_SECRET", "THREADS_REDIRECT_URI")
    scope_delimiter = ","
    revokes_remotely = False
    manage_access_url = "https://www.threads.net/settings/account"

    def _graph(self, path: str) -> str:
        return f"{settings.THREADS_GRAPH_URL.rstrip('/')}/{path.lstrip('/')}"

    def callback_url(self) -> str:
        return settings.THREADS_REDIRECT_URI

    def client(self, data: dict) -> dict:
        return {
            "authorize_url": settings.THREADS_AUTHORIZE_URL,
            "token_url": self._graph("oauth/access_token"),
            "client_id": settings.THREADS_APP_ID,
            "redirect_uri": self.callback_url(),
            "scope": [s.strip() for s in settings.THREADS_SCOPES.split(",") if s.strip()],
        }

    def client_secret(self, payload: dict) -> str:
        return settings.THREADS_APP_SECRET

    def classify_token_error(self, response):
        return meta_error(response, self.label, during_exchange=True)

    def finish(self, *, payload: dict, query):
        code = callback_code(query, self.label).removesuffix("#_")  # Meta appends "#_" to the code
        token = self.exchange_code(payload=payload, code=code)
        return self.connection_from_token(payload=payload, token=token)

    def connection_from_token(self, *, payload: dict, token: dict) -> Connection:
        # Short-lived (1 hour) -> long-lived (60 days). If this fails nothing has been stored yet.
        response = http.session().get(
            self._graph("access_token"),
            params={"grant_type": "th_exchange_token", "client_secret": settings.THREADS_APP_SECRET,
                    "access_token": token["access_token"]},
        )
        return self._connection(self._token(response))

    def _token(self, response) -> dict:
        data = http.expect_json(response, self.label, classify=lambda r: meta_error(r, self.label))
        if not data.get("access_token"):
            raise PlatformError(Kind.BAD_REPLY, "Threads sent no access token.")
        lifetime = data.get("expires_in") if isinstance(data.get("expires_in"), int) else 60 * 86400
        return {"accessToken": data["access_token"], "issuedAt": iso(timezone.now()),
                "expiresAt": iso(timezone.now() + timedelta(seconds=lifetime))}

    def _connection(self, auth: dict) -> Connection:
        response = http.session().get(
            self._graph("v1.0/me"), params={"fields": PROFILE_FIELDS, "access_token": auth["accessToken"]}
        )
        me = http.expect_json(response, self.label, classify=lambda r: meta_error(r, self.label))
        if not me.get("id"):
            raise PlatformError(Kind.BAD_REPLY, "Threads sent a profile without an id.")
        username = str(me.get("username") or "")
        return Connection(
            profile=Profile(
                display_name=str(me.get("name") or username), handle=username,
                avatar=str(me.get("threads_profile_picture_url") or ""),
                description=str(me.get("threads_biography") or ""),
            ),
            account_key=str(me["id"]),
            identifiers={"platformId": str(me["id"])},
            auth={"accessToken": auth["accessToken"], "issuedAt": auth["issuedAt"]},
            expires_at=parse_iso(auth["expiresAt"]),
        )

    def refresh(self, *, doc: dict, auth: dict) -> Connection:
        return self._verify_renewing_if(doc, auth, renew=self.needs_renewal(auth))

    def upkeep(self, *, doc: dict, auth: dict) -> Connection:
        """Renew only when the token is at least a day old and expires within the renewal window."""
        expires = parse_iso(doc.get("expiresAt"))
        expiring = expires is not None and expires - timezone.now() <= self.renew_window
        return self._verify_renewing_if(doc, auth, renew=expiring and self.needs_renewal(auth))

    def _verify_renewing_if(self, doc: dict, auth: dict, *, renew: bool) -> Connection:
        """Renew the token first when asked, then read the profile with the token now current."""
        now = timezone.now()
        expires = parse_iso(doc.get("expiresAt"))
        if expires and expires <= now:
            raise PlatformError(Kind.EXPIRED, "The Threads token has expired. Reconnect Threads.")
        current = {**auth, "expiresAt": doc.get("expiresAt")}
        renewed = None
        if renew:
            response = http.session().get(
                self._graph("refresh_access_token"),
                params={"grant_type": "th_refresh_token", "access_token": auth["accessToken"]},
            )
            current = renewed = self._token(response)
        try:
            return self._connection(current)
        except Exception as exc:  # noqa: BLE001 -- whatever failed, the renewed token and its expiry are kept
            error = exc if isinstance(exc, PlatformError) else PlatformError(
                Kind.UNEXPECTED, "Threads sent a reply Hayon could not use.")
            if renewed:
                error.replacement = Connection(
                    profile=profile_from(doc), account_key=str(doc.get("accountKey") or doc.get("platformId") or ""),
                    identifiers={"platformId": doc.get("platformId", "")},
                    auth={"accessToken": renewed["accessToken"], "issuedAt": renewed["issuedAt"]},
                    expires_at=parse_iso(renewed["expiresAt"]),
                )
            if error is exc:
                raise
            raise error from None

    def needs_renewal(self, auth: dict) -> bool:
        issued = parse_iso(auth.get("issuedAt"))
        return issued is None or timezone.now() - issued >= RENEWABLE_AFTER
