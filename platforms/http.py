"""The one place platform HTTP calls are made: timeouts, TLS, User-Agent, no redirects, error kinds.

Redirects are never followed: an API that redirects is either misconfigured or trying to send us
(and our Authorization header) somewhere else (security case 23).
"""
import functools
import logging
import os
import ssl
import urllib.request
from urllib.parse import urlsplit

import certifi
import requests
from django.conf import settings

from .errors import Kind, PlatformError

log = logging.getLogger(__name__)


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"  # never the query: it may carry a code


@functools.cache
def _environment() -> tuple[dict, str | bool]:
    """Proxies and CA bundle from the environment, read once per process.

    requests re-reads the whole environment (and ~/.netrc) on every call when `trust_env` is on:
    a measurable share of the upkeep command's CPU, and netrc credentials have no business being
    sent to platforms.
    """
    proxies = {scheme: url for scheme, url in urllib.request.getproxies().items() if scheme != "no"}
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return proxies, bundle


class PlatformSession(requests.Session):
    def __init__(self):
        super().__init__()
        self.headers["User-Agent"] = settings.HAYON_USER_AGENT
        self.headers["Accept"] = "application/json"
        self.trust_env = False
        self.proxies, self.verify = _environment()

    def request(self, method, url, **kwargs):
        kwargs.setdefault("timeout", settings.HAYON_HTTP_TIMEOUT)
        kwargs["allow_redirects"] = False
        kwargs["verify"] = self.verify  # never switched off by a caller
        host = urlsplit(url).netloc
        try:
            response = super().request(method, url, **kwargs)
        except requests.Timeout as exc:
            log.info("%s %s timed out", method, _where(url))
            raise PlatformError(Kind.UNAVAILABLE, f"{host} did not answer in time.") from exc
        except requests.RequestException as exc:
            log.info("%s %s failed: %s", method, _where(url), type(exc).__name__)
            raise PlatformError(Kind.UNAVAILABLE, f"{host} could not be reached.") from exc
        log.debug("%s %s -> %s", method, _where(url), response.status_code)
        return response


def session() -> PlatformSession:
    return PlatformSession()


def default_error(response, label: str) -> PlatformError:
    """The error kind an HTTP status means when a platform says nothing more specific."""
    status = response.status_code
    if status == 401:
        return PlatformError(Kind.REVOKED, f"{label} no longer accepts Hayon's access.", status=status)
    if status == 429:
        return PlatformError(Kind.RATE_LIMITED, f"{label} is rate limiting requests; try again later.", status=status)
    if status >= 500:
        return PlatformError(Kind.UNAVAILABLE, f"{label} is having trouble (HTTP {status}).", status=status)
    if 300 <= status < 400:
        return PlatformError(Kind.BAD_REPLY, f"{label} answered with an unexpected redirect.", status=status)
    return PlatformError(Kind.BAD_REPLY, f"{label} refused the request (HTTP {status}).", status=status)


def json_body(response, label: str) -> dict:
    """The reply's JSON object, or a BAD_REPLY error (an HTML error page, a truncated body, a list)."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise PlatformError(Kind.BAD_REPLY, f"{label} sent a reply Hayon could not read.", status=response.status_code)
    return data


def expect_json(response, label: str, classify=None) -> dict:
    """JSON of a 2xx reply; otherwise the error `classify(response)` (or the default) names."""
    if not 200 <= response.status_code < 300:
        error = classify(response) if classify else None
        raise error or default_error(response, label)
    return json_body(response, label)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~40 ms of CPU; httpx would do it for every client it builds.
    # One verifying context is safe to share between clients and threads.
    return ssl.create_default_context(cafile=certifi.where())


def httpx_client():
    """The one httpx client factory (the atproto SDK speaks httpx): same rules as `session()`."""
    import httpx

    return httpx.Client(
        timeout=settings.HAYON_HTTP_TIMEOUT,
        follow_redirects=False,
        verify=_tls_context(),
        trust_env=False,  # as for requests: the environment is read once, by _environment()
        proxy=_environment()[0].get("https"),
        headers={"User-Agent": settings.HAYON_USER_AGENT},
    )
