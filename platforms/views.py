"""Settings > Connected accounts, and the browser side of connecting. Thin: services do the work."""
import logging
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.ratelimit import RateLimited

from . import cards, http, limits, providers, services
from .errors import FlowError, PlatformError

log = logging.getLogger(__name__)

ERROR_TEXT = {
    "connection_cancelled": "Connection cancelled.",
    "invalid_state": "That sign-in link is invalid or has expired. Please connect again.",
    "account_in_use": "That account is already connected to another Hayon user.",
    "not_configured": "That platform is not configured by the administrator.",
    "platform_error": "The platform could not be reached or refused the request.",
}


def _provider(name: str):
    provider = providers.get(name)
    if provider is None:
        raise Http404("Unknown platform")
    return provider


def _flash_from_query(request) -> tuple[str, str] | None:
    """A readable text for ?success=/?error= codes; unknown codes get a generic text, never echoed."""
    success, error = request.GET.get("success"), request.GET.get("error")
    if success:
        for provider in providers.PROVIDERS:
            for verb in ("connected", "disconnected", "refreshed", "updated"):
                if success == f"{provider.name}_{verb}":
                    return "success", f"{provider.label} {verb}."
        return "success", "Done."
    if error:
        return "error", ERROR_TEXT.get(error, "That did not work. Please try again.")
    return None


@login_required
@require_GET
def settings_page(request):
    return _settings(request)


def _settings(request, *, status: int = 200):
    account = services.account_for(request.user)
    context = {
        "cards": [cards.card(provider, account) for provider in providers.PROVIDERS],
        "query_flash": _flash_from_query(request),  # shown only when no message says more
    }
    return render(request, "platforms/settings.html", context, status=status)


def back_to_settings(request, *, success: str = "", error: str = "", message: str = ""):
    if message:
        messages.add_message(request, messages.ERROR if error else messages.SUCCESS, message)
    query = urlencode({"success": success} if success else {"error": error} if error else {})
    return redirect(reverse("settings") + (f"?{query}" if query else ""))


def _run(request, provider, action, verb: str, *, limit: str = ""):
    """Run a service action and come back to the settings page with what happened."""
    try:
        if limit:
            limits.check(request, action=limit, provider=provider)
        with http.deadline():  # one budget for every platform call the action makes
            outcome = action()
    except FlowError as exc:
        return back_to_settings(request, error=exc.code, message=exc.message)
    except PlatformError as exc:
        return back_to_settings(request, error="platform_error", message=exc.message)
    except RateLimited as exc:
        # The page itself, with the reason, and a status a script or proxy understands.
        messages.error(request, str(exc))
        response = _settings(request, status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    except Exception as exc:  # a bug or a reply nobody foresaw: a readable message, never a 500 page
        log.exception("%s %s failed: %s", provider.name, verb, type(exc).__name__)
        return back_to_settings(request, error="platform_error",
                                message=f"Hayon hit an unexpected problem with {provider.label}. Please try again.")
    if getattr(outcome, "redirect_url", None):
        return redirect(outcome.redirect_url)
    message = getattr(outcome, "message", "") or f"{provider.label} {verb}."
    return back_to_settings(request, success=f"{provider.name}_{verb}", message=message)


@login_required
@require_POST
def connect(request, platform):
    provider = _provider(platform)
    return _run(request, provider, lambda: services.start_connect(request=request, provider=provider, data=request.POST),
                "connected", limit="connect")


@login_required
@require_POST
def refresh(request, platform):
    provider = _provider(platform)
    return _run(request, provider, lambda: services.refresh_connection(user=request.user, provider=provider),
                "refreshed", limit="refresh")


@login_required
@require_POST
def disconnect(request, platform):
    provider = _provider(platform)
    return _run(request, provider, lambda: services.disconnect(user=request.user, provider=provider), "disconnected")


@login_required
@require_POST
def choose(request, platform):
    provider = _provider(platform)
    value = request.POST.get("choice", "")
    return _run(request, provider, lambda: services.choose(user=request.user, provider=provider, value=value), "updated")


@login_required
def pick(request, platform):
    """Choose one of several (Facebook Pages) after authorizing; the choice is held server-side."""
    provider = _provider(platform)
    choice = request.POST.get("choice") if request.method == "POST" else request.GET.get("choice", "")
    if request.method == "POST":
        value = request.POST.get("option", "")
        return _run(request, provider, lambda: services.finish_choice(
            request=request, provider=provider, choice=choice, value=value), "connected")
    try:
        options = services.pending_options(request=request, provider=provider, choice=choice)
    except FlowError as exc:
        return back_to_settings(request, error=exc.code, message=exc.message)
    return render(request, "platforms/pick.html", {"provider": provider, "options": options, "choice": choice})


@require_GET
def callback(request, platform, callback_id=""):
    """Where the platform sends the browser back. Always ends on a clean /settings URL."""
    provider = _provider(platform)
    if not request.user.is_authenticated:
        # No `next`: the code and state must not survive into another URL.
        messages.error(request, "Sign in, then connect again: the connection was not completed.")
        return redirect("login")
    return _run(request, provider, lambda: services.finish_connect(request=request, provider=provider, query=request.GET,
                                                                      callback_id=callback_id), "connected")
