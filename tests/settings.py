"""Test settings: the production settings module with test-friendly environment defaults.

DATABASE_URL and REDIS_URL default to Postgres and Redis on loopback; the README test command
checks both are reachable before pytest starts.
"""

from __future__ import annotations

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/wa_inbox")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdef")
os.environ.setdefault("ENCRYPTION_KEY", "test-encryption-key")
os.environ.setdefault("HTTPS", "false")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")

from config.settings import *  # noqa: F403
from config.settings import REDIS_URL

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
WHITENOISE_USE_FINDERS = True
CELERY_TASK_ALWAYS_EAGER = True  # tests drive tasks directly; subprocess tests start real workers
CELERY_TASK_EAGER_PROPAGATES = True
# Tests drive the outbox drain themselves (no background drainer thread racing them); tests of the kick
# turn it on explicitly.
OUTBOX_AUTO_DRAIN = False
# Tests' webhook receivers listen on loopback; the screening itself is tested with this turned off.
SUBSCRIPTIONS_ALLOW_PRIVATE_URLS = True
if REDIS_URL:
    # Each xdist worker gets its own channel-layer prefix so parallel tests don't hear each other.
    CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = "test-" + os.environ.get("PYTEST_XDIST_WORKER", "main")  # noqa: F405
