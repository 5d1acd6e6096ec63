"""Security case 47 (issue 13 #9): what the servers really print. runserver (`make run`) printed
`callback?code=...&state=...` and Tumblr's `oauth_token=...&oauth_verifier=...`: Django's
`django.server` logger had a handler of its own, outside Hayon's redaction filter. Each server
runs here as a subprocess with its own settings, a scratch database and no `.env`."""
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from .conftest import SENTINEL
from .fixtures.production import PROD_ENV, ROOT, suite_environment

CALLBACKS = [
    f"/api/platform/mastodon/callback?code={SENTINEL}-code&state={SENTINEL}-state",
    f"/api/platform/tumblr/callback?oauth_token={SENTINEL}-token&oauth_verifier={SENTINEL}-verifier",
]
README_ACCESS_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(b)s'  # the README's gunicorn command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('logs') / 'db.sqlite3'}"
    env = suite_environment(**{**PROD_ENV, "DATABASE_URL": url})
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)
    return url


@contextmanager
def running(command: list[str], env: dict, port: int, output: Path):
    """A server started from the project, everything it prints going to `output`; stopped after."""
    with open(output, "w") as sink:
        server = subprocess.Popen(command, cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=sink,
                                  stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90  # a loaded machine starts Django slowly
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert server.poll() is None and time.monotonic() < deadline, output.read_text()
                    time.sleep(0.2)
            yield f"http://127.0.0.1:{port}"
            time.sleep(1)  # the request log line is written after the response
        finally:
            server.terminate()
            server.wait(timeout=30)


def gunicorn(port: int, *options: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "hayon.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1", *options]


def production(database: str, tmp_path: Path) -> dict:
    return suite_environment(**{**PROD_ENV, "DATABASE_URL": database, "CACHE_URL": f"filecache://{tmp_path / 'cache'}"})


BEHIND_TLS_PROXY = {"X-Forwarded-Proto": "https", "Host": "hayon.example"}


def test_runserver_prints_no_code_state_or_verifier(database, tmp_path):
    port, log = free_port(), tmp_path / "runserver.log"
    env = suite_environment(DJANGO_ENV="development", SECRET_KEY="dev-" + "k" * 50, DATABASE_URL=database,
                            TOKEN_ENCRYPTION_KEYS=PROD_ENV["TOKEN_ENCRYPTION_KEYS"])
    with running([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"], env, port, log) as url:
        for path in CALLBACKS:
            requests.get(url + path, allow_redirects=False, timeout=30)
    printed = log.read_text()
    assert "GET /api/platform/mastodon/callback?[redacted] HTTP/1.1" in printed, printed  # the lines were printed
    assert "GET /api/platform/tumblr/callback?[redacted] HTTP/1.1" in printed, printed
    assert SENTINEL not in printed, printed


@pytest.mark.parametrize("access_format", [README_ACCESS_FORMAT, None])
def test_gunicorn_prints_no_code_state_or_verifier(database, tmp_path, access_format):
    """The README's command, and gunicorn's default format too (request line and Referer)."""
    port, log = free_port(), tmp_path / "gunicorn.log"
    options = ["--access-logfile", "-", *(["--access-logformat", access_format] if access_format else [])]
    referer = {"Referer": f"https://mastodon.example/oauth/authorize?state={SENTINEL}-state"}
    with running(gunicorn(port, *options), production(database, tmp_path), port, log) as url:
        for path in CALLBACKS:
            requests.get(url + path, headers={**BEHIND_TLS_PROXY, **referer}, allow_redirects=False, timeout=30)
    printed = log.read_text()
    assert printed.count("/callback") >= 2, printed  # both requests were logged
    assert SENTINEL not in printed, printed


def test_production_pages_carry_the_production_policy(database, tmp_path):
    """Under gunicorn and production settings: images from https only (the tests add http:)."""
    port = free_port()
    with running(gunicorn(port), production(database, tmp_path), port, tmp_path / "gunicorn.log") as url:
        policy = requests.get(f"{url}/login", headers=BEHIND_TLS_PROXY, timeout=30).headers["Content-Security-Policy"]
    assert "img-src 'self' https:;" in policy + ";" and "script-src 'self';" in policy + ";"
