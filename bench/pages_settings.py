"""Production settings plus the benchmark's baseline views (bench/pages_urls.py)."""
from hayon.settings.prod import *  # noqa: F401,F403

ROOT_URLCONF = "bench.pages_urls"
