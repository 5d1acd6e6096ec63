import pytest
from django.contrib.auth import SESSION_KEY
from django.core.cache import cache
from django.test import Client

from accounts.models import User

from .fixtures.limits import steady_clock  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


def test_sign_up_signs_in_and_lands_on_settings():
    client = Client()
    response = client.post(
        "/signup", {"username": "bob", "email": "", "password1": "a long enough pw 123", "password2": "a long enough pw 123"}
    )
    assert response.status_code == 302 and response["Location"] == "/settings"
    assert client.get("/settings").status_code == 200
    assert User.objects.get(username="bob").check_password("a long enough pw 123")


def test_sign_in_rotates_the_session_key(user):
    """Security case 38: a session fixed before sign-in is not the one used after it."""
    client = Client()
    before = client.session.session_key  # the test client creates and sets a session cookie
    response = client.post("/login", {"username": "alice", "password": "correct horse battery"})
    assert response.status_code == 302
    assert client.session.session_key != before
    assert client.session[SESSION_KEY] == str(user.pk)


def test_wrong_password_is_refused_with_a_clear_message(user):
    response = Client().post("/login", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert "do not match an account" in response.content.decode()


def test_sign_in_is_rate_limited_per_username(user, steady_clock):
    cache.clear()
    client = Client()
    for _ in range(10):
        client.post("/login", {"username": "alice", "password": "wrong"})
    response = client.post("/login", {"username": "alice", "password": "correct horse battery"})
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0


def test_sign_out_is_a_post_and_ends_the_session(signed_in):
    assert signed_in.get("/logout").status_code == 405
    assert signed_in.post("/logout").status_code == 302
    assert signed_in.get("/settings")["Location"].startswith("/login")


def test_password_change(signed_in, user):
    response = signed_in.post(
        "/password",
        {"old_password": "correct horse battery", "new_password1": "brand new secret 456", "new_password2": "brand new secret 456"},
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("brand new secret 456")


def test_home_leads_a_signed_in_user_to_settings(signed_in):
    assert 'href="/settings"' in signed_in.get("/").content.decode()


def test_settings_requires_sign_in():
    response = Client().get("/settings")
    assert response.status_code == 302 and response["Location"].startswith("/login")
