"""Mastodon, and any server speaking its API: OAuth 2.0 with an app registered per server.

Docs: https://docs.joinmastodon.org/spec/oauth/ , /methods/apps/ , /methods/oauth/ ,
/methods/accounts/#verify_credentials , /methods/instance/

Mix-up defence (RFC 9700 §4.4, security case 39): every server gets its own redirect URI,
`<PUBLIC_URL>/api/platform/mastodon/callback/<server id>`, registered with that server's app. The
flow remembers which one it sent, and an answer that comes back at another server's URI is refused
before any code is exchanged (services.finish_connect); RFC 9207 `iss` is checked where sent.
"""
import hashlib
import ipaddress
import logging
import re
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.db import IntegrityError, transaction

from .. import crypto, hosts, http
from ..documents import Connection, Profile
from ..errors import FlowError, Kind, PlatformError
from ..models import MastodonApp
from .mastodon_instance import DEFAULT_LIMITS, canonical_url, extract_limits, extract_software, origin
from .mastodon_publish import MastodonPublishing
from .oauth2 import OAuth2Provider

log = logging.getLogger(__name__)

# The least Hayon needs (issue 12, item 10): `profile` (4.3+) reads only verify_credentials; older
# servers have granular scopes since 2.4.3; the broad pair only for servers that refuse those.
PROFILE_SCOPES = "profile write:statuses write:media"
ACCOUNT_SCOPES = "read:accounts write:statuses write:media"
BROAD_SCOPES = "read write"
RETIRED_KEPT = 5  # earlier registrations whose secrets are kept, to revoke the tokens they issued
_TAGS = re.compile(r"<[^>]+>")
_ERROR_CODE = re.compile(r"^[a-z][a-z0-9_.-]{0,49}$")
_BEARER_ERROR = re.compile(r'error="([^"]{1,50})"')


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


def server_id(server: str) -> str:
    """A server's name in its redirect URI: stable and distinct, not secret (anyone may read it)."""
    return hashlib.sha256(server.encode()).hexdigest()[:32]


def callback_id_of(redirect_uri: str) -> str:
    """The part of a redirect URI after `/callback/` ("" for the plain callback)."""
    path = urlsplit(redirect_uri).path
    return path.rpartition("/callback/")[2].strip("/") if "/callback/" in path else ""


def server_label(server: str, software: dict | None = None) -> str:
    """How messages name a server: "localhost:8765 (Takahē)", not "Mastodon" for every one."""
    host = urlsplit(server).netloc or server
    name = (software or {}).get("name") if isinstance(software, dict) else ""
    return f"{host} ({name})" if name else host


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def same_server(url_origin: str, server: str) -> bool:
    """Whether a URL the server reports is its own. With private hosts allowed (tests, local
    development), localhost and 127.0.0.1 on one port are one machine."""
    if url_origin == server:
        return True
    a, b = urlsplit(url_origin), urlsplit(server)
    return (settings.HAYON_ALLOW_PRIVATE_HOSTS and a.scheme == b.scheme and a.port == b.port
            and _is_loopback(a.hostname or "") and _is_loopback(b.hostname or ""))


def account_key(server: str, account: dict, account_id) -> str:
    """The account's canonical URI (its ActivityPub id, else its profile URL), so one account is one
    key however its server was typed (case 48). A URI on another server is not believed: a hostile
    server could otherwise claim someone else's account and lock its owner out."""
    for field in ("uri", "url"):
        url = canonical_url(account.get(field))
        if url and same_server(origin(url), server):
            return url
    return f"{server}|{account_id}"


def _override_scopes() -> str:
    return " ".join(settings.MASTODON_SCOPES.split())


def _error_code(response) -> str | None:
    """The OAuth error code of a reply (JSON `error`, or the Bearer challenge), when it is one."""
    match = _BEARER_ERROR.search(response.headers.get("WWW-Authenticate", ""))
    try:
        body = response.json()
    except (ValueError, RecursionError):
        body = None
    code = body.get("error") if isinstance(body, dict) else None
    code = code if isinstance(code, str) else (match.group(1) if match else "")
    return code if _ERROR_CODE.match(code) else None


class MastodonProvider(MastodonPublishing, OAuth2Provider):
    name = "mastodon"
    label = "Mastodon"
    color = "#6364ff"
    icon = "M"
    summary = "Any Mastodon server, or software that speaks its API."
    connect_form = ServerForm
    reconnect_initial = {"instance": "instanceUrl"}
    revokes_single_credential = True  # /oauth/revoke withdraws the one token it is given (RFC 7009)
    server_field = "instanceUrl"

    # -- which server and which app ------------------------------------------------------------------
    def default_server(self) -> str:
        url = canonical_url(settings.MASTODON_INSTANCE_URL.strip().rstrip("/"))
        return url if url and settings.MASTODON_CLIENT_KEY and settings.MASTODON_CLIENT_SECRET else ""

    def server_for(self, data: dict) -> str:
        raw = (data.get("instance") or "").strip()
        if not raw:
            if not self.default_server():
                raise FlowError("invalid_server", "Type your Mastodon server, such as mastodon.social.")
            return self.default_server()
        # One spelling per server (hosts.py normalises), so `mastodon.social:443` and
        # `https://mastodon.social/` share an app (issue 12, item 13).
        return hosts.public_base_url(raw)

    def redirect_uri_for(self, server: str) -> str:
        return f"{self.callback_url()}/{server_id(server)}"

    def flow_label(self, payload: dict) -> str:
        return server_label(payload["server"])

    def client(self, data: dict) -> dict:
        server = self.server_for(data)
        discovery = self.fetch_discovery(server)
        if server == self.default_server():
            # The administrator's registration keeps its configured redirect URI; the callback still
            # checks that an answer arriving there belongs to a flow for this server.
            client_id, scopes = settings.MASTODON_CLIENT_KEY, self.scopes_for(discovery)
            redirect_uri = settings.MASTODON_CALLBACK_URL or self.callback_url()
        else:
            app = self.app_for(server, discovery)
            client_id, scopes, redirect_uri = app.client_id, app.scopes, app.redirect_uri
        return {
            "authorize_url": f"{server}/oauth/authorize",
            "token_url": f"{server}/oauth/token",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scopes.split(),
            "pkce": True,  # S256 always: a server that ignores it loses nothing (issue 12, item 10)
            "payload": {"server": server, "callbackId": callback_id_of(redirect_uri),
                        "issuer": discovery["issuer"], "issRequired": discovery["iss_required"]},
        }

    def fetch_discovery(self, server: str) -> dict:
        """RFC 8414 metadata (Mastodon 4.3+): scopes, issuer, whether `iss` is sent. Older: none."""
        found = {"scopes": set(), "issuer": server, "iss_required": False}
        try:
            response = http.session().get(f"{server}/.well-known/oauth-authorization-server")
            data = http.expect_json(response, server_label(server))
        except PlatformError as exc:
            if exc.kind is Kind.UNAVAILABLE and exc.status is None:
                raise  # unreachable or timed out: trying it again in this action costs another timeout
            return found  # 404 and the like: a server older than 4.3
        # RFC 8414 §3.3: the issuer must be the server the document came from, or none of it counts.
        if canonical_url(data.get("issuer")).rstrip("/") != server:
            return found
        scopes = data.get("scopes_supported")
        found["scopes"] = {s for s in scopes if isinstance(s, str)} if isinstance(scopes, list) else set()
        found["issuer"] = data["issuer"]
        found["iss_required"] = data.get("authorization_response_iss_parameter_supported") is True
        return found

    def scopes_for(self, discovery: dict) -> str:
        return _override_scopes() or (PROFILE_SCOPES if "profile" in discovery["scopes"] else ACCOUNT_SCOPES)

    def app_for(self, server: str, discovery: dict) -> MastodonApp:
        """This server's app registration, registering when there is none or it is stale (another
        redirect URI, such as the one URI every server shared before case 39; other scopes asked for)."""
        app = MastodonApp.objects.filter(server=server).first()
        override = _override_scopes()
        if app and app.redirect_uri == self.redirect_uri_for(server) and (not override or app.scopes == override):
            return app
        return self.register_app(server, discovery, replace=app)

    def register_app(self, server: str, discovery: dict, *, replace: MastodonApp | None = None) -> MastodonApp:
        redirect_uri, scopes = self.redirect_uri_for(server), self.scopes_for(discovery)
        try:
            data = self._register(server, redirect_uri, scopes)
        except PlatformError as exc:
            # Servers before 2.4.3 know only the broad scopes and refuse the others (422).
            if _override_scopes() or exc.status not in (400, 422):
                raise
            scopes = BROAD_SCOPES
            data = self._register(server, redirect_uri, scopes)
        log.info("registered Hayon on %s", server_label(server))
        secret = {"secret": str(data["client_secret"]), "retired": _retired_secrets(replace)}
        if replace:
            replace.delete()
        try:
            with transaction.atomic():
                return MastodonApp.objects.create(
                    server=server, client_id=str(data["client_id"]), client_secret=crypto.encrypt(secret),
                    scopes=scopes, redirect_uri=redirect_uri,
                )
        except IntegrityError:  # another request registered at the same moment: use theirs
            return MastodonApp.objects.get(server=server)

    def _register(self, server: str, redirect_uri: str, scopes: str) -> dict:
        label = server_label(server)
        response = http.session().post(
            f"{server}/api/v1/apps",
            data={"client_name": "Hayon", "redirect_uris": redirect_uri, "scopes": scopes,
                  "website": settings.PUBLIC_URL},
        )
        data = http.expect_json(response, label)
        if not isinstance(data.get("client_id"), (str, int)) or not isinstance(data.get("client_secret"), str) \
                or not data["client_id"] or not data["client_secret"]:
            raise PlatformError(Kind.BAD_REPLY, f"{label} did not register Hayon.")
        return data

    def client_secret(self, payload: dict) -> str:
        server, client_id = payload["server"], payload["client_id"]
        if server == self.default_server() and client_id == settings.MASTODON_CLIENT_KEY:
            return settings.MASTODON_CLIENT_SECRET
        app = MastodonApp.objects.filter(server=server).first()
        stored = crypto.decrypt(app.client_secret) if app else {}
        if app and app.client_id == client_id:
            return stored["secret"]
        retired = stored.get("retired") or {}
        if client_id in retired:  # a token issued under an earlier registration of this server
            return retired[client_id]
        raise PlatformError(Kind.REJECTED,
                            f"Hayon's registration on {server_label(server)} changed. Please connect again.")

    # -- connecting ----------------------------------------------------------------------------------
    def exchange_code(self, *, payload: dict, code: str) -> dict:
        try:
            return super().exchange_code(payload=payload, code=code)
        except PlatformError as exc:
            if exc.code == "invalid_client":
                # The server forgot our registration (pre-4.3 servers vacuum apps): register anew next
                # time, keeping the secret so tokens it issued can still be revoked.
                stale = MastodonApp.objects.filter(server=payload["server"], client_id=payload["client_id"])
                stale.update(redirect_uri="")
            raise

    def connection_from_token(self, *, payload: dict, token: dict) -> Connection:
        server = payload["server"]
        auth = {"accessToken": token["access_token"], "clientId": payload["client_id"]}
        try:
            account = self.fetch_account(server, auth["accessToken"], server_label(server))
            limits, software = self.fetch_instance(server)
            return self._connection(server, account, auth, limits=limits or dict(DEFAULT_LIMITS), software=software)
        except Exception:
            # Nothing will store this token: withdraw it rather than leave it alive (issue 13, item 7).
            self._revoke_unused(server, auth)
            raise

    def _revoke_unused(self, server: str, auth: dict) -> None:
        try:
            self.revoke(doc={"instanceUrl": server}, auth=auth)
        except Exception as exc:  # best effort: the error that got us here is the one to report
            log.info("mastodon: revoking an unused token on %s failed: %s", server_label(server), type(exc).__name__)

    def _connection(self, server: str, account: dict, auth: dict, *, limits: dict, software: dict | None) -> Connection:
        account_id = account.get("id")
        if not isinstance(account_id, (str, int)) or isinstance(account_id, bool) or account_id == "":
            raise PlatformError(Kind.BAD_REPLY, f"{server_label(server, software)} sent an account without an id.")
        extra = {"limits": limits}
        if software:
            extra["software"] = software
        return Connection(
            profile=extract_profile(account),
            account_key=account_key(server, account, account_id),
            identifiers={"instanceUrl": server, "accountId": str(account_id)},
            auth=auth,
            extra=extra,
        )

    def fetch_account(self, server: str, access_token: str, label: str) -> dict:
        response = http.session().get(
            f"{server}/api/v1/accounts/verify_credentials",
            headers={"Authorization": f"Bearer {access_token}"},
        )
        return http.expect_json(response, label, classify=lambda r: self._account_error(r, label))

    def _account_error(self, response, label: str) -> PlatformError | None:
        """Mastodon tokens never expire (docs: api/oauth-tokens), and Hayon's request is well formed,
        so a 400, 401 or 403 says the token is no good: 401 on Mastodon, `400 Invalid Bearer token`
        on Takahē. A 403 without `invalid_token` is Mastodon's disabled or unapproved account."""
        status = response.status_code
        if status not in (400, 401, 403):
            return None
        code = _error_code(response)
        if status == 403 and code != "invalid_token":
            return PlatformError(
                Kind.REVOKED, f"{label} refused access: the account may be disabled or not yet approved.",
                status=status, code=code,
            )
        return PlatformError(Kind.REVOKED, f"{label} says Hayon's access was revoked.", status=status, code=code)

    def fetch_instance(self, server: str) -> tuple[dict | None, dict | None]:
        """(posting limits, software) from /api/v2/instance, else v1 (servers before 4.0); None
        for what no reply said. Never raises: limits are not worth failing a connect or refresh."""
        limits = software = None
        for path in ("/api/v2/instance", "/api/v1/instance"):
            try:
                data = http.expect_json(http.session().get(f"{server}{path}"), server_label(server))
            except PlatformError as exc:
                if exc.kind is Kind.UNAVAILABLE and exc.status is None:
                    break  # unreachable: the other path would cost another timeout
                continue
            except (ValueError, TypeError, RecursionError):  # a reply too strange to read
                continue
            limits, software = limits or extract_limits(data), software or extract_software(data)
            if limits:
                break
        return limits, software

    # -- upkeep -------------------------------------------------------------------------------------
    def refresh(self, *, doc: dict, auth: dict) -> Connection:
        server = doc["instanceUrl"]
        account = self.fetch_account(server, auth["accessToken"], server_label(server, doc.get("software")))
        # Limits change (an admin raises them): re-read, keeping what we knew when the server won't say.
        limits, software = self.fetch_instance(server)
        return self._connection(server, account, auth, limits=limits or doc.get("limits") or dict(DEFAULT_LIMITS),
                                software=software or doc.get("software"))

    def revoke(self, *, doc: dict, auth: dict) -> None:
        server = doc["instanceUrl"]
        payload = {"server": server, "client_id": auth.get("clientId", "")}
        response = http.session().post(
            f"{server}/oauth/revoke",
            data={"client_id": payload["client_id"], "client_secret": self.client_secret(payload),
                  "token": auth["accessToken"]},
        )
        if response.status_code != 200:  # the body may be `{}` or empty: only the status counts
            raise http.default_error(response, server_label(server, doc.get("software")))


def _retired_secrets(app: MastodonApp | None) -> dict:
    """The client secrets of a registration being replaced (and the ones it kept), newest first."""
    if app is None:
        return {}
    try:
        stored = crypto.decrypt(app.client_secret)
    except crypto.SecretsUnreadable:
        return {}
    retired = {app.client_id: stored.get("secret"), **(stored.get("retired") or {})}
    return dict(list((k, v) for k, v in retired.items() if v)[:RETIRED_KEPT])
