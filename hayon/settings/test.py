"""The test suite's settings: fixed throwaway keys, fast hashing, no network by default."""
import os

from .base import *  # noqa: F401,F403

# base.py reads no `.env` for these settings; every process the suite starts (production checks,
# runserver, gunicorn, upkeep copies) inherits this and reads none either (issue 12 #17).
os.environ["HAYON_ENV_FILE"] = ""

SECRET_KEY = "test-secret-key-not-for-production-0123456789abcdefghij"
# Two keys so that rotation is exercised: the first encrypts, both decrypt.
TOKEN_ENCRYPTION_KEYS = [
    "dGVzdC1rZXktbmV3ZXN0LTAwMDAwMDAwMDAwMDAwMDA=",
    "dGVzdC1rZXktb2xkZXItMDAwMDAwMDAwMDAwMDAwMDA=",
]
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
PUBLIC_URL = "http://testserver"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
CSRF_TRUSTED_ORIGINS = [PUBLIC_URL]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
HAYON_HTTP_TIMEOUT = 2.0
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Platform keys are configured so every card offers Connect; tests that need "not configured"
# override them.
TUMBLR_CONSUMER_KEY = "tumblr-consumer-key"
TUMBLR_CONSUMER_SECRET = "tumblr-consumer-secret"
FACEBOOK_APP_ID = "1234567890"
FACEBOOK_APP_SECRET = "facebook-app-secret"
THREADS_APP_ID = "987654321"
THREADS_APP_SECRET = "threads-app-secret"
THREADS_REDIRECT_URI = "http://testserver/api/platform/threads/callback"
MASTODON_INSTANCE_URL = "https://mastodon.example"
MASTODON_CLIENT_KEY = "mastodon-default-client-id"
MASTODON_CLIENT_SECRET = "mastodon-default-client-secret"
MASTODON_CALLBACK_URL = "http://testserver/api/platform/mastodon/callback"

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file rather than Django's shared-cache in-memory database: shared cache locks whole tables
    # and fails at once ("database table is locked") where a file database waits out the busy
    # timeout, as production SQLite does. Concurrency tests need the production behaviour.
    import os
    import tempfile

    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"hayon-test-{os.getpid()}.sqlite3")
    }
else:
    # One test database per run, as for SQLite: a test that runs pytest again in a fresh process
    # (the worker's fork tests) would otherwise create and drop the very database this run uses.
    import os

    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}  # noqa: F405

# As in production, plus http images: the fake platforms and the local PDS serve avatars over http.
_directives = CONTENT_SECURITY_POLICY["DIRECTIVES"]  # noqa: F405
CONTENT_SECURITY_POLICY = {"DIRECTIVES": {**_directives, "img-src": [*_directives["img-src"], "http:"]}}
