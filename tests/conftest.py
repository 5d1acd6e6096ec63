import os

import pytest
from django.test import Client

from accounts.models import ApiToken, User
from platforms import documents
from platforms.services import account_for

from .pds_peer import pds_account, pds_server, real_pds  # noqa: F401 (fixtures for every test module)

# Playwright's sync API runs an event loop in the test thread; Django's ORM refuses to run beside
# one unless told that this thread is synchronous test code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

SENTINEL = "SENTINEL-7f3a9c"  # every secret seeded in a test contains this, so a leak is a substring


@pytest.fixture
def user(db):
    return User.objects.create_user("alice", "alice@example.com", "correct horse battery")


@pytest.fixture
def other_user(db):
    return User.objects.create_user("mallory", "mallory@example.com", "another long password")


@pytest.fixture
def signed_in(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def api_token(user):
    return ApiToken.issue(user=user, name="script")[1]


@pytest.fixture
def api(api_token):
    """A client that authenticates with the user's Bearer token and nothing else."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_token}")


def seed_connection(user, platform, *, handle="someone", auth=None, identifiers=None, **extra):
    """Store a connected sub-document directly, as a provider would have produced it."""
    connection = documents.Connection(
        profile=documents.Profile(display_name=f"{handle.title()} Example", handle=handle, avatar="https://cdn.example/a.png"),
        account_key=f"{platform}|{handle}",
        identifiers=identifiers or {},
        auth=auth if auth is not None else {"accessToken": f"{SENTINEL}-{platform}-token"},
        extra=extra,
    )
    account = account_for(user)
    account.set_document(platform, documents.connected_document(connection))
    account.save()
    return account


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": "/usr/bin/chromium",
        "headless": True,
        "args": [
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
        ],
    }


def pytest_collection_modifyitems(config, items):
    if os.path.exists("/usr/bin/chromium"):
        return
    skip = pytest.mark.skip(reason="Debian's Chromium (/usr/bin/chromium) is not installed: run `make test` as root")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


PUBLIC_DNS = {
    "social.example": ["93.184.216.34"],
    "old.example": ["93.184.216.35"],
    "gts.example": ["2606:2800:220:1::1"],
    "mastodon.example": ["93.184.216.36"],
    "pds.example": ["93.184.216.40"],
    "alice.example": ["93.184.216.41"],
    "sneaky.example": ["93.184.216.37", "127.0.0.1"],
    "metadata.example": ["169.254.169.254"],
    "intranet.example": ["10.1.2.3"],
}


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch):
    """Nothing resolves on this machine: names used by tests resolve from this table only."""
    from platforms import hosts

    from platforms.providers import atproto_identity

    monkeypatch.setattr(hosts, "resolve", lambda host: list(PUBLIC_DNS.get(host, [])))
    monkeypatch.setattr(atproto_identity, "txt_did", lambda handle: TXT_RECORDS.get(handle))
    return PUBLIC_DNS


TXT_RECORDS: dict[str, str] = {}  # _atproto.<handle> TXT records, by handle


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    """Rate-limit counters live in the cache: each test starts with none spent."""
    from django.core.cache import cache

    cache.clear()
    yield


def this_database_url() -> str:
    """A DATABASE_URL naming the database this test run uses, for the processes a test starts
    (a worker, the upkeep command) to work on the same rows. Needs django_db(transaction=True)."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
