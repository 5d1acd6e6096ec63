"""The explicit registry of platforms. Adding a platform is adding its module and one line here."""
from .base import Provider
from .bluesky import BlueskyProvider
from .facebook import FacebookProvider
from .mastodon import MastodonProvider
from .threads import ThreadsProvider
from .tumblr import TumblrProvider

PROVIDERS: tuple[Provider, ...] = (
    BlueskyProvider(),
    TumblrProvider(),
    FacebookProvider(),
    ThreadsProvider(),
    MastodonProvider(),
)
_BY_NAME = {provider.name: provider for provider in PROVIDERS}


def get(name: str) -> Provider | None:
    return _BY_NAME.get(name)
