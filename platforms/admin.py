"""Admin pages show who is connected and how healthy it is; never a token or ciphertext."""
from django.contrib import admin
from django.utils.html import format_html_join

from . import providers
from .documents import parse_iso
from .models import PLATFORM_FIELDS, MastodonApp, SocialAccount


def summarise(doc: dict) -> str:
    if not doc.get("connected"):
        reason = (doc.get("health") or {}).get("reason")
        return f"not connected ({reason})" if reason else "not connected"
    profile = doc.get("profile") or {}
    health = doc.get("health") or {}
    parts = [
        f"connected as @{profile.get('handle') or '?'}",
        f"health {health.get('status', 'unknown')}",
        f"access token: {'set' if doc.get('auth') else 'missing'}",
    ]
    expires = parse_iso(doc.get("expiresAt"))
    parts.append(f"expires {expires:%Y-%m-%d %H:%M} UTC" if expires else "no expiry")
    if health.get("needsReconnection"):
        parts.append("needs reconnection")
    if health.get("reason"):
        parts.append(f"reason: {health['reason']}")
    return ", ".join(parts)


@admin.register(SocialAccount)
class SocialAccountAdmin(admin.ModelAdmin):
    list_display = ("user", "connected_platforms", "updated_at")
    search_fields = ("user__username",)
    fields = ("user", "summary", "created_at", "updated_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # connections change through their owner's flows only

    @admin.display(description="connected")
    def connected_platforms(self, obj):
        names = [name for name in PLATFORM_FIELDS if obj.document(name).get("connected")]
        return ", ".join(names) or "none"

    @admin.display(description="platforms")
    def summary(self, obj):
        labels = {p.name: p.label for p in providers.PROVIDERS}
        rows = [(labels.get(name, name.title()), summarise(obj.document(name))) for name in PLATFORM_FIELDS]
        return format_html_join("", "<p><strong>{}</strong>: {}</p>", rows)


@admin.register(MastodonApp)
class MastodonAppAdmin(admin.ModelAdmin):
    list_display = ("server", "scopes", "created_at")
    fields = ("server", "client_id", "scopes", "redirect_uri", "created_at")  # never the secret
    readonly_fields = fields

    def has_add_permission(self, request):
        return False
