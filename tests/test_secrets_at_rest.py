"""Encryption at rest, key rotation, dumpdata, admin, logs: security cases 32-37."""
import io
import json
import logging
import os
import subprocess
import sys

import pytest
import responses
from django.core.management import call_command
from django.db import connection
from django.test import Client

from accounts.models import User
from platforms import crypto
from platforms.models import SocialAccount

from .conftest import SENTINEL, seed_connection

pytestmark = pytest.mark.django_db
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def raw_rows() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT bluesky, tumblr, facebook, instagram, threads, mastodon FROM platforms_socialaccount")
        return json.dumps(cursor.fetchall())


def test_database_holds_only_ciphertext(user):
    seed_connection(user, "mastodon", handle="me", identifiers={"instanceUrl": "https://m.example", "accountId": "1"})
    rows = raw_rows()
    assert SENTINEL not in rows and "gAAAA" in rows


def test_dumpdata_holds_no_plaintext(user):
    seed_connection(user, "tumblr", handle="me")
    out = io.StringIO()
    call_command("dumpdata", "platforms", stdout=out)
    assert SENTINEL not in out.getvalue()


def test_rotation_reencrypts_under_the_newest_key(user, settings):
    old_key, new_key = settings.TOKEN_ENCRYPTION_KEYS[1], crypto.generate_key()
    settings.TOKEN_ENCRYPTION_KEYS = [old_key]
    seed_connection(user, "threads", handle="me")
    settings.TOKEN_ENCRYPTION_KEYS = [new_key, old_key]
    out = io.StringIO()
    call_command("rotate_token_keys", stdout=out)
    assert "Re-encrypted 1 connections" in out.getvalue()
    settings.TOKEN_ENCRYPTION_KEYS = [new_key]  # the old key can now be retired
    doc = SocialAccount.objects.get(user=user).document("threads")
    assert crypto.decrypt(doc["auth"])["accessToken"] == f"{SENTINEL}-threads-token"


def test_rotation_without_the_old_key_fails_loudly_and_changes_nothing(user, settings):
    seed_connection(user, "threads", handle="me")
    before = raw_rows()
    settings.TOKEN_ENCRYPTION_KEYS = [crypto.generate_key()]
    with pytest.raises(Exception, match="nothing was changed"):
        call_command("rotate_token_keys")
    assert raw_rows() == before


@responses.activate
def test_wrong_key_sets_health_error_and_never_sends_ciphertext(api, user, settings):
    seed_connection(user, "mastodon", handle="me", identifiers={"instanceUrl": "https://mastodon.example", "accountId": "1"})
    settings.TOKEN_ENCRYPTION_KEYS = [crypto.generate_key()]
    response = api.get("/api/platform/mastodon/refresh")
    assert response.status_code == 502 and "encryption keys" in response.json()["message"]
    assert len(responses.calls) == 0
    health = SocialAccount.objects.get(user=user).document("mastodon")["health"]
    assert health["status"] == "error" and "encryption" in health["reason"]


def test_admin_pages_show_a_summary_never_a_secret(user):
    seed_connection(user, "mastodon", handle="yourname", identifiers={"instanceUrl": "https://m.example", "accountId": "1"})
    admin = User.objects.create_superuser("root", "root@example.com", "admin password 1")
    client = Client()
    client.force_login(admin)
    account = SocialAccount.objects.get(user=user)
    for url in ("/admin/platforms/socialaccount/", f"/admin/platforms/socialaccount/{account.pk}/change/",
                "/admin/accounts/apitoken/", "/admin/platforms/mastodonapp/"):
        page = client.get(url).content.decode()
        assert SENTINEL not in page and "gAAAA" not in page, url
    change = client.get(f"/admin/platforms/socialaccount/{account.pk}/change/").content.decode()
    assert "connected as @yourname, health active, access token: set" in change


def test_repr_and_str_show_no_secret(user):
    account = seed_connection(user, "mastodon", handle="me")
    assert SENTINEL not in repr(account) and "gAAAA" not in str(account)


def test_logs_redact_query_strings_and_bearer_tokens(caplog):
    logger = logging.getLogger("django.server")
    from hayon.log_redaction import RedactSecrets

    record = logger.makeRecord("django.server", logging.INFO, __file__, 1,
                               '"GET /api/platform/mastodon/callback?code=%s&state=abc HTTP/1.1" 302 0', (SENTINEL,), None)
    RedactSecrets().filter(record)
    assert SENTINEL not in record.getMessage() and "?[redacted]" in record.getMessage()
    record = logger.makeRecord("x", logging.INFO, __file__, 1, "Authorization: Bearer %s", (SENTINEL,), None)
    RedactSecrets().filter(record)
    assert SENTINEL not in record.getMessage()


def _run_prod(*args, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SECRET_KEY", "TOKEN_ENCRYPTION", "DJANGO_"))}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**base, "DJANGO_ENV": "production", **env}, timeout=120)


PROD_ENV = {
    "SECRET_KEY": "x" * 60 + "-production-secret-key-for-the-check",
    "TOKEN_ENCRYPTION_KEYS": "dGVzdC1rZXktbmV3ZXN0LTAwMDAwMDAwMDAwMDAwMDA=",
    "PUBLIC_URL": "https://hayon.example",
    "ALLOWED_HOSTS": "hayon.example",
    "DATABASE_URL": "sqlite:////tmp/hayon-check.sqlite3",
    "CACHE_URL": "dbcache://hayon_cache",  # production refuses a per-process cache
}


def test_check_deploy_is_clean_in_production():
    """Case 37."""
    result = _run_prod("check", "--deploy", "--fail-level", "WARNING", **PROD_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "TOKEN_ENCRYPTION_KEYS"])
def test_production_refuses_to_start_without_its_secrets(missing):
    env = {k: v for k, v in PROD_ENV.items() if k != missing}
    result = _run_prod("check", **env)
    assert result.returncode != 0 and missing in result.stderr


def test_production_refuses_token_keys_equal_to_secret_key():
    key = PROD_ENV["TOKEN_ENCRYPTION_KEYS"]
    result = _run_prod("check", **{**PROD_ENV, "SECRET_KEY": key})
    assert result.returncode != 0 and "differ" in result.stderr


def test_production_500_page_shows_no_secret(user, settings, monkeypatch):
    seed_connection(user, "mastodon", handle="me")
    settings.DEBUG = False
    client = Client(raise_request_exception=False)
    client.force_login(user)
    from platforms import cards, services

    def boom(*args, **kwargs):
        raise RuntimeError(f"unexpected {SENTINEL}")

    card = cards.card
    monkeypatch.setattr(cards, "card", boom)
    response = client.get("/settings")
    assert response.status_code == 500
    assert SENTINEL not in response.content.decode() and "Something went wrong" in response.content.decode()
    # An action that fails the same way is caught before it becomes a 500: a message, no secret.
    monkeypatch.setattr(cards, "card", card)
    monkeypatch.setattr(services, "refresh_connection", boom)
    response = client.post("/settings/mastodon/refresh", follow=True)
    assert response.status_code == 200 and SENTINEL not in response.content.decode()
    assert "unexpected problem with Mastodon" in response.content.decode()
