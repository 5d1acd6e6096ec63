"""What the benchmarks share: production settings from the environment, a scratch PostgreSQL database."""
import os
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH_KEY = "YmVuY2gta2V5LW5vdC1hLXNlY3JldC0wMDAwMDAwMDA="  # a throwaway Fernet key for seeded data
DEFAULT_POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


def production_env(database_url: str, **extra: str) -> dict:
    """The environment of a production deployment (DJANGO_ENV=production) on this database."""
    from cryptography.fernet import Fernet

    return {
        **os.environ, "DJANGO_ENV": "production", "DJANGO_SETTINGS_MODULE": "hayon.settings.prod",
        "DATABASE_URL": database_url, "SECRET_KEY": "bench-" + Fernet.generate_key().decode(),
        "TOKEN_ENCRYPTION_KEYS": BENCH_KEY, "PUBLIC_URL": "https://hayon.bench", "ALLOWED_HOSTS": "hayon.bench",
        "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
        "CACHE_URL": "filecache:///tmp/hayon-bench-cache",  # production refuses a per-process cache
        **extra,
    }


@contextmanager
def scratch_postgres(server_url: str, prefix: str):
    """A fresh database on the server of `server_url`, dropped afterwards; yields its URL."""
    import psycopg

    name = f"{prefix}_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(server_url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
