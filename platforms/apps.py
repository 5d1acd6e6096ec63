from django.apps import AppConfig


class PlatformsConfig(AppConfig):
    name = "platforms"
    verbose_name = "Connected platforms"

    def ready(self):
        from . import signals  # noqa: F401  (drops pending OAuth flows on sign-out)
