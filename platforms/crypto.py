"""Encryption of platform secrets at rest. The only module that imports `cryptography`.

Keys come from TOKEN_ENCRYPTION_KEYS, newest first: the newest encrypts, every key decrypts,
so a new key can be put in front and `manage.py rotate_token_keys` re-encrypts the rest.
"""
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretsUnreadable(Exception):
    """Stored secrets cannot be decrypted with the configured keys (wrong or removed key)."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("TOKEN_ENCRYPTION_KEYS is empty: secrets cannot be stored")
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured("TOKEN_ENCRYPTION_KEYS holds a value that is not a Fernet key") from exc


def _current() -> MultiFernet:
    return _fernet(tuple(settings.TOKEN_ENCRYPTION_KEYS))


def generate_key() -> str:
    return Fernet.generate_key().decode()


def encrypt(data: dict) -> str:
    return _current().encrypt(json.dumps(data, separators=(",", ":")).encode()).decode()


def decrypt(token: str) -> dict:
    try:
        return json.loads(_current().decrypt(token.encode()))
    except (InvalidToken, ValueError, TypeError) as exc:
        raise SecretsUnreadable("stored secrets cannot be read with the configured keys") from exc


def rotate(token: str) -> str:
    """Re-encrypt under the newest key (raises SecretsUnreadable if no key can read it)."""
    try:
        return _current().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretsUnreadable("stored secrets cannot be read with the configured keys") from exc
