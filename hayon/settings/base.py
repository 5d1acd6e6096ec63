"""Settings shared by every environment. Values come from the environment or `.env`."""
import os
from pathlib import Path

import environ
from csp.constants import NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def _env_file() -> Path | None:
    """The `.env` to read: `HAYON_ENV_FILE` (empty: none), by default the one `make run` writes.

    The test settings never read one: a developer's `.env` (secrets, a DATABASE_URL) must not
    change what the suite sees, nor what the production processes it starts see (issue 12 #17;
    hayon/settings/test.py passes HAYON_ENV_FILE="" on to them).
    """
    if os.environ.get("DJANGO_ENV") == "test" or os.environ.get("DJANGO_SETTINGS_MODULE") == "hayon.settings.test":
        return None
    path = os.environ.get("HAYON_ENV_FILE", str(BASE_DIR / ".env"))
    return Path(path) if path else None


env = environ.Env()
if (_dotenv := _env_file()) is not None:
    # The environment wins over the file; " # ..." after a value is a comment, as in .env.example.
    environ.Env.read_env(_dotenv, overwrite=False, parse_comments=True)

SECRET_KEY = env("SECRET_KEY", default="")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
PUBLIC_URL = env("PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[PUBLIC_URL])

# Fernet keys for tokens at rest, newest first. Independent of SECRET_KEY on purpose:
# leaking one must not reveal the other, and each rotates on its own schedule.
TOKEN_ENCRYPTION_KEYS = env.list("TOKEN_ENCRYPTION_KEYS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "csp",  # django-csp: its checks catch a policy in the pre-4.0 format
    "accounts",
    "platforms",
    "django_tasks",
    "django_tasks_db",
    "publishing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.NoStoreForSignedIn",
    "accounts.middleware.SignInThrottledStatus",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

# No inline script, style or event handler anywhere: Hayon's one script is static/js/hayon.js.
# Images may come from any https host (avatars on the platforms' CDNs). No `form-action`:
# Connect posts to Hayon, which redirects to the platform, and browsers apply form-action to
# that redirect too.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "https:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
    },
}

ROOT_URLCONF = "hayon.urls"
WSGI_APPLICATION = "hayon.wsgi.application"

_CONTEXT_PROCESSORS = [
    "django.template.context_processors.request",
    "django.contrib.auth.context_processors.auth",
    "django.contrib.messages.context_processors.messages",
]
TEMPLATES = [
    {  # Hayon's pages: Jinja2, several times faster to render (see hayon/templating.py)
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {
            "environment": "hayon.templating.environment",
            "context_processors": [*_CONTEXT_PROCESSORS, "hayon.templating.csrf"],
        },
    },
    {  # the admin's templates
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": _CONTEXT_PROCESSORS},
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite ignores SELECT ... FOR UPDATE; IMMEDIATE transactions take the write lock up front,
    # so the row-locked sections in platforms/services.py stay serialised on SQLite too.
    # WAL lets readers (page views) go on while a writer commits; NORMAL sync is safe under WAL.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        transaction_mode="IMMEDIATE", timeout=20,
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    )
else:
    # A PostgreSQL connection costs a server process fork: keep it for a minute (checked before
    # reuse) instead of opening one per request. bench/pages.py measured the difference.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The cache holds rate-limit counters; it must be shared by every worker in production.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://hayon")}

AUTH_USER_MODEL = "accounts.User"
# Django's username and password check behind one sign-in limit for every login form (the admin's too).
AUTHENTICATION_BACKENDS = ["accounts.backends.RateLimitedModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "settings"
LOGOUT_REDIRECT_URL = "home"

# Sessions live server-side in the database (security case 38), never in cookies.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

# Publishing runs in a task worker (`manage.py worker`), never in a request. The database backend
# needs nothing else running; task arguments are ids only (it stores them as plain JSON).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
# Uploaded media, stored through Django's storage API under random names (S3 and the like: STORAGES).
MEDIA_ROOT = env("MEDIA_ROOT", default=str(BASE_DIR / "media"))
MEDIA_URL = "media/"  # never served as is: pages and platforms get signed, expiring URLs
# A worker holds a delivery this long (seconds); one that dies lets it go when the lease runs out.
# Longer than the slowest attempt: a few uploads and a post, each bounded by HAYON_HTTP_TIMEOUT.
HAYON_PUBLISH_LEASE_SECONDS = env.int("HAYON_PUBLISH_LEASE_SECONDS", default=300)
HAYON_PUBLISH_MAX_ATTEMPTS = env.int("HAYON_PUBLISH_MAX_ATTEMPTS", default=5)
# Scheduled posts (issue 15): minutes late a delivery may still go out after an outage; later, it is `missed`.
HAYON_LATE_GRACE = env.int("HAYON_LATE_GRACE", default=60)
# Threads, Instagram and Facebook photos are fetched by Meta from PUBLIC_URL/media/s/<signed token>:
# how long such a link works, and how Meta's media containers are waited for.
HAYON_SIGNED_MEDIA_SECONDS = env.int("HAYON_SIGNED_MEDIA_SECONDS", default=3600)
HAYON_META_POLL_INTERVAL = env.float("HAYON_META_POLL_INTERVAL", default=3.0)
HAYON_META_POLL_SECONDS = env.float("HAYON_META_POLL_SECONDS", default=60.0)

# Outbound HTTP: every platform call has this timeout (seconds) and this User-Agent.
HAYON_HTTP_TIMEOUT = env.float("HAYON_HTTP_TIMEOUT", default=10.0)
# One budget for all the calls of one user action (a connect: discovery, registration, exchange)
# or of one account in upkeep; under gunicorn's 30 s worker timeout.
HAYON_ACTION_TIMEOUT = env.float("HAYON_ACTION_TIMEOUT", default=20.0)
HAYON_USER_AGENT = env("HAYON_USER_AGENT", default="Hayon/0.1 (+self-hosted)")
# Allows user-supplied hosts on loopback/private networks. For tests and local development only.
HAYON_ALLOW_PRIVATE_HOSTS = env.bool("HAYON_ALLOW_PRIVATE_HOSTS", default=False)
OAUTH_STATE_MAX_AGE = 600  # seconds; RFC 9700 wants short-lived state
# How many proxies in front of Hayon append to X-Forwarded-For. 0 = trust only REMOTE_ADDR.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

# Platforms. Every base URL is a setting so tests and self-hosted servers can point elsewhere.
TUMBLR_CONSUMER_KEY = env("TUMBLR_CONSUMER_KEY", default="")
TUMBLR_CONSUMER_SECRET = env("TUMBLR_CONSUMER_SECRET", default="")
HAYON_TUMBLR_UPKEEP_PER_HOUR = env.int("HAYON_TUMBLR_UPKEEP_PER_HOUR", default=500)
TUMBLR_WWW_URL = env("TUMBLR_WWW_URL", default="https://www.tumblr.com")
TUMBLR_API_URL = env("TUMBLR_API_URL", default="https://api.tumblr.com")

FACEBOOK_APP_ID = env("FACEBOOK_APP_ID", default="")
FACEBOOK_APP_SECRET = env("FACEBOOK_APP_SECRET", default="")
FACEBOOK_GRAPH_VERSION = env("FACEBOOK_GRAPH_VERSION", default="v24.0")
FACEBOOK_WWW_URL = env("FACEBOOK_WWW_URL", default="https://www.facebook.com")
FACEBOOK_GRAPH_URL = env("FACEBOOK_GRAPH_URL", default="https://graph.facebook.com")

THREADS_APP_ID = env("THREADS_APP_ID", default="")
THREADS_APP_SECRET = env("THREADS_APP_SECRET", default="")
THREADS_REDIRECT_URI = env("THREADS_REDIRECT_URI", default="")
THREADS_SCOPES = env("THREADS_SCOPES", default="threads_basic,threads_content_publish,threads_manage_insights")
THREADS_AUTHORIZE_URL = env("THREADS_AUTHORIZE_URL", default="https://threads.net/oauth/authorize")
THREADS_GRAPH_URL = env("THREADS_GRAPH_URL", default="https://graph.threads.net")

MASTODON_INSTANCE_URL = env("MASTODON_INSTANCE_URL", default="")
MASTODON_CLIENT_KEY = env("MASTODON_CLIENT_KEY", default="")
MASTODON_CLIENT_SECRET = env("MASTODON_CLIENT_SECRET", default="")
MASTODON_CALLBACK_URL = env("MASTODON_CALLBACK_URL", default="")
MASTODON_SCOPES = env("MASTODON_SCOPES", default="")  # empty: the narrowest the server accepts

BLUESKY_SERVICE_URL = env("BLUESKY_SERVICE_URL", default="https://bsky.social")
BLUESKY_PLC_URL = env("BLUESKY_PLC_URL", default="https://plc.directory")
# Bluesky sign-in (AT Protocol OAuth, issue 16): the default way to connect; an app password stays
# the alternative. ATPROTO_CLIENT_KEYS: a JSON list of private ES256 JWKs (each with a "kid"), newest
# first; Hayon signs with the first and publishes all at /oauth/jwks.json, so a rotated-out key keeps
# its sessions until removed. Not needed when PUBLIC_URL is http://127.0.0.1 (the loopback client).
BLUESKY_OAUTH = env.bool("BLUESKY_OAUTH", default=True)
ATPROTO_CLIENT_KEYS = env("ATPROTO_CLIENT_KEYS", default="")

# Every handler in the process redacts query strings and bearer credentials (an OAuth callback's
# URL carries its code and state): `configure` applies LOGGING, then adds the filter to handlers
# set up elsewhere: runserver's `django.server` (Django's defaults give it a handler of its own;
# it printed `callback?code=...&state=...`, issue 13 #9) and gunicorn's access and error logs.
LOGGING_CONFIG = "hayon.log_redaction.configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "hayon.log_redaction.RedactSecrets"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # oauthlib logs its client (tokens, verifier) and the signed parameters at DEBUG: never below
    # WARNING, whatever LOG_LEVEL says (found by tests/test_sentinel_sweep.py).
    "loggers": {name: {"level": "WARNING"} for name in ("oauthlib", "requests_oauthlib")},
}
