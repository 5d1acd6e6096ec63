import os
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture
def shot(page):
    """Save a screenshot of the current page under tests/artifacts/ (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)

    def take(name: str):
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    return take


@pytest.fixture
def browser_user(live_server, transactional_db, settings):
    from django.core.cache import cache

    from accounts.models import User

    cache.clear()  # sign-in is rate limited per address, and every browser test signs in from 127.0.0.1
    settings.PUBLIC_URL = live_server.url
    settings.CSRF_TRUSTED_ORIGINS = [live_server.url]
    return User.objects.create_user("browser", password="browser password 1")


@pytest.fixture
def signed_in_page(page, live_server, browser_user):
    page.goto(f"{live_server.url}/login")
    page.get_by_label("Username").fill("browser")
    page.get_by_label("Password").fill("browser password 1")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/settings")
    return page


os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def a_day_later(browser_user):
    """Time passes: every connection of the browser user is due for its upkeep check."""
    from platforms.models import PLATFORM_FIELDS, SocialAccount

    def advance():
        account = SocialAccount.objects.get(user=browser_user)
        for name in PLATFORM_FIELDS:
            doc = account.document(name)
            if doc.get("connected"):
                doc["nextCheckAt"] = "2000-01-01T00:00:00Z"
                account.set_document(name, doc)
        account.save()

    return advance
