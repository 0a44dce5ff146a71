"""Settings, all from the environment (see README "Environment")."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.local_secrets import load_or_create_dev_secrets

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_DIR = Path(os.environ.get("LOCAL_DIR", BASE_DIR / ".local"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("DEBUG", False)

_secret_key = os.environ.get("SECRET_KEY", "")
_encryption_key = os.environ.get("ENCRYPTION_KEY", "")
if not (_secret_key and _encryption_key):
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY and ENCRYPTION_KEY must be set when DEBUG is off "
            "(set DEBUG=true for the embedded development mode)."
        )
    _dev = load_or_create_dev_secrets(LOCAL_DIR)
    _secret_key = _secret_key or _dev["SECRET_KEY"]
    _encryption_key = _encryption_key or _dev["ENCRYPTION_KEY"]

SECRET_KEY = _secret_key
ENCRYPTION_KEY = _encryption_key

ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

META_APP_SECRET = os.environ.get("META_APP_SECRET", "")
META_VERIFY_TOKEN = os.environ.get("META_VERIFY_TOKEN", "")
META_GRAPH_VERSION = os.environ.get("META_GRAPH_VERSION", "v21.0")
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
METRICS_ALLOWED_IPS = [
    ip.strip() for ip in os.environ.get("METRICS_ALLOWED_IPS", "127.0.0.1,::1").split(",") if ip.strip()
]
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / Redoc served from our static files, no CDN
    "channels",
    "django_htmx",
    "template_partials",
    "django_celery_beat",
    "tenants",
    "channels_app",
    "inbox",
    "outbox",
    "webhooks",
]

MIDDLEWARE = [
    "config.request_context.RequestIdMiddleware",
    "config.metrics.HttpMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "config.security_headers.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "config.nul_guard.RejectNulCharactersMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "tenants.middleware.CurrentWorkspaceMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tenants.context_processors.workspace",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

LOCAL_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{LOCAL_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the in-process drainer and webhook processor write while pages read.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
_db_pool_max = int(os.environ.get("DB_POOL_MAX_SIZE", "0"))
if _db_pool_max and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI every request's sync code runs in a fresh thread: persistent connections would be left
    # open per thread, so web processes use a pool that takes each connection back at request end.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": _db_pool_max,
        "timeout": 10,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # channels_redis waits for a consumer's next message with BZPOPMIN of up to 5 s, and
                # redis-py 8 gives every socket read a 5 s timeout by default: an idle consumer's read
                # then timed out with the command and crashed it (its websocket closed) every 5 s.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 5}],
                "capacity": 1500,
                "expiry": 30,
            },
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    # Embedded mode: no broker, tasks run in-process.
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = False

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Periodic backstops (beat syncs these into django_celery_beat at start). Each app adds its own entry.
CELERY_BEAT_SCHEDULE = {
    # Webhooks: recover events whose worker died (lease expired), queue due retries and lost kicks.
    "webhooks-requeue-due": {"task": "webhooks.tasks.webhook_events_requeue_due", "schedule": 30.0},
    # Outbox: drain every second as the backstop to the after-commit kick (expired leases, due retries,
    # rate-limit resumes). Expires fast so a backlog of beats never piles up while workers are down.
    "outbox-drain": {"task": "outbox.tasks.outbox_drain", "schedule": 1.0, "options": {"expires": 5}},
}
# Embedded mode (no REDIS_URL): the ASGI process runs CELERY_BEAT_SCHEDULE itself, in a thread.
EMBEDDED_BEAT = env_bool("EMBEDDED_BEAT", True)
# Outbox: drains run by themselves after commit (embedded: an in-process thread; else a Celery task).
OUTBOX_AUTO_DRAIN = env_bool("OUTBOX_AUTO_DRAIN", True)
# Seconds a claimed row stays ours; longer than a send's timeouts so only a dead worker's rows go back.
OUTBOX_LEASE_SECONDS = int(os.environ.get("OUTBOX_LEASE_SECONDS", "90"))
# Integrators' webhook URLs may point at private, loopback or link-local addresses only when this is on
# (development, where the receiver runs on this machine); in production they would let a workspace admin
# make the server call its own network.
SUBSCRIPTIONS_ALLOW_PRIVATE_URLS = env_bool("SUBSCRIPTIONS_ALLOW_PRIVATE_URLS", DEBUG)
# Provider calls in flight at once per drain (a batch's rows hold at most one row per chat, so this never
# reorders a chat).
OUTBOX_SEND_CONCURRENCY = int(os.environ.get("OUTBOX_SEND_CONCURRENCY", "8"))
# Outbox pacing (outbox.dispatch, outbox.ratelimit): a number's sends are given slots 1/rate apart, reserved
# up to OUTBOX_PACE_HORIZON seconds ahead (rows wait in the drain for their slot; kept under a quarter of
# the lease), at OUTBOX_PACE_FRACTION of its limit. Not 1.0: slots at exactly the limit arrive with a few
# milliseconds of jitter, and F2 read up to 1.003 of the limit in 8 s windows; 0.99 leaves the provider
# six messages of slack per 8 s at 80/s.
OUTBOX_PACE_HORIZON = float(os.environ.get("OUTBOX_PACE_HORIZON", "1.0"))
OUTBOX_PACE_FRACTION = float(os.environ.get("OUTBOX_PACE_FRACTION", "0.99"))
# Rows per claim. Larger claims send faster in bulk (F1 measured 200 best on two cores); smaller ones put
# back fewer rows when a number's send slots are taken a pacing horizon ahead.
OUTBOX_BATCH_SIZE = int(os.environ.get("OUTBOX_BATCH_SIZE", "50"))
# Sandbox numbers: simulated "delivered" and "read" this many seconds after a send.
SANDBOX_DELIVERED_AFTER = 1.0
SANDBOX_READ_AFTER = 2.0

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", LOCAL_DIR / "media"))
MEDIA_URL = "/media/"

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/inbox/"

# Webhook bodies are capped (providers' largest events are far below this).
WEBHOOK_MAX_BODY_BYTES = 3 * 1024 * 1024
# Webhook stores in flight at once per web process (webhooks.asgi: each is one thread, one database
# connection and one commit for all the POSTs that were waiting). Two, not four: fewer stores in flight
# means more POSTs per commit; in alternating F3 runs 2 beat 4 in every pair (docs/performance.md).
WEBHOOK_INGEST_THREADS = int(os.environ.get("WEBHOOK_INGEST_THREADS", "2"))
# Stored webhook events per processing claim. Plain customer messages in one claim are applied in one
# transaction, so larger claims process faster; each holds its chats' row locks until it commits.
WEBHOOK_DRAIN_BATCH_SIZE = int(os.environ.get("WEBHOOK_DRAIN_BATCH_SIZE", "100"))
# Seconds between the starts of a running drain's claims (unless the last claim was full): a drain keeping
# up with a stream takes what arrived meanwhile in one claim instead of a claim per event or two.
WEBHOOK_DRAIN_CLAIM_INTERVAL = float(os.environ.get("WEBHOOK_DRAIN_CLAIM_INTERVAL", "0.025"))
DATA_UPLOAD_MAX_MEMORY_SIZE = WEBHOOK_MAX_BODY_BYTES + 1024

HTTPS = env_bool("HTTPS", not DEBUG)
if HTTPS:
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31_536_000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# The REST API (/api/v1/, issue 6): bearer tokens or the session (with CSRF), an envelope on every
# answer, a per-token rate limit. See tenants/authentication.py and tenants/api_envelope.py.
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "tenants.api_schema.EnvelopeAutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.authentication.ApiTokenAuthentication",
        "tenants.authentication.WorkspaceSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.permissions.IsWorkspaceMember"],
    "DEFAULT_RENDERER_CLASSES": ["tenants.api_envelope.EnvelopeJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["tenants.api_parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "tenants.api_envelope.PageLimitPagination",
    "DEFAULT_THROTTLE_CLASSES": ["tenants.throttling.ApiTokenRateThrottle"],
    "EXCEPTION_HANDLER": "tenants.api_envelope.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# Requests per token (per user for session callers); DRF rate syntax: "<n>/<second|minute|hour|day>".
API_RATE_LIMIT = os.environ.get("API_RATE_LIMIT", "600/minute")
SPECTACULAR_SETTINGS = {
    "TITLE": "WhatsApp Team Inbox API",
    "VERSION": "1.0.0",
    "DESCRIPTION": (
        "REST API v1. Authenticate with `Authorization: Bearer <token>` (create one with "
        "`manage.py apitoken_create`). Every answer is an envelope: "
        '`{"success": true, "data": …}` (lists add `pagination`) or '
        '`{"success": false, "error": {"message", "code", "fields"}}`.'
    ),
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Three models have a "status"; name each enum after its model instead of a hash.
    "ENUM_NAME_OVERRIDES": {
        "ChatStatusEnum": "inbox.models.Chat.Status",
        "ChannelStatusEnum": "channels_app.models.Channel.Status",
        "MessageStatusEnum": "inbox.models.Message.Status",
        "MessageTypeEnum": "inbox.models.Message.Type",
        "SendTypeEnum": "inbox.api.SEND_TYPES",
    },
}

# The cache backs the API rate limit, so it must be shared by every web process: Redis when there is one.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "config.json_logging.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Celery installs its own handlers unless told not to; keep one JSON stream.
        "celery": {"level": LOG_LEVEL},
        # One line per task run is noise at INFO (the embedded beat runs the drain every second).
        "celery.app.trace": {"level": "WARNING"},
    },
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
