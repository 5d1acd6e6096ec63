from django.conf import settings
from django.db import models

PLATFORM_FIELDS = ("bluesky", "tumblr", "facebook", "instagram", "threads", "mastodon")


class SocialAccount(models.Model):
    """One row per user; one JSON sub-document per platform (see documents.py).

    Document-shaped on purpose: each platform's connection is read and written whole, so the
    storage could move to a document database without changing the code above it.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="social_account")
    bluesky = models.JSONField(default=dict, blank=True)
    tumblr = models.JSONField(default=dict, blank=True)
    facebook = models.JSONField(default=dict, blank=True)
    instagram = models.JSONField(default=dict, blank=True)
    threads = models.JSONField(default=dict, blank=True)
    mastodon = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The earliest `nextCheckAt` of the connected documents: what the upkeep command queries,
    # readable without decrypting anything. Null when nothing is connected.
    next_check_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Set while one copy of the upkeep command works on the row, so other copies skip it; a copy
    # that dies leaves a claim that simply runs out.
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "social account"

    def __str__(self):
        return f"Platform accounts of {self.user}"

    def __repr__(self):
        return f"<SocialAccount user_id={self.user_id}>"  # never the documents: they hold ciphertext

    def save(self, *args, **kwargs):
        self.next_check_at = self.earliest_check()
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "next_check_at"}
        super().save(*args, **kwargs)

    def earliest_check(self):
        from .documents import EPOCH, parse_iso

        # A connected document that was never scheduled is due at once.
        moments = [parse_iso(self.document(name).get("nextCheckAt")) or EPOCH for name in PLATFORM_FIELDS
                   if self.document(name).get("connected")]
        return min(moments) if moments else None

    def document(self, platform: str) -> dict:
        if platform not in PLATFORM_FIELDS:
            raise KeyError(platform)
        return dict(getattr(self, platform) or {})

    def set_document(self, platform: str, doc: dict) -> None:
        if platform not in PLATFORM_FIELDS:
            raise KeyError(platform)
        setattr(self, platform, doc)


class AccountClaim(models.Model):
    """Which Hayon user holds a platform account: the database refuses a second holder.

    Taken in the same transaction that stores the connection and given up when it goes, so two
    users connecting one account at the same moment cannot both win (issue 12, item 4). The
    documents stay the source of what is shown; this table only says who may hold what.
    """

    platform = models.CharField(max_length=20)
    account_key = models.CharField(max_length=500)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    claimed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["platform", "account_key"], name="one_user_per_platform_account")]

    def __repr__(self):
        return f"<AccountClaim platform={self.platform!r} user_id={self.user_id}>"

    __str__ = __repr__


class QuotaUse(models.Model):
    """Calls spent from an app-wide quota (Tumblr's hourly limit) in one window, counted in the
    database so every process and host shares one count (platforms/quotas.py)."""

    name = models.CharField(max_length=50)
    window = models.BigIntegerField()  # the window's number: seconds since the epoch // its length
    used = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "window"], name="one_count_per_quota_window")]

    def __repr__(self):
        return f"<QuotaUse {self.name} window={self.window} used={self.used}>"

    __str__ = __repr__


class MastodonApp(models.Model):
    """Hayon's app registration on one Mastodon-API server, shared by every user of that server."""

    server = models.URLField(unique=True)
    client_id = models.CharField(max_length=255)
    client_secret = models.TextField(help_text="Encrypted with TOKEN_ENCRYPTION_KEYS.")
    scopes = models.CharField(max_length=255)
    redirect_uri = models.URLField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "Mastodon app registration"

    def __str__(self):
        return self.server

    def __repr__(self):
        return f"<MastodonApp server={self.server!r}>"


class PendingFlow(models.Model):
    """A started OAuth flow: what the callback needs, held server-side until it is used once.

    Keyed by a hash of the random state, bound to the user and a hash of the session key. The
    payload (PKCE verifier, OAuth 1.0a request token secret, chosen server) is encrypted.
    """

    id = models.CharField(primary_key=True, max_length=64)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    session_hash = models.CharField(max_length=64, db_index=True)
    platform = models.CharField(max_length=20)
    purpose = models.CharField(max_length=20, default="authorize")
    payload = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __repr__(self):
        return f"<PendingFlow platform={self.platform!r} user_id={self.user_id}>"

    __str__ = __repr__
