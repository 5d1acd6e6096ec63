"""The JSON API under /api/platform/: the same services as the settings page, for scripts."""
import json
from functools import wraps

from django.http import JsonResponse
from django.utils.cache import patch_cache_control
from django.views.decorators.csrf import csrf_exempt

from accounts.auth import ApiAuthError, authenticate_api_request
from accounts.ratelimit import RateLimited

from . import providers, public, services
from .errors import FlowError, PlatformError


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


def endpoint(*methods):
    """Method check, authentication (Bearer or session+CSRF) and error replies for an API view."""

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
            try:
                return view(request, *args, **kwargs)
            except UnknownPlatform:
                return fail("Unknown platform.", 404)
            except FlowError as exc:
                return fail(exc.message, exc.status)
            except PlatformError as exc:
                return fail(exc.message, 502)
            except RateLimited as exc:
                return fail(str(exc), 429, **{"Retry-After": str(exc.retry_after)})

        return wrapper

    return decorate


@endpoint("GET")
def find(request):
    return reply(public.public_account(services.account_for(request.user)))


@endpoint("GET", "POST")
def connect(request, platform):
    provider = provider_named(platform)
    # Credential platforms take a JSON body by POST; OAuth platforms hand out a URL on GET.
    expected = "POST" if provider.credential_connect else "GET"
    if request.method != expected:
        return fail(f"Use {expected} to connect {provider.label}.", 405, Allow=expected)
    data = _json_body(request) if expected == "POST" else request.GET
    outcome = services.start_connect(request=request, provider=provider, data=data)
    if outcome.redirect_url:
        return reply({"url": outcome.redirect_url}, message=f"Open this URL to connect {provider.label}.")
    doc = services.account_for(request.user).document(provider.name)
    return reply(public.public_document(doc), message=outcome.message)


def _json_body(request) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise FlowError("invalid_input", "The request body must be JSON.") from None
    if not isinstance(data, dict):
        raise FlowError("invalid_input", "The request body must be a JSON object.")
    return data


@endpoint("GET", "POST")
def refresh(request, platform):
    provider = provider_named(platform)
    doc = services.refresh_connection(user=request.user, provider=provider)
    return reply(public.public_document(doc), message=f"{provider.label} refreshed.")


@endpoint("DELETE")
def disconnect(request, platform):
    provider = provider_named(platform)
    outcome = services.disconnect(user=request.user, provider=provider)
    return reply(public.public_document({"connected": False}), message=outcome.message)


def not_found(request, exception=None):
    return fail("Not found.", 404)
