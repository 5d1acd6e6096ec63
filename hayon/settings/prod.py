"""Production: refuses to start without its secrets; `manage.py check --deploy` is clean."""
from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403
from .base import CACHES, PUBLIC_URL, SECRET_KEY, TOKEN_ENCRYPTION_KEYS, env

DEBUG = False
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set in production")
if not TOKEN_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("TOKEN_ENCRYPTION_KEYS must be set in production")
if SECRET_KEY in TOKEN_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("TOKEN_ENCRYPTION_KEYS must differ from SECRET_KEY")

# Sign-in, sign-up, connect and refresh limits are counted in the cache. A per-process cache
# counts per worker (and from zero in every cron run), so N workers allow N times the limit.
# Shared caches: Redis, Memcached, the database (every host); files (the workers of one host).
_PER_PROCESS_CACHES = {
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
}
if CACHES["default"]["BACKEND"] in _PER_PROCESS_CACHES:
    raise ImproperlyConfigured(
        "CACHE_URL must name a cache shared by every worker in production (rate limits are counted "
        "there), e.g. rediscache://127.0.0.1:6379/1 or dbcache://hayon_cache, not "
        f"{CACHES['default']['BACKEND'].rsplit('.', 1)[-1]}"
    )

SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if not PUBLIC_URL.startswith("https://"):
    raise ImproperlyConfigured("PUBLIC_URL must be an https:// URL in production")
