"""F3's no-database baselines, served like production (``uvicorn bench.baseline_asgi:application``):

- ``POST /webhooks/whapi/<channel>/``: the production ASGI application and its lean webhook front
  (``webhooks.asgi``: HTTP parsing, body limit, host check, group commit, threads), with the store step
  replaced by checking the bearer and parsing the JSON: everything the webhook path does but the database.
- ``POST /bench/baseline/<channel>/``: a Django view doing the same (``bench.baseline_urls``), i.e. what
  the Django request path costs without any database work.

Never used in production.
"""

from __future__ import annotations

import hmac
import json
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.baseline_settings")

from config.asgi import application
from webhooks import asgi as front
from webhooks.ingest import IncomingWebhook, WebhookAnswer

SECRET = os.environ.get("BENCH_BASELINE_SECRET", "")


def receive_without_database(incomings: list[IncomingWebhook]) -> list[WebhookAnswer]:
    answers = []
    for incoming in incomings:
        presented = incoming.headers.get("authorization", "").partition(" ")[2].strip()
        if not SECRET or not hmac.compare_digest(SECRET.encode(), presented.encode()):
            answers.append(WebhookAnswer(401, {"error": "unauthorized"}))
            continue
        payload = json.loads(incoming.body)
        answers.append(WebhookAnswer(200, {"ok": True, "events": [len(payload)]}))
    return answers


front.webhook_receive_many = receive_without_database  # type: ignore[assignment]

__all__ = ["application"]
