"""The JSON API under /api/platform/: the same services as the settings page, for scripts."""
import json
import logging
from functools import wraps

from django.http import JsonResponse
from django.utils.cache import patch_cache_control
from django.views.decorators.csrf import csrf_exempt

from accounts.auth import ApiAuthError, authenticate_api_request
from accounts.ratelimit import RateLimited

from . import http, limits, providers, public, services
from .errors import FlowError, PlatformError

log = logging.getLogger(__name__)


def reply(data=None, *, message: str = "", status: int = 200, success: bool = True, headers=None) -> JsonResponse:
    response = JsonResponse({"success": success, "message": message, "data": data}, status=status)
    patch_cache_control(response, no_store=True)
    for key, value in (headers or {}).items():
        response[key] = value
    return response


def fail(message: str, status: int, **headers) -> JsonResponse:
    return reply(None, message=message, status=status, success=False, headers=headers)


class UnknownPlatform(Exception):
    pass


def provider_named(name: str):
    provider = providers.get(name)
    if provider is None:
        raise UnknownPlatform(name)
    return provider


def endpoint(*methods, changes_state=False):
    """Method check, authentication (Bearer or session+CSRF) and error replies for an API view.

    `changes_state`: the route makes Hayon act (connect, refresh). Scripts may use GET for it, as
    the API has always allowed, but a browser session may not: SameSite=Lax sends the cookie on a
    top-level GET from any site, and GET skips the CSRF check. A cookie must POST with the token.
    """

    def decorate(view):
        @csrf_exempt  # checked in authenticate_api_request for cookie sessions; tokens need none
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in methods:
                return fail(f"Use {' or '.join(methods)} here.", 405, Allow=", ".join(methods))
            try:
                user = authenticate_api_request(request)
            except ApiAuthError as exc:
                return fail(str(exc), 401, **{"WWW-Authenticate": "Bearer"})
            request.auth_by_token = "Authorization" in request.headers
            request.user = user
            if changes_state and request.method == "GET" and not request.auth_by_token:
                return fail("Signed in with a browser session: use POST with the CSRF token.", 405, Allow="POST")
            return _answer(view, request, *args, **kwargs)

        return wrapper

    return decorate


def _answer(view, request, *args, **kwargs):
    """The view's reply, or a JSON error: nothing under /api/ answers with an HTML error page."""
    try:
        with http.deadline():  # one budget for every platform call the request makes
            return view(request, *args, **kwargs)
    except UnknownPlatform:
        return fail("Unknown platform.", 404)
    except FlowError as exc:
        return fail(exc.message, exc.status)
    except PlatformError as exc:
        return fail(exc.message, 502)
    except RateLimited as exc:
        return fail(str(exc), 429, **{"Retry-After": str(exc.retry_after)})
    except Exception as exc:  # a bug or a reply nobody foresaw: say so in JSON, keep the details in the log
        log.exception("API %s failed: %s", request.path, type(exc).__name__)
        return fail("Hayon hit an unexpected problem; nothing was changed. Please try again.", 500)


@endpoint("GET")
def find(request):
    return reply(public.public_account(services.account_for(request.user)))


@endpoint("GET", "POST", changes_state=True)
def connect(request, platform):
    provider = provider_named(platform)
    # Credential platforms take a JSON body by POST; OAuth platforms hand out a URL (GET for
    # scripts, POST for a browser session).
    if provider.credential_connect and request.method != "POST":
        return fail(f"Use POST to connect {provider.label}.", 405, Allow="POST")
    limits.check(request, action="connect", provider=provider)
    data = request.GET if request.method == "GET" else _request_data(request)
    outcome = services.start_connect(request=request, provider=provider, data=data)
    if outcome.redirect_url:
        return reply({"url": outcome.redirect_url}, message=f"Open this URL to connect {provider.label}.")
    doc = services.account_for(request.user).document(provider.name)
    return reply(public.public_document(doc), message=outcome.message)


def _request_data(request):
    """A POST's fields: a JSON object, or a form (a browser posting the CSRF token with them)."""
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return request.POST
    return _json_body(request)


def _json_body(request) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise FlowError("invalid_input", "The request body must be JSON.") from None
    if not isinstance(data, dict):
        raise FlowError("invalid_input", "The request body must be a JSON object.")
    return data


@endpoint("GET", "POST", changes_state=True)
def refresh(request, platform):
    provider = provider_named(platform)
    limits.check(request, action="refresh", provider=provider)
    doc = services.refresh_connection(user=request.user, provider=provider)
    return reply(public.public_document(doc), message=f"{provider.label} refreshed.")


@endpoint("DELETE")
def disconnect(request, platform):
    provider = provider_named(platform)
    outcome = services.disconnect(user=request.user, provider=provider)
    return reply(public.public_document({"connected": False}), message=outcome.message)


def not_found(request, exception=None):
    return fail("Not found.", 404)
