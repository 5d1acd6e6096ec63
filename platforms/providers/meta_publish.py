"""What publishing to Meta's Graph hosts shares (Facebook Pages, Instagram, Threads): one call
helper that says what a failure means for a delivery, media containers, publishing quotas.

Error envelope: {"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}
(https://developers.facebook.com/docs/graph-api/guides/error-handling). What a failure means:
- 190/102 -> expired or revoked, 10 and 200-299 -> permission removed (reconnect): meta.meta_error.
- 4/17/32/341/613 (throttled): the platform refused the call, so it did not take the post: NotAccepted.
- 100 (invalid parameter), 368, 506 (duplicate) and the Instagram/Threads media errors: the post
  itself was refused: ContentRejected with Meta's message.
- a timeout, a reset or a 5xx: on the final call the outcome is unknown (the post may exist); on a
  step before it (an unpublished photo, a container) nothing was published: NotAccepted.
- a connection that never opened (DNS, refused, connect timeout): nothing was sent: NotAccepted.
"""
import logging
import time

from django.conf import settings
from urllib3.exceptions import ConnectTimeoutError

from publishing.interface import ContentRejected, NotAccepted

from .. import http
from ..errors import Kind, PlatformError
from .meta import meta_error, with_token

log = logging.getLogger(__name__)

# Container polling: Meta suggests polling about once a minute for up to 5 minutes; Hayon polls
# sooner and for less inside one attempt (the delivery's lease), and a container still
# IN_PROGRESS is retried later with the same container id (so never published twice).
POLL_INTERVAL = 3.0
POLL_SECONDS = 60.0
MAX_MESSAGE = 300
# IG error codes (/docs/instagram-platform/instagram-graph-api/reference/error-codes): 9007/2207027
# "Media ID is not available": published before the container was FINISHED.
NOT_READY = 9007


def poll_interval() -> float:
    return float(getattr(settings, "HAYON_META_POLL_INTERVAL", POLL_INTERVAL))


def poll_seconds() -> float:
    return float(getattr(settings, "HAYON_META_POLL_SECONDS", POLL_SECONDS))


class Graph:
    """Calls to one Graph host with one token (and its appsecret_proof when `app_secret` is given)."""

    def __init__(self, *, label: str, base: str, token: str, app_secret: str = ""):
        self.label, self.base, self.token, self.app_secret = label, base.rstrip("/"), token, app_secret

    def _params(self, params: dict) -> dict:
        params = {k: v for k, v in params.items() if v is not None}
        if self.app_secret:
            return with_token(self.token, self.app_secret, **params)
        return {**params, "access_token": self.token}

    def get(self, path: str, **params) -> dict:
        """A read: any failure is harmless to retry (NotAccepted where transient)."""
        return self._call("GET", path, params, final=False)

    def post(self, path: str, *, final: bool, **params) -> dict:
        """A write. `final`: the call that makes the post visible, whose timeout leaves the outcome unknown."""
        return self._call("POST", path, params, final=final)

    def _call(self, method: str, path: str, params: dict, *, final: bool) -> dict:
        url = f"{self.base}/{path.lstrip('/')}"
        # The token goes in the form body of a POST, never in a URL a proxy or log might keep.
        kwargs = {"data": self._params(params)} if method == "POST" else {"params": self._params(params)}
        try:
            response = http.session().request(method, url, **kwargs)
        except PlatformError as error:
            raise _transport_error(error, self.label, final=final) from None
        if 200 <= response.status_code < 300:
            return http.json_body(response, self.label)
        raise reply_error(response, self.label, final=final)


def _never_sent(error: PlatformError) -> bool:
    """True when the connection never opened (DNS, refused, connect timeout): nothing was sent."""
    seen, cause = set(), error.__cause__ or error.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectTimeoutError):  # and its subclasses NewConnectionError, NameResolutionError
            return True
        inner = getattr(cause, "reason", None) or (cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else None)
        cause = inner or cause.__cause__ or cause.__context__
    return False  # a reset or a timeout after the request went out: it may have arrived


def _transport_error(error: PlatformError, label: str, *, final: bool) -> PlatformError:
    if error.kind in (Kind.UNAVAILABLE, Kind.BAD_REPLY) and (not final or _never_sent(error)):
        return NotAccepted(error.message, kind=error.kind, status=error.status, code=error.code)
    return error


def reply_error(response, label: str, *, final: bool) -> Exception:
    """What a non-2xx Graph reply means for the delivery (see the module docstring)."""
    body = _error_body(response)
    code, subcode = body.get("code"), body.get("error_subcode")
    tag = f"{code}/{subcode}" if subcode else (str(code) if code is not None else None)
    known = meta_error(response, label)
    if known is not None and known.kind == Kind.RATE_LIMITED:
        return NotAccepted(known.message, kind=Kind.RATE_LIMITED, status=known.status, code=known.code)
    if known is not None and known.kind == Kind.UNAVAILABLE:
        return NotAccepted(known.message, status=known.status, code=known.code) if not final else known
    if known is not None:
        return known  # expired, revoked, permission removed: the connection's health records it
    if code == NOT_READY:  # the container is not FINISHED yet: nothing was published
        return NotAccepted(f"{label} is still processing the media; Hayon will try again.", status=response.status_code, code=tag)
    if isinstance(code, int) and code < 0:  # Instagram's -1/-2: "server error" or "download timed out", try again
        message = f"{label} is having a temporary problem."
        error = PlatformError(Kind.UNAVAILABLE, message, status=response.status_code, code=tag)
        return error if final else NotAccepted(message, status=response.status_code, code=tag)
    if response.status_code == 429:
        return NotAccepted(f"{label} is rate limiting Hayon; try again later.", kind=Kind.RATE_LIMITED, status=429)
    if response.status_code == 401:
        return http.default_error(response, label)
    message = str(body.get("error_user_msg") or body.get("message") or f"HTTP {response.status_code}")[:MAX_MESSAGE]
    return ContentRejected(f"{label} refused the post: {message}", code=tag)


def _error_body(response) -> dict:
    try:
        error = (response.json() or {}).get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def object_id(reply: dict, label: str, key: str = "id") -> str:
    value = reply.get(key)
    if not isinstance(value, (str, int)) or not str(value).strip():
        raise PlatformError(Kind.BAD_REPLY, f"{label} answered without the {key} of what it made.")
    return str(value)


# -- containers (Instagram, Threads) ---------------------------------------------------------------
DOWNLOAD_HINT = (" Meta downloads images from Hayon's PUBLIC_URL, which must be reachable from the internet"
                 " (check PUBLIC_URL and the proxy in front of Hayon).")


class ContainerExpired(Exception):
    """Not published within 24 hours: Meta dropped it (a new one may be made: this one never went out)."""


def wait_for_container(graph: Graph, container_id: str, *, status_field: str, error_fields: str,
                       describe) -> str:
    """Poll until the container is FINISHED (or PUBLISHED); returns that status.

    ERROR raises ContentRejected with Meta's reason (`describe(reply)`); EXPIRED raises
    ContainerExpired; still IN_PROGRESS after poll_seconds() raises a transient error, and the
    delivery retries later with the same container.
    """
    ends = time.monotonic() + poll_seconds()
    while True:
        reply = graph.get(container_id, fields=f"{status_field},{error_fields}")
        status = str(reply.get(status_field) or "")
        if status in ("FINISHED", "PUBLISHED"):
            return status
        if status == "ERROR":
            reason = describe(reply)[:MAX_MESSAGE]
            hint = DOWNLOAD_HINT if "download" in reason.lower() else ""
            raise ContentRejected(f"{graph.label} could not use the media: {reason}{hint}", code="container_error")
        if status == "EXPIRED":
            raise ContainerExpired()
        if time.monotonic() + poll_interval() > ends:
            raise NotAccepted(f"{graph.label} is still processing the media; Hayon will try again.")
        time.sleep(poll_interval())


def quota_left(reply: dict) -> tuple[int, int] | None:
    """(posts left, posts allowed) in the rolling 24 hours from a publishing-limit reply, or None.

    Instagram: GET /{ig-user-id}/content_publishing_limit?fields=quota_usage,config and Threads:
    GET /{threads-user-id}/threads_publishing_limit?fields=quota_usage,config both answer
    {"data": [{"quota_usage": n, "config": {"quota_total": m, "quota_duration": 86400}}]}.
    """
    data = reply.get("data")
    entry = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else reply
    used, config = entry.get("quota_usage"), entry.get("config")
    total = config.get("quota_total") if isinstance(config, dict) else None
    if not isinstance(used, int) or not isinstance(total, int):
        return None
    return total - used, total


def check_quota(graph: Graph, path: str) -> None:
    """Refuse (before anything is made) when the account's publishing quota is spent.

    Read at run time: Instagram's has been 25, 50 and 100 posts a day; Threads' is 250.
    """
    try:
        reply = graph.get(path, fields="quota_usage,config")
    except NotAccepted:
        return  # the limit endpoint is a courtesy: publishing itself enforces the quota
    quota = quota_left(reply)
    if quota is not None and quota[0] <= 0:
        raise ContentRejected(f"{graph.label}: all {quota[1]} posts allowed in 24 hours are used up. "
                              "Retry this post later.", code="quota")


def permalink(graph: Graph, media_id: str, fallback: str) -> str:
    """The post's public link (`permalink` field), or `fallback`: the post exists either way."""
    try:
        link = graph.get(media_id, fields="permalink").get("permalink")
    except (PlatformError, ContentRejected):
        return fallback
    return link if isinstance(link, str) and link.startswith("https://") else fallback
