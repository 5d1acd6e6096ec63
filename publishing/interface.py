"""The publishing interface a provider implements, and the outcomes it hands back.

A provider that can publish mixes `Publisher` into its class (platforms/providers/<platform>.py or
<platform>_publish.py) and declares its rules; the validation, the queue and the pages read only
this interface and never branch on a platform's name.

What a provider's `publish` may end with, and what the state machine (delivery.py) does:
- returns `Published`: the delivery is published.
- raises `ContentRejected`: the platform refused this post (too long, a bad image): failed, no retry.
- raises `PlatformError` of kind EXPIRED / REVOKED / REJECTED: failed, and the connection's
  health records it (the user must reconnect).
- raises `PlatformError` of kind UNAVAILABLE / RATE_LIMITED / BAD_REPLY:
  * on a platform with idempotency (`publish_idempotent`), retried with back-off and the same
    handle, a bounded number of times;
  * otherwise the outcome is unknown (the platform may have taken the post before the timeout):
    needs_attention, never retried automatically, unless the error is a `NotAccepted`, which a
    provider raises only when it knows the platform did not take the post (DNS, refused
    connection, 429, a 5xx on a step before the final one).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from platforms.errors import Kind, PlatformError


@dataclass(frozen=True)
class TextLimit:
    """One limit on a post's text, counted by one of publishing/text.py's rules."""

    counting: str  # a name in publishing.text.COUNTINGS
    limit: int
    unit: str = "characters"  # the word in "312 of 300 characters"
    rule: str = "text_length"  # the `rule` a problem names


@dataclass(frozen=True)
class Rules:
    """What a platform accepts, as the composer's counter and the server's validation read it."""

    text_limits: tuple[TextLimit, ...]
    max_images: int
    min_images: int = 0
    image_types: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp", "image/gif")
    max_alt_chars: int | None = None  # counted in graphemes
    # Per counting rule, its options: {"mastodon": {"characters_reserved_per_url": 23}}.
    counting_options: dict[str, dict] = field(default_factory=dict)
    # Posts the platform takes per account in a moving 24 hours, when it has such a quota: a
    # schedule that would go over it is warned about when it is made (publishing/scheduling.py).
    daily_posts: int | None = None


@dataclass(frozen=True)
class Preview:
    """How the composer previews a post as this platform's feed shows it; changes nothing sent.

    `marking`: the detector in publishing/previews.py MARKINGS that finds the links, mentions and
    tags this platform marks; `image_ratio`: the feed's crop of an image (width, height), None
    for the image's own shape; `see_more_after`: graphemes a feed shows before "see more".
    """

    marking: str = "links"
    image_ratio: tuple[int, int] | None = (16, 9)
    see_more_after: int | None = None


@dataclass(frozen=True)
class Published:
    remote_id: str  # the platform's id of the post (Bluesky: its at:// URI)
    url: str  # its public page


@dataclass(frozen=True)
class OutgoingMedia:
    mime_type: str
    width: int
    height: int
    size: int
    alt: str
    read: Callable[[], bytes]  # the stored bytes (metadata already stripped)
    media_id: int = 0  # the MediaFile, for a signed URL (publishing/signed_media.py) where a platform fetches by URL


@dataclass(frozen=True)
class Outgoing:
    """The post as one account receives it: its text (override applied) and media in order."""

    post_id: int
    text: str
    media: tuple[OutgoingMedia, ...]


class Handle:
    """The delivery's idempotency handle. `save` stores a change before the next platform call
    (Threads: the container id before publishing it), so a retry continues instead of repeating.

    `fresh`: made in this attempt. A handle that is not fresh was stored by an attempt that may
    have reached the platform: the provider looks for what that attempt made first.
    """

    def __init__(self, data: dict, *, fresh: bool, store: Callable[[dict], None]):
        self.data = dict(data)
        self.fresh = fresh
        self._store = store

    def save(self, **changes) -> None:
        self.data.update(changes)
        self._store(dict(self.data))


class ContentRejected(Exception):
    """The platform refused this post for what it holds; `message` says which rule, readably."""

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code


class NotAccepted(PlatformError):
    """A transient failure the provider knows happened before the platform took the post."""

    def __init__(self, message: str, *, kind: Kind = Kind.UNAVAILABLE, retry_after: float | None = None, **kwargs):
        super().__init__(kind, message, **kwargs)
        self.retry_after = retry_after


class Publisher:
    """Mixed into a Provider that can publish. Providers return data or raise; they never save."""

    publish_rules: Rules
    # True when a retry with the same handle cannot make a second post (Bluesky's record key,
    # Mastodon's Idempotency-Key, a Threads container): transient failures are retried.
    publish_idempotent: bool = False
    # What the composer's preview shows (publishing/previews.py); a default suits a plain feed.
    publish_preview: Preview = Preview()

    def rules_for(self, doc: dict) -> Rules:
        """The rules for one connection; a server that sets its own limits overrides this."""
        return self.publish_rules

    def new_handle(self) -> dict:
        """The idempotency handle for a new delivery, stored before the first platform call."""
        return {}

    def credential_due(self, *, auth: dict) -> bool:
        """True when the stored credential should be renewed before publishing with it."""
        return False

    def publish(self, *, doc: dict, auth: dict, post: Outgoing, handle: Handle) -> Published:
        raise NotImplementedError


def publisher_for(provider) -> Publisher | None:
    return provider if isinstance(provider, Publisher) else None


class LinkedPublisher(Publisher):
    """Publishes to a document another provider's connection fills (Instagram, filled by the
    Facebook Page's connection; see Provider.linked). It stands where a provider stands for the
    queue and validation (`name`, `label`), reads its credential from its own document (the parent
    copies it there on every connect and refresh), and its health is the parent's: an auth failure
    is recorded on the parent, which records it on every document it fills (services.record_failure).
    """

    name: str = ""
    label: str = ""

    def __init__(self, parent):
        self.parent = parent


def linked_publishers(publisher: Publisher) -> dict[str, LinkedPublisher]:
    """The publishers a provider offers for its linked documents: {document name: publisher}."""
    return dict(getattr(publisher, "publishers_for_linked", None) or {})


def publishing_target(name: str):
    """What publishes to the document `name`: its provider, or a provider's LinkedPublisher for it.

    The one lookup the queue and validation use, so neither names a platform.
    """
    from platforms import providers  # at call time: tests swap providers.get

    provider = providers.get(name)
    if provider is not None:
        return provider
    for parent in providers.PROVIDERS:
        publisher = publisher_for(parent)
        linked = linked_publishers(publisher).get(name) if publisher else None
        if linked is not None:
            return linked
    return None


def publishing_targets() -> list:
    """Every document Hayon can publish to, in the settings page's order (for the composer)."""
    from platforms import providers

    found = []
    for provider in providers.PROVIDERS:
        publisher = publisher_for(provider)
        if publisher is not None:
            found += [publisher, *linked_publishers(publisher).values()]
    return found


TRANSIENT = (Kind.UNAVAILABLE, Kind.RATE_LIMITED, Kind.BAD_REPLY)
