import os

_MODULES = {"development": "dev", "production": "prod", "test": "test"}


def settings_module():
    """The settings module for DJANGO_ENV (development unless said otherwise)."""
    env = os.environ.get("DJANGO_ENV", "development")
    try:
        return f"hayon.settings.{_MODULES[env]}"
    except KeyError:
        raise SystemExit(f"DJANGO_ENV must be one of {', '.join(_MODULES)}, not {env!r}")
