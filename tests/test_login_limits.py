"""Security case 43 (issue 13 #5): one sign-in limit for every login form, keyed on the identity
Django signs in (NFKC, case-folded); sign-up limited per address; look-alike usernames refused."""
import importlib

import pytest
from django.apps import apps
from django.contrib.auth import SESSION_KEY
from django.db import IntegrityError
from django.test import Client

from accounts.models import User

from .fixtures.limits import steady_clock  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("steady_clock")]
PASSWORD = "admin password 1234"
ADMIN_VARIANTS = ["ａｄｍｉｎ", "𝐚𝐝𝐦𝐢𝐧", "ªdmin"]  # each NFKC-normalises to "admin"
LOGIN_FORMS = ["/login", "/admin/login/"]


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser("admin", "admin@example.com", PASSWORD)


def sign_in(client, form, username, password):
    return client.post(form, {"username": username, "password": password, "next": "/admin/"})


def signed_in_as(client):
    return client.session.get(SESSION_KEY)


@pytest.mark.parametrize("form", LOGIN_FORMS)
@pytest.mark.parametrize("variant", ADMIN_VARIANTS)
def test_each_spelling_of_a_name_signs_in_as_that_user(admin_user, form, variant):
    """Why the limit must key on the normalised name: Django signs these in as `admin`."""
    client = Client()
    assert sign_in(client, form, variant, PASSWORD).status_code == 302
    assert signed_in_as(client) == str(admin_user.pk)


@pytest.mark.parametrize("guesses_at", LOGIN_FORMS)
@pytest.mark.parametrize("then_at", LOGIN_FORMS)
def test_wrong_passwords_on_either_form_lock_both(admin_user, guesses_at, then_at):
    """The admin's sign-in had no limit: 40 guesses, then the right password, signed staff in."""
    attacker = Client()
    for _ in range(10):
        assert sign_in(attacker, guesses_at, "admin", "wrong").status_code == 200
    client = Client()
    response = sign_in(client, then_at, "admin", PASSWORD)
    assert response.status_code == 429 and 0 < int(response["Retry-After"]) <= 300
    assert "Too many sign-in attempts. Try again in" in response.content.decode()
    assert signed_in_as(client) is None


@pytest.mark.parametrize("form", LOGIN_FORMS)
@pytest.mark.parametrize("variant", [*ADMIN_VARIANTS, "ADMIN", " admin "])
def test_another_spelling_of_the_name_spends_the_same_counter(admin_user, form, variant):
    attacker = Client()
    for _ in range(10):
        sign_in(attacker, form, "admin", "wrong")
    client = Client()
    assert sign_in(client, form, variant, PASSWORD).status_code == 429
    assert signed_in_as(client) is None


def test_guesses_spread_over_spellings_add_up(admin_user):
    attacker = Client()
    for i in range(10):
        spelling = (ADMIN_VARIANTS + ["admin"])[i % 4]
        assert sign_in(attacker, LOGIN_FORMS[i % 2], spelling, "wrong").status_code == 200
    assert sign_in(Client(), "/login", "admin", PASSWORD).status_code == 429


def test_one_address_is_limited_across_names_and_forms(admin_user):
    client = Client()
    for i in range(30):
        assert sign_in(client, LOGIN_FORMS[i % 2], f"nobody{i}", "wrong").status_code == 200
    assert sign_in(client, "/admin/login/", "admin", PASSWORD).status_code == 429
    assert signed_in_as(client) is None


def test_a_limited_attempt_does_not_reach_the_password_check(admin_user, monkeypatch):
    for _ in range(10):
        sign_in(Client(), "/login", "admin", "wrong")
    checked = []
    monkeypatch.setattr(User, "check_password", lambda self, raw: checked.append(raw) or True)
    assert sign_in(Client(), "/admin/login/", "admin", PASSWORD).status_code == 429
    assert checked == []


# -- sign-up ------------------------------------------------------------------------------------
def sign_up(client, username, **extra):
    password = "a long enough pw 123"
    return client.post("/signup", {"username": username, "email": "", "password1": password, "password2": password}, **extra)


def test_sign_up_is_rate_limited_per_address():
    client = Client()
    for i in range(10):
        assert sign_up(client, f"user{i}").status_code == 302
        client.post("/logout")
    response = sign_up(client, "one-more")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert not User.objects.filter(username="one-more").exists()
    assert sign_up(Client(REMOTE_ADDR="198.51.100.7"), "elsewhere").status_code == 302


def test_a_forged_forwarded_for_does_not_reset_the_sign_up_limit():
    client = Client()
    for i in range(10):
        sign_up(client, f"user{i}")
        client.post("/logout")
    assert sign_up(client, "forged", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 429


@pytest.mark.parametrize(
    "existing, lookalike",
    [
        ("admin", "аdmin"),       # Cyrillic а: mixed scripts
        ("cope", "соре"),         # all Cyrillic: one script, same skeleton
        ("modern", "rnodern"),    # TR39: m looks like rn
        ("alice", "aIice"),       # capital I looks like l
        ("bob", "b0b"),           # zero looks like O, and case is folded
        ("admin", "ＡＤＭＩＮ"),  # NFKC, then case: an existing name
    ],
)
def test_look_alike_usernames_are_refused_at_sign_up(existing, lookalike):
    User.objects.create_user(existing, password="x long password 1")
    response = sign_up(Client(), lookalike)
    page = response.content.decode()
    assert response.status_code == 200, "no account was created"
    assert ("looks too much like an existing one" in page or "one script" in page
            or "already exists" in page), page
    assert User.objects.count() == 1


def test_a_name_mixing_scripts_is_refused_even_when_nobody_holds_its_look_alike():
    response = sign_up(Client(), "pаypal")  # Cyrillic а
    assert "Use letters from one script" in response.content.decode()
    assert not User.objects.exists()


@pytest.mark.parametrize("name", ["ελένη", "日本語ユーザー", "김민준", "josé", "anne-marie_2"])
def test_names_in_one_script_or_a_usual_mix_are_welcome(name):
    User.objects.create_user("jose", password="x long password 1")
    assert sign_up(Client(), name).status_code == 302
    assert User.objects.filter(username=name).exists()


def test_the_admin_cannot_create_a_look_alike_either(admin_user):
    staff = Client()
    staff.force_login(admin_user)
    response = staff.post("/admin/accounts/user/add/", {
        "username": "аdmin", "usable_password": "true",
        "password1": "a long enough pw 123", "password2": "a long enough pw 123",
    })
    assert response.status_code == 200 and "Use letters from one script" in response.content.decode()
    response = staff.post("/admin/accounts/user/add/", {
        "username": "adrnin", "usable_password": "true",
        "password1": "a long enough pw 123", "password2": "a long enough pw 123",
    })
    assert "looks too much like an existing one" in response.content.decode()
    assert User.objects.count() == 1


def test_the_database_refuses_a_look_alike_that_skips_the_form():
    """Two sign-ups racing past the form check: the unique skeleton stops the second."""
    User.objects.create_user("cope", password="x long password 1")
    with pytest.raises(IntegrityError):
        User.objects.create_user("соре", password="x long password 1")


def test_renaming_to_a_look_alike_is_refused_but_other_edits_are_not(user, other_user):
    user.username = "rnallory"
    with pytest.raises(Exception, match="looks too much like"):
        user.full_clean()
    user.refresh_from_db()
    user.first_name = "Alice"
    user.full_clean()
    user.save()


def test_migration_keeps_the_skeleton_of_the_oldest_of_existing_look_alikes():
    older = User.objects.create_user("cope", password="x long password 1")
    User.objects.filter(pk=older.pk).update(username_skeleton=None)
    newer = User.objects.create(username="tmp")
    User.objects.filter(pk=newer.pk).update(username="соре", username_skeleton=None)
    migration = importlib.import_module("accounts.migrations.0002_tokens_expiry_password_version_lookalikes")
    migration.fill_username_skeletons(apps, None)
    older.refresh_from_db(), newer.refresh_from_db()
    assert older.username_skeleton and newer.username_skeleton is None
    newer.last_name = "Edited"
    newer.save()  # a legacy look-alike can still be edited
    assert "looks too much like" in sign_up(Client(), "c0pe").content.decode()  # still blocks new ones


def test_any_caller_of_authenticate_counts_on_the_normalised_name(admin_user, rf):
    """Forms normalise before the backend; a caller that does not still spends admin's counter."""
    from django.contrib.auth import authenticate

    for variant in ADMIN_VARIANTS * 4:
        assert authenticate(rf.post("/"), username=variant, password="wrong") is None
    assert authenticate(rf.post("/"), username="admin", password=PASSWORD) is None
