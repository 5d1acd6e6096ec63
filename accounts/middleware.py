"""Response headers that depend on who is signed in."""
from django.utils.cache import patch_cache_control


class NoStoreForSignedIn:
    """`Cache-Control: no-store` on every response to a signed-in user.

    Settings, API tokens, the password page and the admin show a user's accounts and tokens; a
    shared or back-button cache must not keep them (issue 13 #14). A middleware rather than a
    decorator per view, so a page added later cannot forget it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            patch_cache_control(response, no_store=True)
        return response


class SignInThrottledStatus:
    """429 and Retry-After for any sign-in form whose attempt the limit refused.

    accounts/backends.py marks the request; the form shows the message. Hayon's /login and the
    admin's login page both answer this way, so a script sees the same refusal from either.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        retry_after = getattr(request, "sign_in_retry_after", None)
        if retry_after is not None and response.status_code == 200:
            response.status_code = 429
            response["Retry-After"] = str(retry_after)
        return response
