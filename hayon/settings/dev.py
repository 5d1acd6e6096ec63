"""Local development: `make run` serves this with SQLite."""
from .base import *  # noqa: F401,F403
from .base import env

DEBUG = env.bool("DEBUG", default=True)
if not SECRET_KEY:  # noqa: F405
    raise SystemExit("SECRET_KEY is not set: run `make run` once, or copy .env.example to .env")

# As in production, plus http images: local servers (a PDS on loopback) serve avatars over http.
_directives = CONTENT_SECURITY_POLICY["DIRECTIVES"]  # noqa: F405
CONTENT_SECURITY_POLICY = {"DIRECTIVES": {**_directives, "img-src": [*_directives["img-src"], "http:"]}}
