"""Settings shared by every environment. Values come from the environment or `.env`."""
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

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
    "accounts",
    "platforms",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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

# Outbound HTTP: every platform call has this timeout (seconds) and this User-Agent.
HAYON_HTTP_TIMEOUT = env.float("HAYON_HTTP_TIMEOUT", default=10.0)
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
MASTODON_SCOPES = env("MASTODON_SCOPES", default="read write push")

BLUESKY_SERVICE_URL = env("BLUESKY_SERVICE_URL", default="https://bsky.social")
BLUESKY_PLC_URL = env("BLUESKY_PLC_URL", default="https://plc.directory")

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
