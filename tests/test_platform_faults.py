"""shared/security-tests.md cases 22 and 23: the refresh-token rotation race, and outbound calls."""
import threading
import time

import httpx
import pytest
import requests
import responses
import respx
from django.db import connection
from django.test import Client

from accounts.models import ApiToken, User
from platforms import http
from platforms.documents import read_auth
from platforms.errors import Kind, PlatformError
from platforms.services import account_for

from .conftest import seed_connection
from .fixtures import bluesky as fx


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_bluesky_refreshes_make_one_network_refresh():
    """Case 22: the second refresh waits for the row lock, then finds a fresh session."""
    user = User.objects.create_user("racer", "racer@example.com", "a long enough password")
    token = ApiToken.issue(user=user, name="script")[1]
    old = fx.session(access_in=30, tag="old")  # the access JWT is about to expire: both want to renew
    seed_connection(user, "bluesky", handle=fx.HANDLE, identifiers={"did": fx.DID, "handle": fx.HANDLE},
                    auth={"pds": fx.PDS, "accessJwt": old["accessJwt"], "refreshJwt": old["refreshJwt"]})

    def slow_renewal(request):
        time.sleep(0.2)  # the second refresh arrives while the first is at the PDS
        return httpx.Response(200, json=fx.session(tag="new"))

    statuses = []
    with respx.mock() as pds:
        renew = pds.post(f"{fx.PDS}/xrpc/com.atproto.server.refreshSession").mock(side_effect=slow_renewal)
        pds.get(f"{fx.PDS}/xrpc/app.bsky.actor.getProfile").respond(json=fx.PROFILE)

        def refresh():
            try:
                statuses.append(Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/platform/bluesky/refresh").status_code)
            finally:
                connection.close()

        threads = [threading.Thread(target=refresh) for _ in range(2)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    assert statuses == [200, 200] and renew.call_count == 1
    doc = account_for(user).document("bluesky")
    assert read_auth(doc)["refreshJwt"].endswith("refreshnew") and doc["health"]["status"] == "active"


@responses.activate
def test_outbound_calls_have_a_timeout_and_verify_tls(settings):
    """Case 23."""
    settings.HAYON_HTTP_TIMEOUT = 3.5
    responses.get("https://api.example/thing", json={})
    http.session().get("https://api.example/thing", verify=False)  # a caller cannot switch TLS off
    (call,) = responses.calls
    assert call.request.req_kwargs["timeout"] == 3.5 and call.request.req_kwargs["verify"] not in (False, None, "")  # True or a CA bundle


@responses.activate
def test_redirects_are_never_followed():
    """Case 23: a platform that redirects does not take our Authorization header elsewhere."""
    responses.get("https://api.example/me", status=302, headers={"Location": "https://evil.example/steal"})
    responses.get("https://evil.example/steal", json={})
    response = http.session().get("https://api.example/me", headers={"Authorization": "Bearer SENTINEL-7f3a9c"})
    assert len(responses.calls) == 1
    with pytest.raises(PlatformError) as error:
        http.expect_json(response, "Example")
    assert error.value.kind is Kind.BAD_REPLY and "redirect" in error.value.message


@responses.activate
def test_a_timeout_is_a_transient_platform_error():
    responses.get("https://api.example/slow", body=requests.exceptions.ReadTimeout())
    with pytest.raises(PlatformError) as error:
        http.session().get("https://api.example/slow")
    assert error.value.kind is Kind.UNAVAILABLE


def test_the_httpx_client_has_the_same_rules(settings):
    settings.HAYON_HTTP_TIMEOUT = 4.0
    with respx.mock(assert_all_called=False) as mock:
        mock.get("https://pds.example/x").respond(302, headers={"Location": "https://evil.example/"})
        other = mock.get("https://evil.example/").respond(200)
        with http.httpx_client() as client:
            response = client.get("https://pds.example/x")
            assert client.timeout.read == 4.0
    assert response.status_code == 302 and not other.called
