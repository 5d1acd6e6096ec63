"""The browser side of publishing, worked out in Python: the composer's accounts, its form, its check,
and what a post page shows per account. Views only call these; templates only print them.

Which accounts can be published to comes from the publishing interface (`publisher_for`), and
what a platform shows and counts from its declarations; nothing here knows a platform by name.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from django.urls import reverse

from platforms import public
from platforms.services import account_for

from . import services
from .credentials import connection_problem
from .interface import publisher_for, publishing_target, publishing_targets
from .models import MediaFile, Post, Status
from .previews import AccountPreview, account_preview
from .validation import Problem, check_post

MAX_IMAGES = 4  # the composer's own cap; each platform's rule may be lower (validation says so)
MAX_ALT = 5000  # as POST /api/media stores it
ACTIVE = (Status.QUEUED, Status.PUBLISHING)  # the post page keeps polling while any is here


def reconnect_url(name: str) -> str:
    return f"{reverse('settings')}#platform-{name}"


@dataclass(frozen=True)
class Choice:
    """One connected account in the composer's list."""

    name: str
    label: str
    icon: str
    color: str
    handle: str
    display_name: str
    avatar: str
    health: str
    selectable: bool
    reason: str = ""  # why it cannot be ticked
    reconnect: str = ""  # where to fix it, when reconnecting would
    max_images: int = 0
    preview: AccountPreview | None = None


def choices(user, *, text: str = "", overrides: dict | None = None) -> list[Choice]:
    """The user's connected accounts Hayon can publish to, each with whether it can be ticked now
    and its preview. Targets come from the publishing interface, so a linked account (Instagram,
    through its Facebook Page) is listed like any other."""
    account, overrides, found = account_for(user), overrides or {}, []
    for listed in publishing_targets():
        target = publishing_target(listed.name)  # by name, as validation and the queue find it
        publisher, doc = publisher_for(target), account.document(listed.name)
        shown = public.public_document(doc)
        if publisher is None or not shown["connected"]:
            continue
        profile, health = shown.get("profile", {}), shown.get("health", {})
        rules, reason = publisher.rules_for(doc), connection_problem(target, doc)
        parent = getattr(target, "parent", None)  # a linked account takes its look from its parent
        found.append(Choice(
            name=target.name, label=target.label, icon=getattr(target, "icon", "") or target.label[:1],
            color=getattr(target, "color", "") or getattr(parent, "color", ""),
            handle=profile.get("handle", ""), display_name=profile.get("displayName") or profile.get("handle", ""),
            avatar=profile.get("avatar", ""), health=health.get("status", "active"),
            selectable=not reason, reason=reason, reconnect=reconnect_url(parent.name if parent else target.name) if reason else "",
            max_images=rules.max_images,
            preview=account_preview(target=target.name, rules=rules, preview=publisher.publish_preview,
                                    text=(overrides.get(target.name) or {}).get("text", text)),
        ))
    return found


# -- the form -------------------------------------------------------------------------------------
@dataclass
class Draft:
    """The composer's form as posted (or empty): what it re-shows when something must change."""

    text: str = ""
    targets: list[str] = field(default_factory=list)
    overrides: dict = field(default_factory=dict)  # {name: {"text": ...}}
    media: list[int] = field(default_factory=list)
    alts: dict = field(default_factory=dict)  # {media id: alt}
    key: str = field(default_factory=lambda: new_key())  # one post per form

    @classmethod
    def from_form(cls, data) -> "Draft":
        media = [int(v) for v in data.getlist("media") if v.isdigit()][:MAX_IMAGES]
        targets = [t for t in data.getlist("targets") if isinstance(t, str)]
        overrides = {name: {"text": data[f"override-{name}"][:services_text_cap()]}
                     for name in targets if data.get(f"override-{name}", "").strip()}
        alts = {i: data.get(f"alt-{i}", "")[:MAX_ALT] for i in media}
        key = data.get("idempotency_key", "")[:255] or new_key()
        return cls(text=data.get("text", "")[:services_text_cap()], targets=targets, overrides=overrides,
                   media=media, alts=alts, key=key)

    @classmethod
    def from_json(cls, data: dict) -> "Draft":
        """The live check's body (composer.js): the form's fields as JSON; a wrong type reads as empty."""
        data = data if isinstance(data, dict) else {}
        text = data.get("text") if isinstance(data.get("text"), str) else ""
        targets = [t for t in data.get("targets") or [] if isinstance(t, str)] if isinstance(data.get("targets"), list) else []
        media = [m for m in data.get("media") or [] if isinstance(m, int) and not isinstance(m, bool)][:MAX_IMAGES] \
            if isinstance(data.get("media"), list) else []
        raw_overrides = data.get("overrides") if isinstance(data.get("overrides"), dict) else {}
        overrides = {name: {"text": o["text"][:services_text_cap()]} for name, o in raw_overrides.items()
                     if name in targets and isinstance(o, dict) and isinstance(o.get("text"), str) and o["text"].strip()}
        raw_alts = data.get("alts") if isinstance(data.get("alts"), dict) else {}
        alts = {int(k): v[:MAX_ALT] for k, v in raw_alts.items() if str(k).isdigit() and isinstance(v, str)}
        return cls(text=text[:services_text_cap()], targets=targets, overrides=overrides, media=media, alts=alts)


def new_key() -> str:
    """The composer form's idempotency key: a resubmit or double click of one form makes one post."""
    return secrets.token_urlsafe(24)


def services_text_cap() -> int:
    from .api import MAX_TEXT

    return MAX_TEXT


def draft_media(user, draft: Draft) -> list[MediaFile]:
    """The draft's images (the user's own only), each with the alt text typed in the form."""
    owned = {m.pk: m for m in MediaFile.objects.filter(user=user, pk__in=draft.media)}
    return [_with_alt(owned[i], draft.alts.get(i)) for i in draft.media if i in owned]


def _with_alt(item: MediaFile, alt: str | None) -> MediaFile:
    if alt is not None:
        item.alt = alt.strip()
    return item


def check(*, user, draft: Draft) -> tuple[list[Problem], dict[str, AccountPreview]]:
    """The problems POST /api/posts would answer for this draft, and each target's preview.

    The same rule engine as publishing (publishing/validation.py), so the live counter shows
    exactly what the server will enforce. Nothing is stored.
    """
    try:
        files = services._own_media(user, draft.media)
    except services.Invalid as exc:
        return exc.problems, {}
    files = [_with_alt(item, draft.alts.get(item.pk)) for item in files]
    if not draft.targets:
        return [Problem(None, "targets", "Tick at least one account to publish to.")], {}
    problems = check_post(account=account_for(user), targets=draft.targets, text=draft.text,
                          overrides=draft.overrides, media=files)
    shown = {c.name: c.preview for c in choices(user, text=draft.text, overrides=draft.overrides)
             if c.preview and c.name in draft.targets}
    return problems, shown


def publish(*, user, draft: Draft) -> services.Created:
    """Create the post as POST /api/posts does (same validation, idempotency and queue).

    Raises services.Invalid or services.KeyReused. The alt texts typed in the form are saved on
    the user's own images first, so the post carries them.
    """
    if not draft.targets:
        raise services.Invalid([Problem(None, "targets", "Tick at least one account to publish to.")])
    for item in draft_media(user, draft):
        MediaFile.objects.filter(pk=item.pk, user=user).exclude(alt=item.alt).update(alt=item.alt)
    return services.create_post(user=user, text=draft.text, targets=draft.targets, media=draft.media,
                                overrides=draft.overrides, idempotency_key=draft.key)


# -- the post pages ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """One account's state on a post page, and what to do about it."""

    platform: str
    label: str
    status: str  # the Status value
    status_text: str  # "needs attention"
    url: str = ""
    error: str = ""
    reconnect: str = ""  # a Reconnect link when the connection must be renewed
    attempts: int = 0

    def to_json(self) -> dict:
        return {"platform": self.platform, "label": self.label, "status": self.status, "statusText": self.status_text,
                "url": self.url, "error": self.error, "reconnect": self.reconnect}


def outcomes(post: Post) -> list[Outcome]:
    found = []
    for item in sorted(post.deliveries.all(), key=lambda d: d.pk):
        target = publishing_target(item.platform)
        parent = getattr(target, "parent", None)  # a linked account is reconnected through its parent
        found.append(Outcome(
            platform=item.platform, label=target.label if target else item.platform, status=item.status,
            status_text=Status(item.status).label, url=item.url, error=item.error, attempts=item.attempts,
            reconnect=reconnect_url(parent.name if parent else item.platform) if item.error_kind == "reconnect" else "",
        ))
    return found


def post_state(post: Post) -> dict:
    """What post-status.js polls: each account's outcome, and whether to keep polling."""
    rows = outcomes(post)
    return {"id": post.pk, "targets": [row.to_json() for row in rows],
            "active": any(row.status in ACTIVE for row in rows),
            "retryable": any(row.status in (Status.FAILED, Status.NEEDS_ATTENTION) for row in rows)}


def own_post(user, post_id: int) -> Post | None:
    """The user's post; someone else's reads the same as one that does not exist."""
    return Post.objects.prefetch_related("deliveries").filter(pk=post_id, user=user).first()


def recent_posts(user, *, limit: int = 50) -> list[tuple[Post, list[Outcome]]]:
    posts = Post.objects.filter(user=user).prefetch_related("deliveries")[:limit]
    return [(post, outcomes(post)) for post in posts]


def grouped(problems: list[Problem], *, shown: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """(messages for the top of the form, {account: messages} for its preview). A problem of an
    account the composer has no preview for (not connected) goes to the top."""
    general, by_target = [], {}
    for problem in problems:
        if problem.target in shown:
            by_target.setdefault(problem.target, []).append(problem.message)
        else:
            general.append(problem.message)
    return general, by_target

