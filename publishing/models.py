"""Posts, the media they carry, and one Delivery per account a post goes to.

A Delivery is the state machine of publishing/delivery.py: it is claimed with a lease by one
worker at a time, stores the platform's idempotency handle before the platform is called, and
ends published, failed or needs_attention (see `Status`).
"""
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Status(models.TextChoices):
    """A delivery's state; the values are what the API and pages show."""

    QUEUED = "queued", "queued"
    PUBLISHING = "publishing", "publishing"
    PUBLISHED = "published", "published"
    FAILED = "failed", "failed"
    NEEDS_ATTENTION = "needs_attention", "needs attention"
    # Scheduling (issue 15) moves deliveries through these; declared now so it needs no migration.
    SCHEDULED = "scheduled", "scheduled"
    MISSED = "missed", "missed"
    CANCELLED = "cancelled", "cancelled"


def media_path(instance, filename) -> str:
    """A random name: the uploader's file name never reaches the storage (nor a URL)."""
    return f"uploads/{uuid.uuid4().hex}{_EXTENSIONS.get(instance.mime_type, '')}"


_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif"}


class MediaFile(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="media_files")
    file = models.FileField(upload_to=media_path, max_length=200)
    mime_type = models.CharField(max_length=50)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size = models.PositiveIntegerField(help_text="Bytes as stored (metadata stripped).")
    alt = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.mime_type} {self.width}x{self.height} of user {self.user_id}"


class Post(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="posts")
    text = models.TextField(blank=True)
    # {platform: {"text": ...}}: a text for one account when one text does not fit all.
    overrides = models.JSONField(default=dict, blank=True)
    media = models.ManyToManyField(MediaFile, through="PostMedia", related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Goes up on every edit (scheduling, issue 15): a worker publishes only the version it read.
    version = models.PositiveIntegerField(default=1)
    # When a scheduled post goes out (UTC); null for a post sent at once (issue 15).
    scheduled_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # An API client's Idempotency-Key, with a hash of the request it came with: the same key and
    # body within 24 hours answers with this post instead of making a second one.
    idempotency_key = models.CharField(max_length=255, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "idempotency_key"], condition=~Q(idempotency_key=""),
                name="publishing_post_one_per_idempotency_key",
            ),
        ]

    def __str__(self):
        return f"Post {self.pk} of user {self.user_id}"

    def text_for(self, platform: str) -> str:
        override = (self.overrides or {}).get(platform) or {}
        return override["text"] if isinstance(override.get("text"), str) else self.text

    def ordered_media(self) -> list[MediaFile]:
        return [link.media for link in self.media_links.select_related("media").order_by("position")]


class PostMedia(models.Model):
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="media_links")
    media = models.ForeignKey(MediaFile, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["post", "position"], name="publishing_media_position")]


class Delivery(models.Model):
    """One post to one account: claimed with a lease, never published twice."""

    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="deliveries")
    platform = models.CharField(max_length=20)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Held by the worker publishing it; a worker that dies lets go when this passes.
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)  # when a task for it was last queued
    # The platform's idempotency handle, stored before the platform is called (Bluesky: the record
    # key). A retry uses the same one, so it finds the first post instead of making a second.
    handle = models.JSONField(default=dict, blank=True)
    remote_id = models.CharField(max_length=500, blank=True)
    url = models.URLField(max_length=500, blank=True)
    error = models.TextField(blank=True)  # readable: what happened and what to do
    error_kind = models.CharField(max_length=30, blank=True)  # e.g. "reconnect", for the page's link
    published_at = models.DateTimeField(null=True, blank=True)
    # A scheduled delivery that started late (after an outage, within HAYON_LATE_GRACE): by how much.
    late_seconds = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [models.UniqueConstraint(fields=["post", "platform"], name="publishing_one_delivery_per_account")]
        indexes = [models.Index(fields=["status", "next_attempt_at"]), models.Index(fields=["status", "lease_until"])]

    def __str__(self):
        return f"Post {self.post_id} to {self.platform}: {self.status}"

    def __repr__(self):
        return f"<Delivery {self.pk} post={self.post_id} platform={self.platform!r} status={self.status!r}>"
