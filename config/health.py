"""Liveness and readiness probes."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare

from config.metrics import render_metrics


def healthz(request: HttpRequest) -> JsonResponse:
    """The process answers."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return f"database unreachable: {exc.__class__.__name__}"
    return None


def _check_migrations() -> str | None:
    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return f"cannot read migrations: {exc.__class__.__name__}"
    return f"{len(pending)} migrations not applied" if pending else None


def _check_redis() -> str | None:
    if not settings.REDIS_URL:
        return None
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1).ping()
    except Exception as exc:
        return f"redis unreachable: {exc.__class__.__name__}"
    return None


def readyz(request: HttpRequest) -> JsonResponse:
    """Database, Redis (when configured) and migrations; 503 naming what failed."""
    checks = {"database": _check_database()}
    if checks["database"] is None:
        checks["migrations"] = _check_migrations()
    if settings.REDIS_URL:
        checks["redis"] = _check_redis()
    failing = {name: problem for name, problem in checks.items() if problem}
    body = {
        "status": "fail" if failing else "ok",
        "checks": {name: (problem or "ok") for name, problem in checks.items()},
    }
    return JsonResponse(body, status=503 if failing else 200)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text; allowed with ``Authorization: Bearer <METRICS_TOKEN>`` or from METRICS_ALLOWED_IPS."""
    token = settings.METRICS_TOKEN
    auth = request.headers.get("Authorization", "")
    by_token = bool(token) and constant_time_compare(auth, f"Bearer {token}")
    # Behind a proxy every request comes from the proxy's address: a forwarded request never
    # qualifies by address, only by token.
    forwarded = "HTTP_X_FORWARDED_FOR" in request.META
    by_address = not forwarded and request.META.get("REMOTE_ADDR", "") in settings.METRICS_ALLOWED_IPS
    if not (by_token or by_address):
        return HttpResponse(
            "metrics need a token or an allowed address\n", status=403, content_type="text/plain"
        )
    body, content_type = render_metrics()
    return HttpResponse(body, content_type=content_type)
