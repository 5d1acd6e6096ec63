import hashlib
import secrets
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from .identity import lookalike_digest, mixes_scripts

TOKEN_PREFIX = "hayon_"


def validate_time_zone(name: str) -> None:
    from publishing.scheduling import ScheduleError, zone

    try:
        zone(name)
    except ScheduleError as exc:
        raise ValidationError(str(exc), code="time_zone") from None


class User(AbstractUser):
    """Hayon's user. Custom from the first migration so it can grow without a painful swap."""

    email = models.EmailField("email address", blank=True)
    # Bumped by every password change (not by Django re-hashing the same password at sign-in):
    # API tokens issued under an older version stop working unless kept on purpose.
    password_version = models.PositiveIntegerField(default=0, editable=False)
    # The digest of the username's TR39 skeleton (accounts/identity.py); unique, so no two users
    # can hold look-alike names (`аdmin` in Cyrillic beside `admin`). Null only for look-alikes
    # that existed before this check (migration 0002 keeps the older name's).
    username_skeleton = models.CharField(max_length=64, unique=True, null=True, editable=False)
    # The user's IANA time zone (scheduling shows and reads local times in it; stored times are UTC).
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])

    def clean(self):
        super().clean()  # NFKC-normalises the username
        if self.username and self._username_is_new():
            self._refuse_lookalike_username()

    def save(self, *args, **kwargs):
        if self.username_skeleton is not None or self._username_is_new():  # not a legacy look-alike
            self.username_skeleton = lookalike_digest(self.username)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "username" in update_fields:
            kwargs["update_fields"] = {*update_fields, "username_skeleton"}
        super().save(*args, **kwargs)

    def set_password(self, raw_password):
        super().set_password(raw_password)
        if not getattr(self, "_rehashing", False):
            self.password_version += 1

    def set_unusable_password(self):
        super().set_unusable_password()
        self.password_version += 1

    def check_password(self, raw_password):
        with self._rehashing_only():
            return super().check_password(raw_password)

    async def acheck_password(self, raw_password):
        with self._rehashing_only():
            return await super().acheck_password(raw_password)

    @contextmanager
    def _rehashing_only(self):
        """check_password() re-hashes a correct password whose hasher is outdated: same password."""
        self._rehashing = True
        try:
            yield
        finally:
            self._rehashing = False

    def _username_is_new(self) -> bool:
        if self._state.adding:
            return True
        return not User.objects.filter(pk=self.pk, username=self.username).exists()

    def _refuse_lookalike_username(self):
        if mixes_scripts(self.username):
            raise ValidationError({"username": "Use letters from one script (a name that mixes, say, "
                                               "Latin and Cyrillic letters can imitate another)."})
        taken = User.objects.filter(username_skeleton=lookalike_digest(self.username)).exclude(pk=self.pk)
        if taken.exists():
            raise ValidationError({"username": "This username looks too much like an existing one. "
                                               "Please choose another."})


def hash_token(raw: str) -> str:
    # The token is 256 random bits, so a fast hash is enough: no dictionary to guess from.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def by_raw_token(self, raw: str):
        return self.select_related("user").filter(token_hash=hash_token(raw), user__is_active=True).first()


class ApiToken(models.Model):
    """A personal API token. Only its hash is stored; the token itself is shown once."""

    LIFETIMES = {"30": 30, "90": 90, "365": 365, "never": None}  # days; offered on the tokens page
    LAPSES = {
        "expired": "This API token has expired.",
        "password_changed": "This API token stopped working when the password was changed.",
    }

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)  # null: never
    # The owner's User.password_version when the token was issued; a change of password ends it...
    password_version = models.PositiveIntegerField(default=0, editable=False)
    # ...unless the owner asked, when creating it, for it to keep working after one.
    survives_password_change = models.BooleanField(default=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.user})"

    @classmethod
    def issue(cls, *, user, name: str, days: int | None = None,
              survives_password_change: bool = False) -> tuple["ApiToken", str]:
        """Create a token; returns the row and the raw token, which is never stored."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, token_hash=hash_token(raw),
            expires_at=timezone.now() + timedelta(days=days) if days else None,
            password_version=user.password_version, survives_password_change=survives_password_change,
        )
        return token, raw

    def lapsed(self, now=None) -> str | None:
        """Why this token no longer authenticates (a key of LAPSES), or None while it does."""
        if self.expires_at is not None and self.expires_at <= (now or timezone.now()):
            return "expired"
        if not self.survives_password_change and self.password_version != self.user.password_version:
            return "password_changed"
        return None

    def mark_used(self):
        # One write per minute at most: a busy script should not turn every GET into a write.
        now = timezone.now()
        if self.last_used_at is None or (now - self.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now
