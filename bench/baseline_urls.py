"""The app's URLs plus ``POST /bench/baseline/<channel>/``: check the bearer and parse the JSON like the
webhook endpoint does, then answer 200 without touching the database (F3's no-database baseline)."""

from __future__ import annotations

import hmac
import json
import os
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from config.urls import urlpatterns as app_urlpatterns

SECRET = os.environ.get("BENCH_BASELINE_SECRET", "")


@csrf_exempt
@require_POST
def baseline(request: HttpRequest, channel_id: Any) -> JsonResponse:
    presented = request.headers.get("Authorization", "").partition(" ")[2].strip()
    if not SECRET or not hmac.compare_digest(SECRET.encode(), presented.encode()):
        return JsonResponse({"error": "unauthorized"}, status=401)
    payload = json.loads(request.body)
    return JsonResponse({"ok": True, "events": [len(payload)]})


urlpatterns = [path("bench/baseline/<uuid:channel_id>/", baseline), *app_urlpatterns]
