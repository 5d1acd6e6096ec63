"""Rate limits on the routes that make Hayon call a platform: connect and refresh.

Each connect can register an app on a server of the user's choosing and each refresh spends a
platform's app-wide quota (Tumblr allows the whole app 1,000 calls an hour), so both are limited
per user (per platform) and per client address, on the browser routes and the API alike. The
stricter per-identifier limits on credential connects (Bluesky) stay with the provider.
"""
from accounts import ratelimit

# action -> scope -> (attempts, seconds)
LIMITS = {
    "connect": {"user": (10, 600), "ip": (30, 600)},
    "refresh": {"user": (10, 60), "user-hour": (60, 3600), "ip": (60, 60)},
}


def check(request, *, action: str, provider) -> None:
    """Count one attempt; raises ratelimit.RateLimited (with retry_after) when a limit is spent."""
    user = f"{request.user.pk}:{provider.name}"
    values = {"user": user, "user-hour": user, "ip": ratelimit.client_ip(request)}
    ratelimit.hit([
        (ratelimit.Limit(f"{action}-{scope}", count, seconds), values[scope])
        for scope, (count, seconds) in LIMITS[action].items()
    ])
