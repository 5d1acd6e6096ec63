"""Security case 52 (issue 13 #14): signed-in pages are never stored by a cache, and every page
carries a Content-Security-Policy that allows no inline script, style or event handler, which
Hayon's pages do not need."""
import re

import pytest
from django.test import Client, RequestFactory
from django.views.defaults import server_error

from platforms.models import PLATFORM_FIELDS

from .conftest import seed_connection

pytestmark = pytest.mark.django_db
SIGNED_IN_PAGES = ["/", "/settings", "/settings/tokens", "/password", "/nowhere", "/admin/", "/admin/accounts/apitoken/"]
ANONYMOUS_PAGES = ["/", "/login", "/signup", "/admin/login/", "/nowhere"]
INLINE = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I),
    "event handler attribute": re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I),
    "style attribute": re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I),
    "style element": re.compile(r"<style[\s>]", re.I),
}


@pytest.fixture
def staff(user):
    user.is_staff = user.is_superuser = True
    user.save()
    for name in PLATFORM_FIELDS:  # every card connected: avatars, health, the Facebook Page picker
        seed_connection(user, name, handle=f"me-{name}")
    client = Client()
    client.force_login(user)
    return client


def policy(response) -> dict[str, list[str]]:
    directives = (part.strip().split() for part in response["Content-Security-Policy"].split(";"))
    return {d[0]: d[1:] for d in directives if d}


@pytest.mark.parametrize("path", SIGNED_IN_PAGES)
def test_signed_in_pages_are_never_stored(staff, path):
    assert "no-store" in staff.get(path)["Cache-Control"]


def test_the_page_showing_a_new_token_and_a_sign_in_redirect_are_never_stored(user, staff):
    assert "no-store" in staff.post("/settings/tokens", {"name": "x", "lifetime": "30"})["Cache-Control"]
    response = Client().post("/login", {"username": "alice", "password": "correct horse battery"})
    assert response.status_code == 302 and "no-store" in response["Cache-Control"]


def test_anonymous_pages_may_be_cached_as_before():
    assert "no-store" not in Client().get("/").get("Cache-Control", "")


@pytest.mark.parametrize("path", SIGNED_IN_PAGES)
def test_signed_in_pages_have_a_policy_without_inline_script(staff, path):
    response = staff.get(path)
    csp = policy(response)
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    assert "unsafe" not in response["Content-Security-Policy"]


@pytest.mark.parametrize("path", ANONYMOUS_PAGES)
def test_anonymous_pages_have_the_policy_too(path):
    assert policy(Client().get(path))["script-src"] == ["'self'"]


def test_the_json_api_has_the_policy_and_no_store(api):
    response = api.get("/api/platform/find")
    assert response["Cache-Control"] == "no-store" and "default-src" in policy(response)


def pages_to_inspect(staff) -> dict[str, str]:
    pages = {path: staff.get(path).content.decode() for path in SIGNED_IN_PAGES}
    pages["new token"] = staff.post("/settings/tokens", {"name": "x", "lifetime": "30"}).content.decode()
    pages["password error"] = staff.post("/password", {"old_password": "wrong"}).content.decode()
    for path in ANONYMOUS_PAGES:
        pages[f"anonymous {path}"] = Client().get(path).content.decode()
    pages["500"] = server_error(RequestFactory().get("/")).content.decode()
    return pages


def test_no_page_needs_inline_script_or_style(staff):
    """What the policy would block: found in the token page (onfocus), the cards (style) and 500."""
    for name, html in pages_to_inspect(staff).items():
        for kind, pattern in INLINE.items():
            assert not pattern.search(html), f"{kind} on {name}: {pattern.search(html).group(0)}"


def test_the_one_script_is_a_static_file_on_every_hayon_page(staff):
    pages = pages_to_inspect(staff)
    for name, html in pages.items():
        if not name.startswith(("/admin", "anonymous /admin", "500")):
            assert '<script src="/static/js/hayon.js" defer></script>' in html, name
    assert 'data-accent="#' in pages["/settings"] and "data-select-on-focus" in pages["new token"]

