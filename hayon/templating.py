"""The Jinja2 environment of Hayon's own pages (the admin keeps Django's template engine).

Jinja2 compiles a template to Python code; Django's engine walks a node tree on every render.
The settings page rendered its five cards in ~3.5 ms of CPU with Django templates, most of the
page's time (bench/pages.py); Jinja2 takes ~0.5 ms. The helpers below are Django's own, so pages format
dates and build URLs exactly as Django templates did.
"""
from functools import lru_cache

from django.template.backends.utils import csrf_input
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.template.defaultfilters import date, timesince_filter
from django.templatetags.static import static
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from jinja2 import ChainableUndefined, Environment


def url(name: str, *args) -> str:
    return _reverse(get_script_prefix(), name, args)


@lru_cache(maxsize=4096)
def _reverse(prefix: str, name: str, args: tuple) -> str:
    """reverse() walks the URL patterns each time (~50 µs); the settings page needs a dozen URLs,
    and they depend only on the URLconf (one per process: Hayon sets no request.urlconf), the
    script prefix and the args."""
    return reverse(name, args=args)


@lru_cache(maxsize=1024)
def static_url(path: str) -> str:
    """The manifest storage's URL of a static file: fixed for the life of the process."""
    return static(path)


@receiver(setting_changed)
def _forget_urls(*, setting, **kwargs):
    if setting in ("ROOT_URLCONF", "STATIC_URL", "STORAGES"):  # tests may change these
        _reverse.cache_clear()
        static_url.cache_clear()


def local_date(value, fmt: str | None = None) -> str:
    """Django's `date` filter, after the conversion to local time Django templates do first."""
    if value and timezone.is_aware(value):
        value = timezone.localtime(value)
    return date(value, fmt)


class _CsrfInput:
    """The hidden CSRF field, masked once per page.

    Django's Jinja2 backend masks a fresh token at every `{{ csrf_input }}`; the settings page has
    a dozen forms, and masking (32 characters from the system's random source) was a fifth of the
    page's CPU.
    """

    def __init__(self, request):
        self.request, self.html = request, None

    def __html__(self) -> str:
        if self.html is None:
            self.html = csrf_input(self.request)
        return self.html

    __str__ = __html__


def csrf(request) -> dict:
    """Context processor: replaces the backend's per-use `csrf_input` (it runs after it)."""
    return {"csrf_input": _CsrfInput(request)}


def environment(**options) -> Environment:
    # Optional document keys (an expiry, a reason) read as empty, as in Django templates, in
    # development too (Django's default there prints the missing name into the page).
    options["undefined"] = ChainableUndefined
    env = Environment(**options)
    env.globals.update(url=url, static=static_url)
    env.filters.update(date=local_date, timesince=timesince_filter)
    return env
