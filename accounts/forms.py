from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import ValidationError

from .models import ApiToken, User


class SignUpForm(UserCreationForm):
    """User.clean() refuses mixed-script and look-alike usernames (accounts/identity.py)."""

    email = forms.EmailField(required=False, help_text="Optional. Used only to tell you about your account.")

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class ThrottledSignInMessage:
    """Says "too many attempts", not "wrong password", when the sign-in limit refused the attempt.

    The limit itself is in accounts/backends.py, which marks the request it refused.
    """

    def get_invalid_login_error(self):
        retry_after = getattr(self.request, "sign_in_retry_after", None)
        if retry_after is None:
            return super().get_invalid_login_error()
        return ValidationError(f"Too many sign-in attempts. Try again in {retry_after} seconds.", code="throttled")


class SignInForm(ThrottledSignInMessage, AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That username and password do not match an account.",
    }


class AdminSignInForm(ThrottledSignInMessage, AdminAuthenticationForm):
    pass


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=80,
        label="Token name",
        help_text="Something to recognise it by, such as the script that uses it.",
    )
    lifetime = forms.ChoiceField(
        label="Expires",
        choices=[("30", "in 30 days"), ("90", "in 90 days"), ("365", "in a year"), ("never", "never")],
        initial="90",
    )
    survives_password_change = forms.BooleanField(
        required=False,
        label="Keep working after a password change",
        help_text="Otherwise changing your password stops this token, as it signs out your other sessions.",
    )

    def clean_lifetime(self) -> int | None:
        """The token's lifetime in days (None: never expires)."""
        return ApiToken.LIFETIMES[self.cleaned_data["lifetime"]]
