"""The interface every platform implements. Views, templates and the API only see this.

A provider turns platform replies into `Connection`s or raises `PlatformError`/`FlowError`.
It never saves a model and never decides health: services.py does both, in one place.
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from ..documents import Connection
from ..models import PLATFORM_FIELDS


@dataclass
class Authorization:
    """Where to send the browser, and what the callback will need (kept server-side, encrypted)."""

    url: str
    payload: dict = field(default_factory=dict)
    flow_key: str | None = None  # OAuth 1.0a: the request token identifies the flow, not a state


@dataclass
class PendingChoice:
    """The user must pick one of several (Facebook Pages) before the connection exists.

    `options` are public (id, name, picture, note); `payload` holds the secrets needed to finish
    and stays server-side, encrypted, bound to the session, for the state's short lifetime.
    """

    options: list[dict]
    payload: dict


class Provider:
    name: str = ""  # the document key and URL segment
    label: str = ""
    color: str = "#444"  # the card's accent
    icon: str = ""  # one or two letters for the badge
    summary: str = ""  # one line under the card title
    linked: dict[str, str] = {}  # other sub-documents this connection fills, with their labels
    required_settings: tuple[str, ...] = ()
    connect_form = None  # a Django form class for what the user types before connecting
    reconnect_initial: dict[str, str] = {}  # form field -> public document key, to pre-fill Reconnect
    credential_connect = False  # True: connecting completes within the request (no redirect)
    signed_state = True  # False: the flow key is the platform's own token (OAuth 1.0a)
    revokes_remotely = True  # False: disconnect can only forget; the user removes access there
    manage_access_url = ""  # where the user removes Hayon's access by hand
    # True: renewing retires the old credential at once (a rotating refresh token), so only one
    # renewal may run at a time: services holds a short lease in the document while it does.
    rotates_credentials = False
    # True: revoke() withdraws only the credential it is given, so Hayon can revoke one it will not
    # keep (a replaced or refused token) without touching the one it keeps. False when revoking
    # withdraws the whole grant (Facebook's DELETE /permissions).
    revokes_single_credential = False
    # The public document field naming a server the user chose (a Mastodon instance, a PDS):
    # upkeep lets one server hold only a small share of its workers.
    server_field = ""
    # Credential connects: {"user"|"ip"|"identifier": (attempts, seconds)}, checked before any call.
    connect_rate_limits: dict[str, tuple[int, int]] = {}
    rate_limit_field = ""  # the form field that names the account, for the "identifier" limit
    upkeep_per_hour_setting = ""  # a setting naming the most upkeep calls an hour (app-wide limits)
    choice_field = ""  # a public list in the document the user may switch between (Tumblr blogs)
    choice_label = ""

    def __init_subclass__(cls, **kwargs):
        # A misconfigured provider is an import error, not a broken card at run time.
        super().__init_subclass__(**kwargs)
        if cls.name:
            if cls.name not in PLATFORM_FIELDS or not cls.label:
                raise TypeError(f"{cls.__name__}: name must be one of {PLATFORM_FIELDS} and label set")
            unknown = set(cls.linked) - set(PLATFORM_FIELDS)
            if unknown:
                raise TypeError(f"{cls.__name__}: linked documents {unknown} do not exist")

    def __repr__(self):
        return f"<Provider {self.name}>"

    # -- configuration -------------------------------------------------------------------------
    def is_configured(self) -> bool:
        return all(getattr(settings, key, "") for key in self.required_settings)

    def callback_url(self) -> str:
        return f"{settings.PUBLIC_URL}/api/platform/{self.name}/callback"

    # -- connecting ------------------------------------------------------------------------------
    def begin(self, *, state: str, data: dict) -> Authorization:
        """Redirect-based platforms: the authorization URL for this state."""
        raise NotImplementedError

    def flow_key(self, query) -> str:
        """The value in the callback query that names the pending flow."""
        return _single(query, "state")

    def finish(self, *, payload: dict, query) -> Connection:
        """Redirect-based platforms: turn the callback into a Connection."""
        raise NotImplementedError

    def connect_choice(self, *, payload: dict, value: str) -> Connection:
        """Finish a PendingChoice with the option the user picked."""
        raise NotImplementedError

    def connects_within_request(self, data: dict) -> bool:
        """True: `connect_with_credentials`; False: `begin` a redirect (Bluesky offers both)."""
        return self.credential_connect

    def connect_with_credentials(self, *, data: dict) -> Connection:
        """Credential platforms (Bluesky): connect within the request."""
        raise NotImplementedError

    def connection_method(self, doc: dict) -> str:
        """How a stored connection signs in, for the card ("" when there is only one way)."""
        return ""

    def switch_offer(self, doc: dict) -> dict | None:
        """A better way to connect this account, offered on its card: {"label", "fields"} posted
        to the connect form, or None."""
        return None

    # -- upkeep ----------------------------------------------------------------------------------
    def refresh(self, *, doc: dict, auth: dict) -> Connection:
        """Re-read the profile with the stored credentials, renewing them where the platform allows."""
        raise NotImplementedError

    def choose(self, *, doc: dict, auth: dict, value: str) -> Connection:
        """Switch to another item of `choice_field` (say, another blog) without reconnecting."""
        raise NotImplementedError

    def choice_options(self, doc: dict) -> list[dict]:
        """The items of `choice_field` in a public document, as {"value", "text", "selected"}."""
        return []

    check_interval = timedelta(hours=24)  # how often upkeep looks at a healthy connection
    renew_window = timedelta(days=14)  # look again this long before the credential expires

    def next_check_at(self, connection: Connection) -> datetime:
        due = timezone.now() + self.check_interval
        if connection.expires_at:
            due = min(due, max(connection.expires_at - self.renew_window, timezone.now() + timedelta(minutes=5)))
        return due

    def server_of(self, doc: dict) -> str:
        """The host of the user-chosen server this connection talks to; "" for the platform's own."""
        value = doc.get(self.server_field) if self.server_field else ""
        return urlsplit(value).netloc.lower() if isinstance(value, str) else ""

    def upkeep(self, *, doc: dict, auth: dict) -> Connection:
        """What the upkeep command does for one connection; by default a refresh."""
        return self.refresh(doc=doc, auth=auth)

    def revoke(self, *, doc: dict, auth: dict) -> None:
        """Withdraw Hayon's access at the platform (raises PlatformError when that fails).

        `doc` may be a document never stored (a connection refused as already in use): only its
        public identifiers are there."""


def _single(query, name: str) -> str:
    """One value of a query parameter; a repeated parameter counts as none (security case 6)."""
    values = query.getlist(name)
    return values[0] if len(values) == 1 else ""


single_param = _single
