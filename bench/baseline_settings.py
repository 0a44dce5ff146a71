"""F3's baseline: the production settings with one extra no-database JSON view and nothing else changed.

Served by the same process type (``uvicorn config.asgi:application`` with
``DJANGO_SETTINGS_MODULE=bench.baseline_settings``), so the webhook endpoint's rate can be divided by what
the same server, middleware and HTTP parsing give without any database work. Never used in production.
"""

from __future__ import annotations

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.baseline_urls"
