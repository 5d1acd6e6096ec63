"""Production settings, run as an operator would: `manage.py` in a subprocess with an explicit
environment. A per-process cache is refused (issue 12 #7, 13 #14), and no test reads the
developer's `.env` (issue 12 #17: after `make run` wrote one, `make test` failed two tests)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .fixtures.production import PROD_ENV, ROOT, suite_environment


def manage(*args, cwd=ROOT, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


# -- the cache --------------------------------------------------------------------------------
@pytest.mark.parametrize("cache_url", [None, "locmemcache://", "locmemcache://hayon", "dummycache://"])
def test_production_refuses_a_per_process_cache(cache_url):
    env = {k: v for k, v in PROD_ENV.items() if k != "CACHE_URL"}
    if cache_url:
        env["CACHE_URL"] = cache_url
    result = manage("check", env=suite_environment(**env))
    assert result.returncode != 0
    assert "CACHE_URL must name a cache shared by every worker" in result.stderr


@pytest.mark.parametrize("cache_url", ["dbcache://hayon_cache", "filecache:///tmp/hayon-cache", "rediscache://127.0.0.1:6379/1"])
def test_production_starts_with_a_shared_cache(cache_url):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=suite_environment(**{**PROD_ENV, "CACHE_URL": cache_url}))
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


# -- the developer's .env ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def clone_after_make_run(tmp_path_factory) -> Path:
    """A copy of the project in which `make run` has written its `.env` (scripts/init_env.py)."""
    clone = tmp_path_factory.mktemp("clone") / "hayon"
    shutil.copytree(ROOT, clone, ignore=shutil.ignore_patterns(
        ".venv", ".git", ".peers", "artifacts", "staticfiles", "node_modules", "*.sqlite3*", ".env", "__pycache__"))
    subprocess.run([sys.executable, "scripts/init_env.py"], cwd=clone, check=True, capture_output=True)
    with open(clone / ".env", "a") as dotenv:
        dotenv.write("HAYON_TUMBLR_UPKEEP_PER_HOUR=7\n")
    return clone


def developer_shell(**env) -> dict:
    """A shell that has not run the suite: no HAYON_ENV_FILE, no Django settings."""
    return {k: v for k, v in suite_environment(**env).items() if k != "HAYON_ENV_FILE"}


PRINT_SETTING = ["shell", "-v", "0", "-c", "from django.conf import settings; print(settings.HAYON_TUMBLR_UPKEEP_PER_HOUR)"]


def test_the_clone_s_env_file_is_read_by_development_settings(clone_after_make_run):
    """The control for the two tests below: the `.env` is there, and it is read where it should be."""
    result = manage(*PRINT_SETTING, cwd=clone_after_make_run, env=developer_shell(DJANGO_ENV="development"))
    assert result.stdout.strip() == "7", result.stderr
    env = developer_shell(**{k: v for k, v in PROD_ENV.items() if k != "SECRET_KEY"})
    assert manage("check", cwd=clone_after_make_run, env=env).returncode == 0  # its SECRET_KEY came from .env


@pytest.mark.parametrize("select", [{"DJANGO_ENV": "test"}, {"DJANGO_SETTINGS_MODULE": "hayon.settings.test"}])
def test_test_settings_never_read_the_env_file(clone_after_make_run, select):
    """Both ways the suite's settings are chosen: `make test` (DJANGO_ENV) and pytest.ini."""
    result = manage(*PRINT_SETTING, cwd=clone_after_make_run, env=developer_shell(**select))
    assert result.stdout.strip() == "500", result.stdout + result.stderr


@pytest.mark.parametrize("missing", ["SECRET_KEY", "TOKEN_ENCRYPTION_KEYS"])
def test_production_started_by_the_suite_still_refuses_without_its_secrets(clone_after_make_run, missing):
    env = suite_environment(**{k: v for k, v in PROD_ENV.items() if k != missing})
    assert env["HAYON_ENV_FILE"] == ""  # inherited from the test settings, as every subprocess here
    result = manage("check", cwd=clone_after_make_run, env=env)
    assert result.returncode != 0 and missing in result.stderr


def test_the_suite_passes_after_make_run_in_the_same_clone(clone_after_make_run):
    """The README's order, `make run` then `make test`, on the tests that failed (issue 12 #17)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_secrets_at_rest.py", "-k", "production_refuses"],
        # SQLite, whatever this run uses: a nested run on this PostgreSQL server would create and drop
        # the very test database the outer run is using.
        cwd=clone_after_make_run, env=developer_shell(DJANGO_ENV="test", DATABASE_URL="sqlite:///db.sqlite3"),
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
