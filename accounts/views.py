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

SIGN_IN_LIMITS = (ratelimit.Limit("signin-ip", 30, 300), ratelimit.Limit("signin-user", 10, 300))


def home(request):
    return render(request, "accounts/home.html")


def sign_up(request):
    if request.user.is_authenticated:
        return redirect("settings")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        messages.success(request, "Welcome to Hayon. Connect your first account below.")
        return redirect("settings")
    return render(request, "registration/signup.html", {"form": form})


class SignInView(auth_views.LoginView):
    form_class = SignInForm
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "").strip().lower()
        try:
            ratelimit.hit(
                [(SIGN_IN_LIMITS[0], ratelimit.client_ip(request)), (SIGN_IN_LIMITS[1], username)]
            )
        except ratelimit.RateLimited as exc:
            response = HttpResponse(str(exc), status=429, content_type="text/plain")
            response["Retry-After"] = str(exc.retry_after)
            return response
        return super().post(request, *args, **kwargs)


class PasswordChangeView(auth_views.PasswordChangeView):
    success_url = reverse_lazy("settings")

    def form_valid(self, form):
        messages.success(self.request, "Your password has been changed.")
        return super().form_valid(form)


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
    token, raw = ApiToken.issue(user=request.user, name=form.cleaned_data["name"])
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
