"""Mastodon, and any server speaking its API: OAuth 2.0 with an app registered per server.

Docs: https://docs.joinmastodon.org/spec/oauth/ , /methods/apps/ , /methods/oauth/ ,
/methods/accounts/#verify_credentials , /methods/instance/
"""
import logging
import re

from django import forms
from django.conf import settings
from django.db import IntegrityError

from .. import crypto, hosts, http
from ..documents import Connection, Profile
from ..errors import FlowError, Kind, PlatformError
from ..models import MastodonApp
from .oauth2 import OAuth2Provider

log = logging.getLogger(__name__)

# Where /.well-known/oauth-authorization-server advertises them (Mastodon 4.3+): the least we need.
NARROW_SCOPES = ("profile", "write:media", "write:statuses")
DEFAULT_LIMITS = {"maxCharacters": 500, "maxMediaAttachments": 4}  # Mastodon's own defaults
_TAGS = re.compile(r"<[^>]+>")


class ServerForm(forms.Form):
    instance = forms.CharField(
        label="Your server",
        max_length=300,
        required=False,
        help_text="Your server or handle, such as mastodon.social or @you@fosstodon.org.",
        widget=forms.TextInput(attrs={"placeholder": "mastodon.social", "autocomplete": "url"}),
    )


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def extract_profile(data: dict) -> Profile:
    """CredentialAccount -> Profile. Other servers omit fields Mastodon always sends."""
    username = _text(data.get("username")) or _text(data.get("acct")).split("@")[0]
    return Profile(
        display_name=_text(data.get("display_name")) or username,
        handle=username,
        avatar=_text(data.get("avatar_static")) or _text(data.get("avatar")),
        description=_TAGS.sub("", _text(data.get("note"))).strip()[:500],
    )


def extract_limits(data: dict) -> dict:
    statuses = ((data.get("configuration") or {}).get("statuses")) or {}
    limits = dict(DEFAULT_LIMITS)
    for key, field in (("maxCharacters", "max_characters"), ("maxMediaAttachments", "max_media_attachments")):
        if isinstance(statuses.get(field), int) and statuses[field] > 0:
            limits[key] = statuses[field]
    return limits


class MastodonProvider(OAuth2Provider):
    name = "mastodon"
    label = "Mastodon"
    color = "#6364ff"
    icon = "M"
    summary = "Any Mastodon server, or software that speaks its API."
    connect_form = ServerForm

    # -- which server and which app ------------------------------------------------------------------
    def default_server(self) -> str:
        url = settings.MASTODON_INSTANCE_URL.rstrip("/")
        return url if url and settings.MASTODON_CLIENT_KEY and settings.MASTODON_CLIENT_SECRET else ""

    def server_for(self, data: dict) -> str:
        raw = (data.get("instance") or "").strip()
        if not raw:
            if not self.default_server():
                raise FlowError("invalid_server", "Type your Mastodon server, such as mastodon.social.")
            return self.default_server()
        return hosts.public_base_url(raw)

    def client(self, data: dict) -> dict:
        server = self.server_for(data)
        pkce, scopes_supported = self.fetch_capabilities(server)
        if server == self.default_server():
            client_id, scopes = settings.MASTODON_CLIENT_KEY, settings.MASTODON_SCOPES.split()
            redirect_uri = settings.MASTODON_CALLBACK_URL or self.callback_url()
        else:
            app = self.app_for(server, scopes_supported)
            client_id, scopes, redirect_uri = app.client_id, app.scopes.split(), app.redirect_uri
        return {
            "authorize_url": f"{server}/oauth/authorize",
            "token_url": f"{server}/oauth/token",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scopes,
            "pkce": pkce,
            "payload": {"server": server},
        }

    def fetch_capabilities(self, server: str) -> tuple[bool, set]:
        """(PKCE S256 supported, scopes supported) from the 4.3+ discovery document; older: (False, {})."""
        try:
            response = http.session().get(f"{server}/.well-known/oauth-authorization-server")
            data = http.expect_json(response, self.label)
        except PlatformError:
            return False, set()
        methods = data.get("code_challenge_methods_supported") or []
        scopes = data.get("scopes_supported") or []
        return "S256" in methods, {s for s in scopes if isinstance(s, str)}

    def app_for(self, server: str, scopes_supported: set) -> MastodonApp:
        """This server's app registration, registering once when there is none (or it is stale)."""
        app = MastodonApp.objects.filter(server=server).first()
        if app and app.redirect_uri == self.callback_url():
            return app
        return self.register_app(server, scopes_supported, replace=app)

    def register_app(self, server: str, scopes_supported: set, *, replace: MastodonApp | None = None) -> MastodonApp:
        narrow = set(NARROW_SCOPES) <= scopes_supported
        scopes = " ".join(NARROW_SCOPES) if narrow else settings.MASTODON_SCOPES
        response = http.session().post(
            f"{server}/api/v1/apps",
            data={
                "client_name": "Hayon",
                "redirect_uris": self.callback_url(),
                "scopes": scopes,
                "website": settings.PUBLIC_URL,
            },
        )
        data = http.expect_json(response, f"The server {server}")
        if not data.get("client_id") or not data.get("client_secret"):
            raise PlatformError(Kind.BAD_REPLY, f"The server {server} did not register Hayon.")
        log.info("registered Hayon on %s", server)
        if replace:
            replace.delete()
        try:
            return MastodonApp.objects.create(
                server=server,
                client_id=str(data["client_id"]),
                client_secret=crypto.encrypt({"secret": str(data["client_secret"])}),
                scopes=scopes,
                redirect_uri=self.callback_url(),
            )
        except IntegrityError:  # another request registered at the same moment: use theirs
            return MastodonApp.objects.get(server=server)

    def client_secret(self, payload: dict) -> str:
        server, client_id = payload["server"], payload["client_id"]
        if server == self.default_server() and client_id == settings.MASTODON_CLIENT_KEY:
            return settings.MASTODON_CLIENT_SECRET
        app = MastodonApp.objects.filter(server=server, client_id=client_id).first()
        if app is None:
            raise PlatformError(Kind.REJECTED, f"Hayon's registration on {server} changed. Please connect again.")
        return crypto.decrypt(app.client_secret)["secret"]

    # -- connecting ----------------------------------------------------------------------------------
    def exchange_code(self, *, payload: dict, code: str) -> dict:
        try:
            return super().exchange_code(payload=payload, code=code)
        except PlatformError as exc:
            if exc.code == "invalid_client":
                # The server forgot our registration (pre-4.3 servers vacuum apps): register anew next time.
                MastodonApp.objects.filter(server=payload["server"], client_id=payload["client_id"]).delete()
            raise

    def connection_from_token(self, *, payload: dict, token: dict) -> Connection:
        server = payload["server"]
        auth = {"accessToken": token["access_token"], "clientId": payload["client_id"]}
        account = self.fetch_account(server, auth["accessToken"])
        return self._connection(server, account, auth, limits=self.fetch_limits(server))

    def _connection(self, server: str, account: dict, auth: dict, *, limits: dict) -> Connection:
        account_id = account.get("id")
        if not isinstance(account_id, (str, int)) or account_id == "":
            raise PlatformError(Kind.BAD_REPLY, f"{server} sent an account without an id.")
        return Connection(
            profile=extract_profile(account),
            account_key=f"{server}|{account_id}",
            identifiers={"instanceUrl": server, "accountId": str(account_id)},
            auth=auth,
            extra={"limits": limits},
        )

    def fetch_account(self, server: str, access_token: str) -> dict:
        response = http.session().get(
            f"{server}/api/v1/accounts/verify_credentials",
            headers={"Authorization": f"Bearer {access_token}"},
        )
        return http.expect_json(response, server, classify=lambda r: self._account_error(r, server))

    def _account_error(self, response, server: str) -> PlatformError | None:
        # Mastodon tokens never expire, so a 401 means the access was revoked (docs: api/oauth-tokens).
        if response.status_code == 401:
            return PlatformError(Kind.REVOKED, f"{server} says Hayon's access was revoked.", status=401)
        if response.status_code == 403:
            return PlatformError(
                Kind.REVOKED, f"{server} refused access: the account may be disabled or unconfirmed.", status=403
            )
        return None

    def fetch_limits(self, server: str) -> dict:
        """Posting limits for the composer; a server that hides them gets Mastodon's defaults."""
        for path in ("/api/v2/instance", "/api/v1/instance"):
            try:
                return extract_limits(http.expect_json(http.session().get(f"{server}{path}"), server))
            except PlatformError:
                continue
        return dict(DEFAULT_LIMITS)

    # -- upkeep -------------------------------------------------------------------------------------
    def refresh(self, *, doc: dict, auth: dict) -> Connection:
        server = doc["instanceUrl"]
        account = self.fetch_account(server, auth["accessToken"])
        return self._connection(server, account, auth, limits=doc.get("limits") or dict(DEFAULT_LIMITS))

    def revoke(self, *, doc: dict, auth: dict) -> None:
        server = doc["instanceUrl"]
        payload = {"server": server, "client_id": auth.get("clientId", "")}
        response = http.session().post(
            f"{server}/oauth/revoke",
            data={"client_id": payload["client_id"], "client_secret": self.client_secret(payload),
                  "token": auth["accessToken"]},
        )
        if response.status_code != 200:  # the body may be `{}` or empty: only the status counts
            raise http.default_error(response, server)
