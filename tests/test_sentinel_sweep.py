"""The sentinel sweep (shared/security-tests.md 32, 34, 35, 36): every flow of every platform,
over real HTTP to the fake platforms and the real PDS, with DEBUG logging; then every response,
every log line, every database table, the admin pages and `dumpdata` are searched for any token,
code, state, verifier, client secret, app password or API token, and for ciphertext where only
the server should see it. Publishing too (issue 14): a post to Bluesky (the real PDS) and
Mastodon (the fake) through the API and `manage.py worker` at DEBUG, then the composer and post
pages, the API's replies, the task table (arguments and return values) and the worker's output.
"""
import io
import json
import logging
import re
import signal
from urllib.parse import urlsplit

import pytest
import requests
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django_tasks_db.models import DBTaskResult

from accounts.models import ApiToken, User
from platforms.documents import read_auth
from platforms.services import account_for

from .conftest import SENTINEL
from .fakes.mastodon import FakeMastodon
from .fakes.platforms import FakeFacebook, FakeThreads, FakeTumblr
from .oauth_helpers import query_of

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "sweep password 7f3a9c"
CIPHERTEXT = re.compile(r"gAAAAA[\w-]{20,}")  # a Fernet token


class Recorder(Client):
    """A test client that keeps every response it received."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.responses = []

    def request(self, **request):
        response = super().request(**request)
        self.responses.append(response)
        return response


@pytest.fixture
def debug_log():
    """The production logging pipeline (handler and redaction filter) at DEBUG, into a buffer."""
    root = logging.getLogger()
    handler = next(h for h in root.handlers if any(type(f).__name__ == "RedactSecrets" for f in h.filters))
    buffer, level = io.StringIO(), root.level
    previous = handler.setStream(buffer)
    root.setLevel(logging.DEBUG)
    yield buffer
    root.setLevel(level)
    handler.setStream(previous)


def follow_oauth(client, fake, platform: str, states: list, handles: list | None = None, **form):
    """Connect -> the fake's consent page -> Authorize -> Hayon's callback (-> the Page picker)."""
    authorize = client.post(f"/settings/{platform}/connect", form)["Location"]
    query = query_of(authorize)
    states.append(query.get("state") or query.get("oauth_token"))
    consent = requests.get(authorize, timeout=5).text
    approve = re.search(r'id="approve" href="([^"]+)"', consent).group(1).replace("&amp;", "&")
    back = urlsplit(requests.get(f"{fake.url}{approve}", allow_redirects=False, timeout=5).headers["Location"])
    response = client.get(f"{back.path}?{back.query}")
    if "/pick" in response["Location"]:
        choice = query_of(response["Location"])["choice"]
        handles.append(choice)  # the picker's own URL and form carry it, by design
        client.get(response["Location"])
        response = client.post(urlsplit(response["Location"]).path, {"choice": choice, "option": "101"})
    assert "success=" in response["Location"], response["Location"]


def test_no_secret_anywhere(settings, debug_log, real_pds, pds_account):
    settings.DEBUG = True  # the most talkative setting; SQL is logged too
    user = User.objects.create_user("sweeper", "sweeper@example.com", PASSWORD)
    admin = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    client, staff = Recorder(), Recorder()
    client.force_login(user)
    staff.force_login(admin)
    api_token = ApiToken.issue(user=user, name="script")[1]
    api = Recorder(HTTP_AUTHORIZATION=f"Bearer {api_token}")
    states, handles, secrets = [], [], [SENTINEL, PASSWORD, api_token, pds_account["app_password"], pds_account["password"]]

    with FakeMastodon() as mastodon, FakeTumblr() as tumblr, FakeThreads() as threads, FakeFacebook() as facebook:
        settings.HAYON_ALLOW_PRIVATE_HOSTS = True
        settings.MASTODON_INSTANCE_URL = ""
        settings.TUMBLR_WWW_URL = settings.TUMBLR_API_URL = tumblr.url
        settings.THREADS_AUTHORIZE_URL, settings.THREADS_GRAPH_URL = f"{threads.url}/oauth/authorize", threads.url
        settings.FACEBOOK_WWW_URL = settings.FACEBOOK_GRAPH_URL = facebook.url

        follow_oauth(client, mastodon, "mastodon", states, instance=mastodon.url)
        follow_oauth(client, tumblr, "tumblr", states)
        follow_oauth(client, threads, "threads", states)
        follow_oauth(client, facebook, "facebook", states, handles)
        connected = api.post("/api/platform/bluesky/connect", content_type="application/json",
                             data=json.dumps({"identifier": pds_account["handle"], "appPassword": pds_account["app_password"]}))
        assert connected.status_code == 200, connected.content
        for name in ("mastodon", "tumblr", "threads", "facebook", "bluesky"):
            assert api.get(f"/api/platform/{name}/refresh").status_code == 200, name
            client.post(f"/settings/{name}/refresh")
        call_command("refresh_connections", "--no-progress", "--processes", "1", stdout=io.StringIO())
        bluesky = read_auth(account_for(user).document("bluesky"))
        secrets += [bluesky["accessJwt"], bluesky["refreshJwt"]]
        worker_output, task_rows = publish_and_look(client, api)
        bluesky = read_auth(account_for(user).document("bluesky"))  # publishing may have renewed them
        secrets += [bluesky["accessJwt"], bluesky["refreshJwt"]]
        client.get("/settings"), api.get("/api/platform/find"), api.get("/api/platform/nowhere/refresh")
        for path in admin_pages(user):
            assert staff.get(path).status_code == 200, path
        rows, dump = every_table(), io.StringIO()
        call_command("dumpdata", stdout=dump)
        for name in ("mastodon", "tumblr", "threads", "facebook", "bluesky"):
            assert api.delete(f"/api/platform/{name}/disconnect").status_code == 200, name

    secrets += [s for s in states if s]
    assert len(states) == 4 and all(states) and len(handles) == 1
    shown = [render(r) for r in client.responses + api.responses + staff.responses]
    authorize_redirects = [r for r in client.responses if r.status_code == 302 and not r["Location"].startswith("/")]
    for text in shown:
        if any(render(r) == text for r in authorize_redirects):
            continue  # the redirect to the platform carries the state by design
        assert_clean(text, secrets, "a response")
        assert not CIPHERTEXT.search(text), "ciphertext in a response"
    secrets += handles  # nowhere but on the picker
    log = debug_log.getvalue()
    assert "GET /api/v1/accounts/verify_credentials" in log or "verify_credentials" in log  # DEBUG was on
    assert_clean(log, secrets, "the log")
    assert not CIPHERTEXT.search(log), "ciphertext in the log"
    assert "publishing.tasks.deliver" in log  # the worker logged at DEBUG into the same pipeline,
    assert "com.atproto.repo.createRecord" in log  # its platform calls too
    assert_clean(worker_output, secrets, "the worker's output")
    assert_clean(task_rows, secrets, "the task table")
    assert not CIPHERTEXT.search(task_rows), "ciphertext in the task table"
    assert_clean(rows, secrets, "a database table")
    assert_clean(dump.getvalue(), secrets, "dumpdata")


POST_PAGES = ("compose", "posts", "post_page", "post_status")  # URL names; skipped only while not built yet


def publish_and_look(client, api) -> tuple[str, str]:
    """Publish through the API and the worker (at DEBUG), then load the publishing pages and API.
    Returns the worker's own output and the task table's rows (arguments, return values, errors)."""
    created = api.post("/api/posts", content_type="application/json", HTTP_IDEMPOTENCY_KEY="sweep-post-1",
                       data=json.dumps({"text": "Swept #hayon post, see https://example.com",
                                        "targets": ["bluesky", "mastodon"]}))
    assert created.status_code == 202, created.content
    post_id = created.json()["data"]["id"]
    output = io.StringIO()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)}
    try:
        call_command("worker", "--batch", "--no-startup-delay", "--threads", "2", verbosity=3, stdout=output,
                     stderr=output)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    targets = api.get(f"/api/posts/{post_id}").json()["data"]["targets"]
    assert [t["status"] for t in targets] == ["published", "published"], targets
    api.get("/api/posts")
    for name in POST_PAGES:
        try:
            path = reverse(name, args=[post_id] if name.startswith("post_") else [])
        except NoReverseMatch:
            continue  # not built yet when this was written: the sweep covers it once it exists
        assert client.get(path).status_code == 200, path
    tasks = [(r.args_kwargs, r.return_value, r.exception_class_path, r.traceback, r.worker_ids)
             for r in DBTaskResult.objects.all()]
    assert len(tasks) == 2 and {t[1] for t in tasks} == {"published"}, tasks
    return output.getvalue(), json.dumps(tasks, default=str)


def assert_clean(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret[:24]}... found in {where}"


def render(response) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.items())
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return f"{response.status_code}\n{headers}\n{body.decode(errors='replace')}"


def every_table() -> str:
    with connection.cursor() as cursor:
        dumped = []
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            dumped.append(f"{table}: {cursor.fetchall()!r}")
    return "\n".join(dumped)


def admin_pages(user) -> list[str]:
    from platforms.models import MastodonApp

    account = account_for(user)
    token = ApiToken.objects.filter(user=user).first()
    app = MastodonApp.objects.first()
    return ["/admin/", "/admin/platforms/socialaccount/", f"/admin/platforms/socialaccount/{account.pk}/change/",
            "/admin/accounts/apitoken/", f"/admin/accounts/apitoken/{token.pk}/change/",
            "/admin/platforms/mastodonapp/", f"/admin/platforms/mastodonapp/{app.pk}/change/",
            "/admin/accounts/user/", f"/admin/accounts/user/{user.pk}/change/"]
