"""Fixtures for the publishing tests: a fake publishing provider, media storage, the worker."""
import signal

import pytest
from django.core.management import call_command

from platforms import providers
from platforms.errors import Kind, PlatformError
from platforms.providers.base import Provider
from publishing.interface import Published, Publisher, Rules, TextLimit


class FakePlatform:
    """The platform side: what was posted, by idempotency key when the provider sends one."""

    def __init__(self):
        self.posts: dict[str, str] = {}
        self.calls: list[dict] = []


class FakePublisher(Publisher, Provider):
    """A publishing provider whose every `publish` runs the next scripted step.

    A step is "ok" (post it), an exception instance (raised after the call is recorded), or a
    callable taking (platform, handle) for anything else.
    """

    name = "tumblr"  # a real document name, so connections are stored as for any platform
    label = "Fakeblr"
    publish_rules = Rules(text_limits=(TextLimit("graphemes", 20),), max_images=1)

    def __init__(self, *, idempotent: bool, steps=()):
        self.publish_idempotent = idempotent
        self.platform = FakePlatform()
        self.steps = list(steps)

    def new_handle(self) -> dict:
        return {"key": f"key-{len(self.platform.calls)}-{id(self)}"} if self.publish_idempotent else {}

    def publish(self, *, doc, auth, post, handle):
        from django.db import connection

        self.platform.calls.append({"handle": dict(handle.data), "fresh": handle.fresh, "text": post.text,
                                    "auth": auth, "in_transaction": connection.in_atomic_block})
        step = self.steps.pop(0) if self.steps else "ok"
        if callable(step) and not isinstance(step, BaseException):
            step = step(self.platform, handle)
        if isinstance(step, BaseException):
            raise step
        key = handle.data.get("key") or f"post-{len(self.platform.posts)}"
        self.platform.posts.setdefault(key, post.text)  # with a key, a second call finds the first post
        return Published(remote_id=key, url=f"https://fake.example/{key}")


def unavailable(message="Fakeblr did not answer in time."):
    return PlatformError(Kind.UNAVAILABLE, message)


@pytest.fixture
def install_publisher(monkeypatch):
    """Make providers.get(name) answer with the given publisher."""
    original = providers.get

    def install(publisher):
        monkeypatch.setattr(providers, "get", lambda name: publisher if name == publisher.name else original(name))
        return publisher

    return install


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def run_worker():
    """`manage.py worker --batch` in this process, as a script would run it."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)}

    def run():
        call_command("worker", "--batch", "--no-startup-delay", verbosity=0)

    yield run
    for sig, handler in handlers.items():  # the worker installs its own; give the test runner its own back
        signal.signal(sig, handler)
