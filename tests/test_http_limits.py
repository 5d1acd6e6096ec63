"""Security cases 40 and 45: every outbound call has a total deadline and a byte cap, and platform
JSON goes through one validating parser. Played against hostile servers on 127.0.0.1
(tests/fakes/hostile.py), through requests (`http.session()`), httpx (`http.httpx_client()`) and
the atproto SDK built on it.
"""
import threading
import time
import tracemalloc

import httpx
import pytest
import responses
from atproto_client import exceptions as sdk

from platforms import http, replies
from platforms.errors import Kind, PlatformError
from platforms.providers import bluesky

from .fakes import hostile

TIMEOUT = 2.0  # HAYON_HTTP_TIMEOUT in the test settings, set again here so the margins below hold
MARGIN = 2.5  # the machine is shared and loaded: generous, and still far below what a drip costs (8 s)


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.HAYON_ALLOW_PRIVATE_HOSTS = True  # the hostile servers are on loopback
    settings.HAYON_HTTP_TIMEOUT = TIMEOUT


def get_with_requests(url):
    return http.session().get(url)


def get_with_httpx(url):
    with http.httpx_client() as client:
        return client.get(url)


CLIENTS = [pytest.param(get_with_requests, id="requests"), pytest.param(get_with_httpx, id="httpx")]


def failure(call, url) -> tuple[PlatformError, float]:
    started = time.monotonic()
    with pytest.raises(PlatformError) as error:
        call(url)
    return error.value, time.monotonic() - started


# -- deadlines --------------------------------------------------------------------------------------
@pytest.mark.parametrize("get", CLIENTS)
@pytest.mark.parametrize("behaviour", [hostile.drip_body(0.3), hostile.drip_head(0.3)], ids=["body", "head"])
def test_a_dripping_server_is_cut_off_at_the_deadline(get, behaviour):
    """One byte every 0.3 s never trips a per-read timeout of 2 s; the whole exchange must end at 2 s."""
    with hostile.HostileServer(behaviour) as server:
        error, elapsed = failure(get, server.url)
    assert elapsed < TIMEOUT + MARGIN
    assert error.kind is Kind.UNAVAILABLE and error.message == f"127.0.0.1:{server.port} did not answer in time."


def test_an_action_deadline_shortens_every_call_inside_it(settings):
    settings.HAYON_HTTP_TIMEOUT = 5  # the call's own deadline is far; the action's comes first
    with hostile.HostileServer(hostile.drip_body(0.2)) as server, http.deadline(0.5) as action:
        error, elapsed = failure(get_with_requests, server.url)
        assert error.kind is Kind.UNAVAILABLE and elapsed < 0.5 + MARGIN
        # The budget is spent: the next call fails at once, without connecting.
        with hostile.HostileServer(hostile.reply(b"{}")) as other:
            error, elapsed = failure(get_with_httpx, other.url)
        assert elapsed < 0.5 and other.connections == 0 and action.remaining() == 0
        assert error.message == f"Hayon ran out of time for this action before reaching 127.0.0.1:{other.port}."


@pytest.mark.parametrize("scheme", ["http", "https"])  # https: the TLS handshake is what never ends
def test_a_server_that_timed_out_is_not_tried_again_in_the_same_action(scheme):
    """Issue 12 item 11: discovery then registration on a black hole costs one timeout, not two."""
    with hostile.HostileServer(hostile.black_hole) as server, http.deadline(30):
        base = server.url.replace("http:", f"{scheme}:")
        started = time.monotonic()
        first, _ = failure(get_with_requests, f"{base}/.well-known/oauth-authorization-server")
        with pytest.raises(PlatformError) as second:
            http.session().post(f"{base}/api/v1/apps", data={"client_name": "Hayon"})
        with pytest.raises(PlatformError) as third:  # the SDK's client is told the same
            get_with_httpx(f"{base}/xrpc/com.atproto.server.describeServer")
        elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT + 1.5 and server.connections == 1  # one timeout; three would be 6 s
    assert first.message == second.value.message == third.value.message == f"127.0.0.1:{server.port} did not answer in time."


def test_tumblr_calls_signed_by_requests_oauthlib_keep_the_deadline(settings):
    """Tumblr signs with requests-oauthlib's OAuth1 and sends through http.session()."""
    from platforms.providers.tumblr import TumblrProvider

    settings.TUMBLR_CONSUMER_KEY, settings.TUMBLR_CONSUMER_SECRET = "key", "secret"
    with hostile.HostileServer(hostile.drip_body(0.3)) as server:
        settings.TUMBLR_API_URL = server.url
        started = time.monotonic()
        with pytest.raises(PlatformError) as error:
            TumblrProvider().fetch_user({"oauthToken": "token", "oauthTokenSecret": "secret"})
    assert time.monotonic() - started < TIMEOUT + MARGIN and error.value.kind is Kind.UNAVAILABLE
    assert 'oauth_signature=' in server.heads[0].decode()


def test_outside_an_action_each_call_gets_its_own_timeout(settings):
    settings.HAYON_HTTP_TIMEOUT = 0.5
    with hostile.HostileServer(hostile.black_hole) as server:
        for _ in range(2):
            failure(get_with_requests, server.url)
    assert server.connections == 2  # nothing remembered between unrelated calls


def test_each_thread_opens_its_own_deadline(settings):
    """Contextvars belong to a thread: a worker does not inherit (or spend) its starter's budget."""
    settings.HAYON_HTTP_TIMEOUT = 0.5
    seen = []
    with hostile.HostileServer(hostile.black_hole) as server:
        with http.deadline(10):
            failure(get_with_requests, server.url)  # remembered in this thread's action only

            def worker():
                with http.deadline(10):
                    try:
                        get_with_requests(server.url)
                    except PlatformError as error:
                        seen.append(error.kind)

            thread = threading.Thread(target=worker)
            thread.start()
            thread.join()
    assert seen == [Kind.UNAVAILABLE] and server.connections == 2


# -- byte caps --------------------------------------------------------------------------------------
def peak_memory(call, url) -> tuple[PlatformError, int]:
    tracemalloc.start()
    try:
        error, _ = failure(call, url)
        return error, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("get", CLIENTS)
def test_a_huge_body_is_never_read_into_memory(get):
    """Content-Length says 1 GiB; the reading stops just past the 1 MiB cap."""
    with hostile.HostileServer(hostile.endless()) as server:
        error, peak = peak_memory(get, server.url)
    assert error.kind is Kind.BAD_REPLY and error.message == f"127.0.0.1:{server.port} sent a reply larger than Hayon accepts (1024 KiB)."
    assert peak < 8 << 20 and server.sent < 16 << 20


@pytest.mark.parametrize("get", CLIENTS)
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_a_compression_bomb_is_never_inflated(get, encoding):
    """64 KiB on the wire, 64 MiB inflated: decoding stops one byte past the cap."""
    with hostile.HostileServer(hostile.compressed(hostile.bomb(encoding), encoding)) as server:
        error, peak = peak_memory(get, server.url)
    assert error.kind is Kind.BAD_REPLY and "larger than Hayon accepts" in error.message
    assert peak < 8 << 20


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_replies_within_the_cap_are_read(encoding):
    body = b'{"ok": true, "padding": "' + b"x" * 300_000 + b'"}'
    packed = {"gzip": hostile.gzip.compress, "deflate": hostile.zlib.compress, "raw-deflate": hostile._raw_deflate}[encoding](body)
    with hostile.HostileServer(hostile.compressed(packed, encoding)) as server:
        assert http.expect_json(get_with_requests(server.url), "Example")["ok"] is True
        assert get_with_httpx(server.url).json()["ok"] is True


def test_a_caller_can_ask_for_a_bigger_cap():
    body = b"x" * (3 << 20)
    with hostile.HostileServer(hostile.reply(body, content_type="image/png")) as server:
        with pytest.raises(PlatformError):
            http.session().get(server.url)
        assert len(http.session(max_bytes=4 << 20).get(server.url).content) == len(body)
        with http.httpx_client(max_bytes=4 << 20) as client:
            assert len(client.get(server.url).content) == len(body)


def test_an_unasked_encoding_is_refused():
    with hostile.HostileServer(hostile.compressed(b"\x00" * 10, "br")) as server:
        error, _ = failure(get_with_requests, server.url)
    assert error.kind is Kind.BAD_REPLY and "encoding" in error.message


# -- protocol errors from httpx ---------------------------------------------------------------------
def test_an_oversized_header_is_a_platform_error_for_httpx_callers_too():
    """httpx raises RemoteProtocolError, which the atproto SDK does not wrap: it must not become a 500."""
    with hostile.HostileServer(hostile.oversized_header()) as server:
        error, _ = failure(get_with_httpx, server.url)
        assert error.kind is Kind.BAD_REPLY and error.message == f"127.0.0.1:{server.port} sent a reply Hayon could not read."
        assert isinstance(error, httpx.HTTPError)  # code written for httpx (handle resolution) still catches it
        assert isinstance(through_sdk(server.url), PlatformError)


def through_sdk(url) -> PlatformError | None:
    """What the Bluesky provider ends up with when the SDK calls `url` (its own mapping included)."""
    try:
        bluesky.sdk_client(url).com.atproto.server.describe_server()
    except PlatformError as error:
        return error
    except sdk.AtProtocolError as error:
        return bluesky.sdk_error(error, during="call")
    return None


def test_a_dripping_pds_is_cut_off_inside_the_sdk():
    with hostile.HostileServer(hostile.drip_body(0.3)) as server:
        started = time.monotonic()
        error = through_sdk(server.url)
    assert time.monotonic() - started < TIMEOUT + MARGIN and error.kind is Kind.UNAVAILABLE


def test_the_outbound_rules_still_hold_for_a_real_socket():
    """No redirect followed, our User-Agent, only the encodings we decode; over a real connection."""
    redirect = b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    def behaviour(conn, server):
        server.read_head(conn)
        server.send(conn, redirect)

    with hostile.HostileServer(behaviour) as server:
        assert get_with_requests(server.url).status_code == 302
        assert get_with_httpx(server.url).status_code == 302
    assert server.connections == 2
    for request_head in server.heads:
        text = request_head.decode().lower()
        assert "user-agent: hayon" in text and "accept-encoding: gzip, deflate\r\n" in text


# -- the validating JSON layer ----------------------------------------------------------------------
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("body", [
    pytest.param(DEEP, id="deeply nested list"),
    pytest.param(b'{"a":' * 50_000 + b"1" + b"}" * 50_000, id="deeply nested object"),
    pytest.param(DEEP.decode().encode("utf-16"), id="deeply nested in UTF-16"),
    pytest.param(b'{"a":' * 100 + b"1" + b"}" * 100, id="nested past the bound (json alone would parse it)"),
    pytest.param(b"[1, 2]", id="a list where an object is expected"),
    pytest.param(b'"text"', id="a string"),
    pytest.param(b'{"exp": NaN}', id="NaN"),
    pytest.param(b'{"exp": 1e400}', id="a float overflowing to inf"),
    pytest.param(b'{"id": ' + b"9" * 5000 + b"}", id="a 5000-digit number"),
    pytest.param(b"<html>Bad gateway</html>", id="HTML"),
    pytest.param(b'{"a": 1', id="truncated"),
    pytest.param(b'\xff\xfe\x00{', id="not text"),
])
@responses.activate
def test_hostile_json_is_a_bad_reply_never_a_crash(body):
    responses.get("https://api.example/me", body=body, content_type="application/json")
    with pytest.raises(PlatformError) as error:
        http.expect_json(http.session().get("https://api.example/me"), "Example")
    assert error.value.kind is Kind.BAD_REPLY and error.value.message == "Example sent a reply Hayon could not read."


def test_deep_json_from_a_real_server_is_a_bad_reply():
    with hostile.HostileServer(hostile.reply(DEEP)) as server:
        with pytest.raises(PlatformError) as error:
            http.expect_json(get_with_httpx(server.url), "Example")
    assert error.value.kind is Kind.BAD_REPLY


@responses.activate
def test_ordinary_json_still_reads():
    nested = {"a": [{"b": {"c": ["[[[{{{ brackets in text do not nest", 1, 2.5, True, None]}}]}
    responses.get("https://api.example/me", json={"name": "ok", "id": 12345678901234567890, "nested": nested})
    data = http.expect_json(http.session().get("https://api.example/me"), "Example")
    assert data == {"name": "ok", "id": 12345678901234567890, "nested": nested}
    in_text = '{"x": "' + "[" * 500 + '"}'
    assert replies.nesting_depth(in_text) == 1 and replies.json_object(in_text, label="x")  # brackets inside strings
    assert replies.json_object(b"\xef\xbb\xbf" + b'{"bom": 1}', label="x") == {"bom": 1}


def test_the_typed_accessors_refuse_the_wrong_types():
    data = replies.json_object(b'{"user": {"name": "al", "blogs": [1], "exp": 1e20, "n": 7, "ok": true}, "list": []}', label="T")
    user = replies.obj(data, "user", label="T", required=True)
    assert replies.text(user, "name", label="T", required=True) == "al"
    assert replies.array(user, "blogs", label="T") == [1] and replies.array(user, "missing", label="T") == []
    assert replies.integer(user, "n", label="T", minimum=0) == 7 and replies.flag(user, "ok", label="T") is True
    assert replies.obj(data, "absent", label="T") == {} and replies.text(user, "absent", label="T") == ""
    for check in (
        lambda: replies.obj(data, "list", label="T"),  # a list where an object is expected
        lambda: replies.text(user, "n", label="T"),  # a number is not text
        lambda: replies.integer(user, "exp", label="T", maximum=253402300799),  # exp=1e20 overflows datetime
        lambda: replies.integer(user, "ok", label="T"),  # true is not a number
        lambda: replies.text(user, "absent", label="T", required=True),
        lambda: replies.obj([], "user", label="T"),
    ):
        with pytest.raises(PlatformError) as error:
            check()
        assert error.value.kind is Kind.BAD_REPLY


@responses.activate
def test_a_providers_own_json_call_is_validated_too():
    """Error paths read `response.json()` themselves (OAuth errors, Meta errors): deep JSON must be a
    ValueError they already handle, not a RecursionError that becomes a 500."""
    responses.get("https://api.example/error", body=DEEP, status=400, content_type="application/json")
    with pytest.raises(ValueError):
        http.session().get("https://api.example/error").json()
    with hostile.HostileServer(hostile.reply(DEEP, status="400 Bad Request")) as server:
        with pytest.raises(ValueError):
            get_with_httpx(server.url).json()
        assert get_with_httpx(server.url).status_code == 400


def test_deadlines_nest_without_extending_and_default_to_twice_the_call_timeout(settings):
    settings.HAYON_ACTION_TIMEOUT = 3
    with http.deadline() as action:
        assert 2.5 < action.remaining() <= 3
    del settings.HAYON_ACTION_TIMEOUT
    with http.deadline() as action:
        assert 2 * TIMEOUT - 0.5 < action.remaining() <= 2 * TIMEOUT
        with http.deadline(60) as inner:
            assert inner.ends == action.ends

    @http.deadline(0.5)  # also a decorator, for a view: a fresh budget on every call
    def view():
        return http._ACTION.get().remaining()

    assert 0 < view() <= 0.5 and 0 < view() <= 0.5 and http._ACTION.get() is None
