"""Posts and deliveries in the admin, read-mostly: a delivery's state belongs to its worker."""
from django.contrib import admin

from .models import Delivery, MediaFile, Post


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = ("platform", "status", "attempts", "url", "error", "published_at", "lease_until")
    readonly_fields = fields


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "created_at", "short_text")
    list_filter = ("deliveries__status",)
    search_fields = ("user__username",)
    readonly_fields = ("user", "created_at", "version", "idempotency_key", "request_fingerprint")
    inlines = [DeliveryInline]

    @admin.display(description="text")
    def short_text(self, post):
        return post.text[:80]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "post", "platform", "status", "attempts", "published_at")
    list_filter = ("status", "platform")
    readonly_fields = ("post", "platform", "attempts", "lease_until", "lease_token", "handle", "remote_id",
                       "created_at", "updated_at")


@admin.register(MediaFile)
class MediaFileAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "mime_type", "width", "height", "size", "created_at")
    readonly_fields = ("user", "file", "mime_type", "width", "height", "size", "created_at")
