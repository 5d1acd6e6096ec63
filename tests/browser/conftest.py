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
    from accounts.models import User

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
