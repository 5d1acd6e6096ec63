from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_http_methods, require_POST

from . import ratelimit
from .forms import ApiTokenForm, SignInForm, SignUpForm
from .models import ApiToken

# Each sign-up creates a row and picks a name nobody else can take: a handful per address per hour.
SIGN_UP_PER_IP = ratelimit.Limit("signup-ip", 10, 3600)


def home(request):
    return render(request, "accounts/home.html")


def _too_many(exc: ratelimit.RateLimited) -> HttpResponse:
    response = HttpResponse(str(exc), status=429, content_type="text/plain")
    response["Retry-After"] = str(exc.retry_after)
    return response


def sign_up(request):
    if request.user.is_authenticated:
        return redirect("settings")
    if request.method == "POST":
        try:
            ratelimit.hit([(SIGN_UP_PER_IP, ratelimit.client_ip(request))])
        except ratelimit.RateLimited as exc:
            return _too_many(exc)
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        messages.success(request, "Welcome to Hayon. Connect your first account below.")
        return redirect("settings")
    return render(request, "registration/signup.html", {"form": form})


class SignInView(auth_views.LoginView):
    """The limit on attempts is in accounts/backends.py, shared with the admin's sign-in."""

    form_class = SignInForm
    redirect_authenticated_user = True


class PasswordChangeView(auth_views.PasswordChangeView):
    success_url = reverse_lazy("settings")

    def form_valid(self, form):
        tokens = self.request.user.api_tokens.all()
        stopped = [t for t in tokens if t.lapsed() is None and not t.survives_password_change]
        response = super().form_valid(form)
        count = f"{len(stopped)} API token" + ("s" if len(stopped) > 1 else "")
        note = f" {count} stopped working with it: create new ones for your scripts." if stopped else ""
        messages.success(self.request, f"Your password has been changed.{note}")
        return response


def _tokens_page(request, *, form=None, status=200, **extra):
    context = {"tokens": request.user.api_tokens.all(), "token_form": form or ApiTokenForm(), **extra}
    return render(request, "accounts/tokens.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request):
    """Settings > API tokens: the list, and POST to create one."""
    if request.method == "GET":
        return _tokens_page(request)
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return _tokens_page(request, form=form, status=400)
    token, raw = ApiToken.issue(
        user=request.user, name=form.cleaned_data["name"], days=form.cleaned_data["lifetime"],
        survives_password_change=form.cleaned_data["survives_password_change"],
    )
    # Rendered, not redirected: the raw token is shown in this one response and kept nowhere.
    response = _tokens_page(request, new_token=raw, new_token_name=token.name)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def revoke_api_token(request, token_id):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    token.delete()
    messages.success(request, f"API token “{token.name}” revoked.")
    return redirect("api_tokens")
