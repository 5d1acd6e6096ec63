"""Fixed-window rate limits kept in the shared cache (one counter per key and window)."""
import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True)
class Limit:
    scope: str
    count: int
    seconds: int


class RateLimited(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"Too many attempts. Try again in {retry_after} seconds.")
        self.retry_after = retry_after


def client_ip(request) -> str:
    """REMOTE_ADDR, or the address our own trusted proxies saw. A client-set header is not trusted."""
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "")


def _key(limit: Limit, value: str, window: int) -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]  # identifiers are not cache-key safe
    return f"rl:{limit.scope}:{digest}:{window}"


def hit(checks: list[tuple[Limit, str]]) -> None:
    """Count one attempt against every (limit, value); raise RateLimited if any is exhausted.

    Every limit is checked before any is counted, so a refused attempt does not extend the lockout.
    """
    now = int(time.time())
    for limit, value in checks:
        window = now // limit.seconds
        if cache.get(_key(limit, value, window), 0) >= limit.count:
            raise RateLimited(retry_after=limit.seconds - now % limit.seconds)
    for limit, value in checks:
        key = _key(limit, value, now // limit.seconds)
        if not cache.add(key, 1, timeout=limit.seconds + 1):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=limit.seconds + 1)
