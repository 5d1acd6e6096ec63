"""OAuth state, CSRF and linking: shared/security-tests.md cases 1-10, 12, 13, 15, 17, 38."""
import base64
import threading
from datetime import timedelta

import pytest
import responses
from django.db import connection
from django.test import Client
from django.utils import timezone

from platforms.models import PendingFlow
from platforms.services import account_for

from .conftest import SENTINEL, seed_connection
from .oauth_helpers import callback, query_of, redirect_path, start
from .test_mastodon import S, serve_server

pytestmark = pytest.mark.django_db


def snapshot(*users):
    return [account_for(u).document("mastodon") for u in users]


def token_calls():
    return [c for c in responses.calls if c.request.url.endswith("/oauth/token")]


@responses.activate
def test_state_is_random_opaque_and_names_nobody(db):
    """Case 1. The user's id is made distinctive so that a state carrying it in any form shows."""
    from accounts.models import User

    user = User.objects.create_user("alice", "alice@example.com", "correct horse battery", pk=731904)
    signed_in = Client()
    signed_in.force_login(user)
    serve_server(responses)
    states = {query_of(start(signed_in, "mastodon", instance="social.example"))["state"] for _ in range(5)}
    assert len(states) == 5
    for state in states:
        nonce = state.split(".")[0]
        raw = base64.urlsafe_b64decode(nonce + "==")
        assert len(raw) >= 16  # >= 128 random bits
        lowered = state.lower()
        assert "731904" not in state and b"731904" not in raw and (731904).to_bytes(4, "big") not in raw
        assert "alice" not in lowered and "mastodon" not in lowered


@responses.activate
def test_callback_with_a_user_id_as_state_is_rejected(signed_in, user, other_user):
    """Case 2: the seed product's raw-user-id state."""
    serve_server(responses)
    before = snapshot(user, other_user)
    for client in (Client(), signed_in):
        response = callback(client, "mastodon", code="c", state=str(other_user.pk))
        assert response.status_code == 302
    assert token_calls() == [] and snapshot(user, other_user) == before


@responses.activate
def test_anonymous_callback_goes_to_sign_in_without_the_code(user):
    serve_server(responses)
    response = callback(Client(), "mastodon", code="SENTINEL-7f3a9c-code", state="x.y")
    assert response.status_code == 302 and response["Location"] == "/login"
    assert token_calls() == []


@responses.activate
def test_state_from_another_session_is_rejected(user, other_user):
    """Case 3, including another session of the same user."""
    serve_server(responses)
    a = Client()
    a.force_login(user)
    state = query_of(start(a, "mastodon", instance="social.example"))["state"]
    for b_user in (other_user, user):
        b = Client()
        b.force_login(b_user)
        assert callback(b, "mastodon", code="c", state=state)["Location"] == "/settings?error=invalid_state"
    assert token_calls() == [] and snapshot(user, other_user) == [{}, {}]
    # A's own flow still works afterwards: an attacker cannot cancel it.
    assert callback(a, "mastodon", code="c", state=state)["Location"] == "/settings?success=mastodon_connected"


@responses.activate
def test_state_of_a_script_flow_is_bound_to_its_user(user, other_user):
    """Case 2: a flow a script started with its API token has no browser session to bind to;
    another signed-in user who delivers its callback is still refused."""
    from accounts.models import ApiToken

    serve_server(responses)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user=user, name='script')[1]}")
    url = api.get("/api/platform/mastodon/connect", {"instance": "social.example"}).json()["data"]["url"]
    attacker = Client()
    attacker.force_login(other_user)
    assert callback(attacker, "mastodon", code="c", state=query_of(url)["state"])["Location"] == "/settings?error=invalid_state"
    assert token_calls() == [] and snapshot(user, other_user) == [{}, {}]


@responses.activate
def test_sign_out_drops_the_pending_flow(user, other_user):
    """Cases 4 and 38."""
    serve_server(responses)
    client = Client()
    client.force_login(user)
    state = query_of(start(client, "mastodon", instance="social.example"))["state"]
    client.post("/logout")
    assert not PendingFlow.objects.exists()
    client.force_login(other_user)
    assert callback(client, "mastodon", code="c", state=state)["Location"] == "/settings?error=invalid_state"
    assert token_calls() == []


@responses.activate
def test_replayed_callback_is_rejected_and_changes_nothing(signed_in, user):
    """Case 5."""
    serve_server(responses)
    state = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    assert callback(signed_in, "mastodon", code="c", state=state)["Location"].endswith("success=mastodon_connected")
    before = snapshot(user)
    assert callback(signed_in, "mastodon", code="c2", state=state)["Location"] == "/settings?error=invalid_state"
    assert len(token_calls()) == 1 and snapshot(user) == before


@pytest.mark.parametrize(
    "params",
    [
        {"code": "c"},
        {"code": "c", "state": ""},
        {"code": "c", "state": "TAMPER"},
        {"code": "c", "state": "x" * 10_000},
        {"code": "c", "state": "ßtate.é"},
    ],
)
@responses.activate
def test_bad_state_is_refused_without_any_outbound_call(signed_in, params):
    """Case 6."""
    serve_server(responses)
    real = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    calls_before = len(responses.calls)
    if params.get("state") == "TAMPER":
        params["state"] = real[:-2] + ("A" if real[-2] != "A" else "B") + real[-1]
    response = callback(signed_in, "mastodon", **params)
    assert response["Location"] == "/settings?error=invalid_state"
    assert len(responses.calls) == calls_before


@responses.activate
def test_repeated_state_parameter_is_refused(signed_in):
    serve_server(responses)
    state = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    # At the flow's own redirect URI, so that nothing but the repeated parameter can refuse it.
    response = signed_in.get(f"{redirect_path('mastodon', state)}?code=c&state={state}&state={state}")
    assert response["Location"] == "/settings?error=invalid_state" and token_calls() == []


@responses.activate
def test_expired_state_is_rejected(signed_in, user):
    """Case 7."""
    serve_server(responses)
    state = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    PendingFlow.objects.update(created_at=timezone.now() - timedelta(minutes=11))
    assert callback(signed_in, "mastodon", code="c", state=state)["Location"] == "/settings?error=invalid_state"
    assert token_calls() == [] and snapshot(user) == [{}]


@responses.activate
def test_two_flows_finished_in_reverse_order_both_work(signed_in, user):
    """Case 8 (two servers here; Facebook joins with its own issue)."""
    serve_server(responses)
    serve_server(responses, "https://old.example", well_known=False)
    first = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    second = query_of(start(signed_in, "mastodon", instance="old.example"))["state"]
    assert callback(signed_in, "mastodon", code="c2", state=second)["Location"].endswith("success=mastodon_connected")
    assert account_for(user).document("mastodon")["instanceUrl"] == "https://old.example"
    assert callback(signed_in, "mastodon", code="c1", state=first)["Location"].endswith("success=mastodon_connected")
    assert account_for(user).document("mastodon")["instanceUrl"] == S


@pytest.mark.django_db(transaction=True)
@responses.activate
def test_simultaneous_callbacks_with_one_state_exchange_once(user):
    """Case 9: two threads deliver the same callback at once."""
    serve_server(responses)
    client = Client()
    client.force_login(user)
    state = query_of(start(client, "mastodon", instance="social.example"))["state"]
    barrier, results = threading.Barrier(2), []

    def deliver():
        barrier.wait()
        try:
            results.append(callback(client, "mastodon", code="c", state=state)["Location"])
        finally:
            connection.close()  # each thread has its own database connection

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results) == ["/settings?error=invalid_state", "/settings?success=mastodon_connected"]
    assert len(token_calls()) == 1


def test_connect_is_post_with_csrf(user):
    """Case 10: a cross-site GET or a POST without the CSRF token starts nothing."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/settings/mastodon/connect").status_code == 405
    assert client.post("/settings/mastodon/connect", {"instance": "social.example"}).status_code == 403
    assert not PendingFlow.objects.exists()


@pytest.mark.parametrize(
    "params, code",
    [
        ({"error": "access_denied", "error_description": "<script>alert(1)</script>"}, "connection_cancelled"),
        ({"error": "server_error", "error_description": "<b>boom</b>"}, "authorization_failed"),
        ({"error": "access_denied", "code": "SENTINEL-7f3a9c-code"}, "connection_cancelled"),
        ({}, "missing_code"),
    ],
)
@responses.activate
def test_denied_or_codeless_callback_consumes_state_and_keeps_connection(signed_in, user, params, code):
    """Cases 12 and 13."""
    serve_server(responses)
    seed_connection(user, "mastodon", handle="kept", identifiers={"instanceUrl": S, "accountId": "1"})
    before = snapshot(user)
    state = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    response = callback(signed_in, "mastodon", state=state, **params)
    assert response["Location"] == f"/settings?error={code}"
    page = signed_in.get(response["Location"]).content.decode()
    assert "<script>alert(1)</script>" not in page and "<b>boom</b>" not in page
    assert token_calls() == [] and snapshot(user) == before and not PendingFlow.objects.exists()


@responses.activate
def test_redirect_uri_is_the_configured_one_whatever_the_host_header(user):
    """Case 15."""
    serve_server(responses)
    client = Client(HTTP_HOST="evil.example")
    client.force_login(user)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("django.conf.settings.ALLOWED_HOSTS", ["*"])
        url = start(client, "mastodon", instance="social.example")
        state = query_of(url)["state"]
        callback(client, "mastodon", code="c", state=state)
    from .oauth_helpers import form_of

    from platforms.providers.mastodon import server_id

    expected = f"http://testserver/api/platform/mastodon/callback/{server_id(S)}"  # one per server (case 39)
    assert query_of(url)["redirect_uri"] == expected
    assert form_of(token_calls()[0])["redirect_uri"] == expected


@responses.activate
def test_token_request_goes_to_the_server_recorded_with_the_state(signed_in):
    """Case 16 (Mastodon half): a server named in the callback query is ignored."""
    serve_server(responses)
    state = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    callback(signed_in, "mastodon", code="c", state=state, instance="evil.example", server="evil.example")
    assert [c.request.url for c in token_calls()] == [f"{S}/oauth/token"]


@responses.activate
def test_user_lands_on_a_clean_url_with_a_referrer_policy(signed_in):
    """Case 17."""
    serve_server(responses)
    state = query_of(start(signed_in, "mastodon", instance="social.example"))["state"]
    response = callback(signed_in, "mastodon", code="SENTINEL-7f3a9c-code", state=state, next="https://evil.example")
    assert response["Location"] == "/settings?success=mastodon_connected"
    page = signed_in.get(response["Location"])
    assert page["Referrer-Policy"] in ("same-origin", "no-referrer")
    assert SENTINEL not in page.content.decode()
