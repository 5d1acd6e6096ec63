"""What a card on Settings > Connected accounts shows, worked out before the template prints it.

Built from a provider and the public document only (platforms/public.py), so a card can show
nothing the JSON API would not. The template only prints what is here: no decisions, no parsing.
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from . import public
from .documents import parse_iso


@dataclass(frozen=True)
class Linked:
    """Another document this connection fills (Instagram, with a Facebook Page)."""

    label: str
    connected: bool
    handle: str = ""
    display_name: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Card:
    provider: object  # name, label, icon, color, summary, choice_label
    state: str  # connected | unhealthy | needs_reconnect | disconnected | not_configured
    connected: bool
    health: str = ""
    reason: str = ""
    checked_at: datetime | None = None
    checked_ago: str = ""  # "5 minutes"
    expires_at: datetime | None = None
    expires_in: str = ""  # "in 12 days", or "expired 3 hours ago"
    display_name: str = ""
    handle: str = ""
    avatar: str = ""
    instance_url: str = ""
    choices: list = field(default_factory=list)  # {"value", "text", "selected"}: more than one
    linked: list = field(default_factory=list)
    form: object = None  # what the user types to connect or reconnect
    method: str = ""  # how the connection signs in, where a platform offers several
    switch: dict | None = None  # {"label", "fields"}: a better way to connect, offered on the card


def _moment(value) -> datetime | None:
    try:
        return parse_iso(value)
    except (TypeError, ValueError):
        return None


UNITS = ((86400 * 365, "year"), (86400 * 30, "month"), (86400, "day"), (3600, "hour"),
         (60, "minute"))


def span(delta: timedelta) -> str:
    """The largest whole unit of a time span: "3 hours", "1 day", "less than a minute".

    One unit is all a card needs; Django's timesince filter gives two, through the translation
    machinery, and two calls per card cost more than the rest of the card (bench/pages.py).
    """
    seconds = max(0, int(delta.total_seconds()))
    for size, unit in UNITS:
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "less than a minute"


def _expiry(expires_at: datetime | None, now: datetime) -> str:
    """A past expiry is said as such, never "in less than a minute"."""
    if expires_at is None:
        return ""
    return f"in {span(expires_at - now)}" if expires_at > now else f"expired {span(now - expires_at)} ago"


def _state(provider, doc: dict) -> str:
    if not provider.is_configured():
        return "not_configured"
    if not doc["connected"]:
        return "disconnected"
    health = doc.get("health", {})
    if health.get("needsReconnection"):
        return "needs_reconnect"
    # Connected but failing: never a green "Connected" beside an error (issue 12, item 8).
    return "connected" if health.get("status", "active") == "active" else "unhealthy"


def _form(provider, doc: dict, state: str):
    """What the user types to connect, pre-filled on reconnect with what the connection was."""
    if not provider.connect_form or state not in ("disconnected", "needs_reconnect"):
        return None
    initial = {field: doc[key] for field, key in provider.reconnect_initial.items() if doc.get(key)}
    return provider.connect_form(initial=initial if doc["connected"] else {}, auto_id=f"id_{provider.name}_%s")


def _choices(provider, doc: dict) -> list:
    options = provider.choice_options(doc) if doc["connected"] else []
    return options if len(options) > 1 else []  # a single item: nothing to switch to


def _linked(label: str, doc: dict) -> Linked:
    profile = doc.get("profile", {})
    return Linked(label=label, connected=doc["connected"], handle=profile.get("handle", ""),
                  display_name=profile.get("displayName", ""), reason=doc.get("health", {}).get("reason", ""))


def card(provider, account) -> Card:
    doc = public.public_document(account.document(provider.name))
    state = _state(provider, doc)
    health, profile = doc.get("health", {}), doc.get("profile", {})
    checked_at, expires_at, now = _moment(health.get("checkedAt")), _moment(doc.get("expiresAt")), timezone.now()
    return Card(
        provider=provider, state=state, connected=doc["connected"],
        health=health.get("status", ""), reason=health.get("reason", ""),
        checked_at=checked_at, checked_ago=span(now - checked_at) if checked_at else "",
        expires_at=expires_at, expires_in=_expiry(expires_at, now),
        display_name=profile.get("displayName") or profile.get("handle", ""), handle=profile.get("handle", ""),
        avatar=profile.get("avatar", ""), instance_url=doc.get("instanceUrl", ""),
        choices=_choices(provider, doc),
        linked=[_linked(label, public.public_document(account.document(name))) for name, label in provider.linked.items()],
        form=_form(provider, doc, state),
        method=provider.connection_method(doc) if doc["connected"] else "",
        switch=provider.switch_offer(doc) if doc["connected"] else None,
    )
