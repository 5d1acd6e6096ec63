from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .forms import AdminSignInForm
from .models import ApiToken, User

admin.site.register(User, UserAdmin)
# The admin's sign-in says "too many attempts" when the shared limit refuses (accounts/backends.py).
admin.site.login_form = AdminSignInForm


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "created_at", "expires_at", "last_used_at", "survives_password_change")
    search_fields = ("name", "user__username")
    # The hash is useless to an admin and would help an offline attack: never shown.
    fields = ("user", "name", "created_at", "expires_at", "last_used_at", "survives_password_change")
    readonly_fields = ("user", "created_at", "expires_at", "last_used_at", "survives_password_change")

    def has_add_permission(self, request):
        return False  # a token must be shown to its owner once; admins cannot mint them
