"""The one place platform HTTP calls are made: deadlines, byte caps, TLS, pinned addresses, error kinds.

- Redirects are never followed: an API that redirects is either misconfigured or trying to send us
  (and our Authorization header) somewhere else (security case 23).
- Every call has a wall-clock deadline for the whole exchange (connect, TLS, headers, body), not
  per read: a server dripping a byte a second is cut off at HAYON_HTTP_TIMEOUT (case 40). Every
  socket wait is bounded by what is left (`_Bounded`), so no single read can outlive the deadline.
- Every body is read in chunks up to a byte cap (JSON replies: `JSON_MAX_BYTES`), after our own
  gzip/deflate decoding, so neither a 1 GiB body nor a gzip bomb enters memory (case 40).
- `with deadline(seconds):` gives a user action (or one account in upkeep) one budget for all its
  calls; a server that timed out inside it is not tried again (issue 12 item 11).
- Every socket is opened to an address the SSRF guard checked at that moment (hosts.py), keeping
  SNI and certificate checks on the name: no DNS rebinding window (case 50).
Both requests (`session()`) and httpx (`httpx_client()`, used by the atproto SDK) go through this.
"""
import contextlib
import contextvars
import functools
import logging
import os
import socket
import ssl
import threading
import time
import urllib.request
import zlib
from urllib.parse import urlsplit

import certifi
import httpcore
import httpx
import requests
import urllib3
from django.conf import settings
from httpcore._backends.sync import SyncStream
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from . import hosts, replies
from .errors import Kind, PlatformError

log = logging.getLogger(__name__)

JSON_MAX_BYTES = 1024 * 1024  # a platform's JSON reply; media calls ask for more with max_bytes=
_CHUNK = 64 * 1024
ACCEPT_ENCODING = "gzip, deflate"  # the encodings _Inflate decodes under the cap; nothing else is asked for


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"  # never the query: it may carry a code


def _server(url: str) -> str:
    """host[:port] of a URL, the name used in messages and for remembering timed-out servers."""
    return urlsplit(str(url)).netloc.rsplit("@", 1)[-1].lower()


# -- deadlines --------------------------------------------------------------------------------------
class Deadline:
    """One budget for every call made inside `with deadline(...)`; see `deadline`."""

    def __init__(self, seconds: float, parent: "Deadline | None" = None):
        self.ends = time.monotonic() + seconds
        if parent is not None:
            self.ends = min(self.ends, parent.ends)
        # Shared with an enclosing deadline: a server that timed out inside stays timed out outside.
        self._timed_out: dict[str, str] = parent._timed_out if parent else {}
        self._lock = parent._lock if parent else threading.Lock()

    def remaining(self) -> float:
        return max(0.0, self.ends - time.monotonic())

    def admit(self, server: str):
        """Refuse at once a server that already timed out, or any call once the budget is spent."""
        with self._lock:
            message = self._timed_out.get(server)
        if message:
            raise PlatformError(Kind.UNAVAILABLE, message)
        if self.remaining() <= 0:
            raise PlatformError(Kind.UNAVAILABLE, f"Hayon ran out of time for this action before reaching {server}.")

    def remember_timeout(self, server: str, message: str):
        with self._lock:
            self._timed_out[server] = message


_ACTION: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("hayon_http_action", default=None)
_EXCHANGE_ENDS: contextvars.ContextVar[float | None] = contextvars.ContextVar("hayon_http_exchange", default=None)


@contextlib.contextmanager
def deadline(seconds: float | None = None):
    """Give every platform call inside one budget: each call's deadline is min(its own, what is left).

    `seconds` defaults to HAYON_ACTION_TIMEOUT (twice HAYON_HTTP_TIMEOUT when unset). Nested
    deadlines never extend the outer one. A server that timed out inside is refused at once for the
    rest of the block, with the same message, instead of costing the timeout again.

    Contextvars belong to a thread: a worker thread (a thread pool in upkeep) does not see the
    deadline of the thread that started it, and must open its own `with deadline(...)`. The object
    is safe to share between threads that copy the context.
    """
    if seconds is None:
        seconds = getattr(settings, "HAYON_ACTION_TIMEOUT", None) or 2 * settings.HAYON_HTTP_TIMEOUT
    token = _ACTION.set(Deadline(seconds, _ACTION.get()))
    try:
        yield _ACTION.get()
    finally:
        _ACTION.reset(token)


class _Exchange:
    """One call: its deadline (own timeout, capped by the action's), set for the sockets to read."""

    def __init__(self, server: str, own):
        self.server = server
        self.action = _ACTION.get()
        if self.action is not None:
            self.action.admit(server)
        if isinstance(own, tuple):  # requests' (connect, read): the exchange gets the longer of the two
            own = max((value for value in own if value is not None), default=None)
        own = float(own) if own is not None else float(settings.HAYON_HTTP_TIMEOUT)
        now = time.monotonic()
        self.ends = now + own if self.action is None else min(now + own, self.action.ends)
        # The per-operation timeout handed to requests/httpx: the whole budget; `_Bounded` enforces the total.
        self.timeout = own if self.action is None else min(own, self.ends - now)

    def __enter__(self):
        self._token = _EXCHANGE_ENDS.set(self.ends)
        return self

    def __exit__(self, *exc):
        _EXCHANGE_ENDS.reset(self._token)

    def failure(self, exc: BaseException, *, method: str, url: str, timed_out: bool) -> PlatformError:
        """The PlatformError for a failed exchange; a timeout is remembered for the rest of the action."""
        if timed_out or time.monotonic() >= self.ends - 0.05:  # e.g. a TLS handshake cut off at the deadline
            log.info("%s %s timed out", method, _where(url))
            message = f"{self.server} did not answer in time."
            if self.action is not None:
                self.action.remember_timeout(self.server, message)
            return PlatformError(Kind.UNAVAILABLE, message)
        log.info("%s %s failed: %s", method, _where(url), type(exc).__name__)
        return PlatformError(Kind.UNAVAILABLE, f"{self.server} could not be reached.")


def _remaining(own: float | None) -> float | None:
    """A socket wait: its own timeout, never past the current exchange's deadline."""
    ends = _EXCHANGE_ENDS.get()
    if ends is None:
        return own
    left = ends - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline of this call has passed")
    return left if own is None else min(own, left)


# -- sockets ----------------------------------------------------------------------------------------
class _Bounded:
    """Before every wait (connect, handshake, read, write), the timeout becomes what is left."""

    _own = None

    def settimeout(self, value):
        self._own = value
        super().settimeout(value)

    def _bound(self):
        super().settimeout(_remaining(self._own))

    def connect(self, *args):
        self._bound()
        return super().connect(*args)

    def recv(self, *args):
        self._bound()
        return super().recv(*args)

    def recv_into(self, *args):
        self._bound()
        return super().recv_into(*args)

    def send(self, *args):
        self._bound()
        return super().send(*args)

    def sendall(self, *args):
        self._bound()
        return super().sendall(*args)


class _BoundedSocket(_Bounded, socket.socket):
    pass


class _BoundedSSLSocket(_Bounded, ssl.SSLSocket):
    def read(self, *args):
        self._bound()
        return super().read(*args)

    def write(self, *args):
        self._bound()
        return super().write(*args)

    def do_handshake(self, *args):
        self._bound()
        return super().do_handshake(*args)


def _addresses(host: str, port: int, timeout: float | None, *, guarded: bool) -> list[str]:
    """The addresses to connect to; for a guarded connection each one passed the SSRF guard just now.

    The lookup runs in a helper thread so that a name server that stalls (the attacker's own, for
    the attacker's name) costs no more than the call's deadline.
    """
    if not guarded:
        return [info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)]
    if _literal_or_local(host):  # nothing to look up
        addresses, refused = hosts.connectable_addresses(host, port)
    else:
        addresses, refused = _in_thread(functools.partial(hosts.connectable_addresses, host, port), _remaining(timeout))
    if refused:
        log.warning("refused to connect to %s: it resolves to %s", host, refused)
        raise PlatformError(
            Kind.UNAVAILABLE, f"The server {host} is on a private network; Hayon only connects to public servers."
        )
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} could not be found")
    return addresses


def _literal_or_local(host: str) -> bool:
    host = host.strip("[]").lower().rstrip(".")
    return hosts._is_ip(host) or host == "localhost" or host.endswith(".localhost")


def _in_thread(function, timeout: float | None):
    result: list = []

    def run():
        try:
            result.append((True, function()))
        except BaseException as exc:  # handed to the caller's thread
            result.append((False, exc))

    worker = threading.Thread(target=run, name="hayon-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        raise TimeoutError("the name lookup took too long")
    ok, value = result[0]
    if not ok:
        raise value
    return value


def _connect(host: str, port: int, *, timeout, guarded: bool, source_address=None, options=()) -> socket.socket:
    """A connected `_BoundedSocket` to `host`, through the addresses `_addresses` allows."""
    timeout = timeout if isinstance(timeout, (int, float)) else None
    error: OSError | None = None
    for address in _addresses(host, port, timeout, guarded=guarded):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = _BoundedSocket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            for option in options or ():
                sock.setsockopt(*option)
            sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect((address, port))
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error or OSError(f"no address to connect to for {host}")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The one verifying TLS context, for requests and httpx alike.

    Loading the CA bundle costs ~40 ms of CPU; urllib3 and httpx would do it for every connection or
    client. One verifying context is safe to share between clients and threads.
    """
    bundle = _environment()[1]
    return verifying_context(bundle if isinstance(bundle, str) else certifi.where())


def verifying_context(cafile: str) -> ssl.SSLContext:
    """Certificates and host names checked; its sockets are `_BoundedSSLSocket`s, so waits over TLS
    keep to the deadline too."""
    context = ssl.create_default_context(cafile=cafile)
    context.sslsocket_class = _BoundedSSLSocket
    return context


# -- requests ---------------------------------------------------------------------------------------
def _new_urllib3_socket(conn) -> socket.socket:
    # A connection through a proxy goes to the proxy (which resolves the name itself): not guarded.
    try:
        return _connect(
            conn._dns_host, conn.port, timeout=conn.timeout, guarded=conn.proxy is None,
            source_address=conn.source_address, options=conn.socket_options,
        )
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError as exc:
        raise ConnectTimeoutError(conn, f"Connection to {conn.host} timed out.") from exc
    except OSError as exc:
        raise NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from exc


class _PinnedHTTPConnection(urllib3.connection.HTTPConnection):
    def _new_conn(self):
        return _new_urllib3_socket(self)


class _PinnedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # TLS is wrapped by urllib3 with server_hostname = the URL's host: SNI and the certificate
        # are checked on the name although the socket went to a pinned address.
        self.ssl_context = _tls_context()
        self.ca_certs = self.ca_cert_dir = None  # already in the context (requests would reload them)

    def _new_conn(self):
        return _new_urllib3_socket(self)


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _PinnedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter with urllib3 connections that open `_connect` sockets."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy, **kwargs):
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager


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
    def __init__(self, *, max_bytes: int = JSON_MAX_BYTES):
        super().__init__()
        self.headers["User-Agent"] = settings.HAYON_USER_AGENT
        self.headers["Accept"] = "application/json"
        self.headers["Accept-Encoding"] = ACCEPT_ENCODING
        self.trust_env = False
        self.proxies, self.verify = _environment()
        self.max_bytes = max_bytes
        self.mount("https://", _PinnedAdapter())
        self.mount("http://", _PinnedAdapter())

    def request(self, method, url, **kwargs):
        """The whole reply, read within the deadline and the byte cap, or a PlatformError.

        Accepts `max_bytes=` to raise the cap for one call; `stream=` is ignored (the body is read here).
        """
        limit = kwargs.pop("max_bytes", self.max_bytes)
        kwargs.pop("stream", None)
        with _Exchange(_server(url), kwargs.get("timeout")) as exchange:
            kwargs["timeout"] = exchange.timeout  # per wait; `_Bounded` sockets hold the whole exchange to it
            kwargs["allow_redirects"] = False
            kwargs["verify"] = self.verify  # never switched off by a caller
            kwargs["stream"] = True  # the body is read below, under the cap
            try:
                response = super().request(method, url, **kwargs)
                try:
                    response._content = read_capped(
                        _urllib3_chunks(response.raw), response.headers.get("Content-Encoding"),
                        limit=limit, server=exchange.server,
                    )
                finally:
                    response.close()
            except PlatformError:
                raise
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                timed_out = isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError))
                raise exchange.failure(exc, method=method, url=url, timed_out=timed_out) from exc
        response._content_consumed = True
        response.__class__ = CheckedResponse
        log.debug("%s %s -> %s", method, _where(url), response.status_code)
        return response


class CheckedResponse(requests.Response):
    """A reply whose `.json()` goes through platforms/replies.py: a deep or hostile body is a
    ValueError (requests' JSONDecodeError), as invalid JSON already was, never a RecursionError."""

    def json(self, **kwargs):
        try:
            return replies.parse(self.content, label=_server(self.url or ""))
        except PlatformError as exc:
            raise requests.exceptions.JSONDecodeError(exc.message, "", 0) from None


def _urllib3_chunks(raw):
    while chunk := raw.read(_CHUNK, decode_content=False):
        yield chunk


def session(*, max_bytes: int = JSON_MAX_BYTES) -> PlatformSession:
    return PlatformSession(max_bytes=max_bytes)


# -- bodies -----------------------------------------------------------------------------------------
class _Inflate:
    """gzip/deflate decoding that never produces more than it is asked for (zlib's max_length)."""

    def __init__(self, encoding: str):
        self.gzip = encoding in ("gzip", "x-gzip")
        self._new(16 + zlib.MAX_WBITS if self.gzip else zlib.MAX_WBITS)
        self._started = False

    def _new(self, wbits: int):
        self.wbits = wbits
        self._zlib = zlib.decompressobj(wbits)

    def feed(self, data: bytes, room: int) -> bytes:
        """Decoded bytes of `data`; at most room + 1 of them (one more than room means: too large)."""
        out = bytearray()
        while data and len(out) <= room:
            try:
                out += self._zlib.decompress(data, room + 1 - len(out))
            except zlib.error:
                if self.gzip or self._started or self.wbits < 0:
                    raise
                self._new(-zlib.MAX_WBITS)  # "deflate" sent as raw deflate (no zlib header), as some servers do
                continue
            self._started = True
            data = self._zlib.unconsumed_tail
            if not data and self._zlib.eof and self.gzip and self._zlib.unused_data:
                data = self._zlib.unused_data  # another gzip member follows
                self._new(self.wbits)
        return bytes(out)


def _too_large(server: str, limit: int) -> PlatformError:
    return PlatformError(Kind.BAD_REPLY, f"{server} sent a reply larger than Hayon accepts ({limit // 1024} KiB).")


def read_capped(chunks, encoding: str | None, *, limit: int, server: str) -> bytes:
    """The decoded body of `chunks` (raw bytes off the wire), or BAD_REPLY past `limit` bytes.

    Both the bytes received and the bytes decoded are capped, and decoding stops one byte past the
    cap: a gzip bomb is never inflated.
    """
    encoding = (encoding or "identity").strip().lower()
    inflate = None
    if encoding not in ("identity", ""):
        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise PlatformError(Kind.BAD_REPLY, f"{server} sent a reply in an encoding Hayon did not ask for.")
        inflate = _Inflate(encoding)
    body = bytearray()
    received = 0
    for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise _too_large(server, limit)
        try:
            body += inflate.feed(chunk, limit - len(body)) if inflate else chunk
        except zlib.error as exc:
            raise PlatformError(Kind.BAD_REPLY, f"{server} sent a reply Hayon could not decode.") from exc
        if len(body) > limit:
            raise _too_large(server, limit)
    return bytes(body)


# -- replies ----------------------------------------------------------------------------------------
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
    """The reply's JSON object, or a BAD_REPLY error (an HTML error page, a truncated body, a list,
    nesting too deep, a number out of range): through the one validating parser, platforms/replies.py."""
    return replies.json_object(response.content, label=label, status=response.status_code)


def expect_json(response, label: str, classify=None) -> dict:
    """JSON of a 2xx reply; otherwise the error `classify(response)` (or the default) names."""
    if not 200 <= response.status_code < 300:
        error = classify(response) if classify else None
        raise error or default_error(response, label)
    return json_body(response, label)


# -- httpx (the atproto SDK) ------------------------------------------------------------------------
class TransportFailure(PlatformError, httpx.TransportError):
    """A PlatformError that is also an httpx error, so code written for httpx (the SDK, handle
    resolution) still catches it, and code that expects PlatformError gets a readable message."""

    def __init__(self, error: PlatformError, request: httpx.Request):
        PlatformError.__init__(self, error.kind, error.message, status=error.status, code=error.code)
        self._request = request


class _PinnedBackend(httpcore.NetworkBackend):
    """httpcore's sockets, opened by `_connect` (guarded unless they go to a proxy)."""

    def __init__(self, *, guarded: bool):
        self.guarded = guarded

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        options = [*(socket_options or ()), (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        try:
            sock = _connect(host, port, timeout=timeout, guarded=self.guarded,
                            source_address=(local_address, 0) if local_address else None, options=options)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return SyncStream(sock)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):  # pragma: no cover
        raise httpcore.ConnectError("Hayon does not connect to unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _Transport(httpx.HTTPTransport):
    """httpx's transport with pinned, deadline-bound sockets; it reads the whole body under the cap
    and turns every httpx error (RemoteProtocolError from an oversized header included) into a
    `TransportFailure`."""

    def __init__(self, *, max_bytes: int, proxy=None, **kwargs):
        super().__init__(proxy=proxy, **kwargs)
        self.max_bytes = max_bytes
        self._pool._network_backend = _PinnedBackend(guarded=proxy is None)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        server = _server(request.url)
        try:
            with _Exchange(server, (request.extensions.get("timeout") or {}).get("read")) as exchange:
                return self._exchange(request, exchange)
        except TransportFailure:
            raise
        except PlatformError as exc:
            raise TransportFailure(exc, request) from exc

    def _exchange(self, request: httpx.Request, exchange: _Exchange) -> httpx.Response:
        method, url = request.method, str(request.url)
        try:
            response = super().handle_request(request)
            try:
                body = read_capped(response.stream, response.headers.get("Content-Encoding"),
                                   limit=self.max_bytes, server=exchange.server)
            finally:
                response.close()
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise exchange.failure(exc, method=method, url=url, timed_out=True) from exc
        except (httpx.ProtocolError, httpx.DecodingError) as exc:
            log.info("%s %s broke the protocol: %s", method, _where(url), type(exc).__name__)
            raise PlatformError(Kind.BAD_REPLY, f"{exchange.server} sent a reply Hayon could not read.") from exc
        except (httpx.HTTPError, OSError) as exc:
            raise exchange.failure(exc, method=method, url=url, timed_out=False) from exc
        log.debug("%s %s -> %s", method, _where(url), response.status_code)
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in (b"content-encoding", b"content-length")]
        return CheckedHttpxResponse(response.status_code, headers=headers, content=body, extensions=response.extensions)


class CheckedHttpxResponse(httpx.Response):
    """As `CheckedResponse`, for httpx: `.json()` is validated, and a bad body is a ValueError."""

    def json(self, **kwargs):
        try:
            return replies.parse(self.content, label=self.url.netloc.decode() if self._request else "The server")
        except PlatformError as exc:
            raise ValueError(exc.message) from None


def httpx_client(*, max_bytes: int = JSON_MAX_BYTES) -> httpx.Client:
    """The one httpx client factory (the atproto SDK speaks httpx): same rules as `session()`."""
    return httpx.Client(
        timeout=settings.HAYON_HTTP_TIMEOUT,
        follow_redirects=False,
        transport=_Transport(verify=_tls_context(), proxy=_environment()[0].get("https"), max_bytes=max_bytes),
        trust_env=False,  # as for requests: the environment is read once, by _environment()
        headers={"User-Agent": settings.HAYON_USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING},
    )
