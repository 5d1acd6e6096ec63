"""The fake Threads checks the app and the redirect URI as Meta does, so tests built on it catch a
Hayon that sends the wrong ones (review: "the fakes ignore client_secret/redirect_uri")."""
import pytest
import requests

from platforms.services import account_for

from .fakes.platforms import DAY, FakeThreads
from .fixtures.consent import point_at_fakes, through_consent  # noqa: F401 (fixture)
from .oauth_helpers import callback, query_of, start

pytestmark = pytest.mark.django_db


def consent_code(fake, authorize: str) -> str:
    reply = requests.get(f"{fake.url}/oauth/decide", params={**query_of(authorize), "decision": "approve"},
                         allow_redirects=False, timeout=5)
    return query_of(reply.headers["Location"])["code"]


def test_threads_connects_through_the_strict_fake(signed_in, user, point_at_fakes):
    with point_at_fakes(FakeThreads()) as fake:
        assert through_consent(signed_in, fake, "threads")["Location"] == "/settings?success=threads_connected"
        assert account_for(user).document("threads")["platformId"] == fake.user_id


def wrong_secret(settings, fake, code):
    settings.THREADS_APP_SECRET = "not-the-secret"


def consent_given_for_another_redirect_uri(settings, fake, code):
    fake.codes[code]["redirect_uri"] = "https://elsewhere.example/callback"


@pytest.mark.parametrize("mistake", [wrong_secret, consent_given_for_another_redirect_uri])
def test_a_wrong_secret_or_redirect_uri_fails_the_exchange(signed_in, user, point_at_fakes, settings, mistake):
    with point_at_fakes(FakeThreads()) as fake:
        authorize = start(signed_in, "threads")
        code = consent_code(fake, authorize)
        mistake(settings, fake, code)
        response = callback(signed_in, "threads", code=code, state=query_of(authorize)["state"])
        assert response["Location"] == "/settings?error=platform_error"
        assert account_for(user).document("threads") == {}


def test_codes_are_single_use_and_tokens_expire():
    with FakeThreads() as fake:
        redirect = "https://h/cb"
        authorize = f"{fake.url}/oauth/authorize?client_id={fake.app_id}&redirect_uri={redirect}&state=s"
        code = consent_code(fake, authorize)
        form = {"client_id": fake.app_id, "client_secret": fake.app_secret, "grant_type": "authorization_code",
                "redirect_uri": redirect, "code": code}
        short = requests.post(f"{fake.url}/oauth/access_token", data=form, timeout=5).json()["access_token"]
        assert requests.post(f"{fake.url}/oauth/access_token", data=form, timeout=5).status_code == 400
        exchange = {"grant_type": "th_exchange_token", "client_secret": fake.app_secret, "access_token": short}
        long = requests.get(f"{fake.url}/access_token", params=exchange, timeout=5).json()["access_token"]
        renew = {"grant_type": "th_refresh_token", "access_token": long}
        assert requests.get(f"{fake.url}/refresh_access_token", params=renew, timeout=5).status_code == 400  # < 1 day
        fake.advance(61 * DAY)
        me = requests.get(f"{fake.url}/v1.0/me", params={"access_token": long}, timeout=5).json()
        assert me["error"]["error_subcode"] == 463
