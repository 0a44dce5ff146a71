from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from config.embedded_beat import _run_due
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def test_it_runs_each_entry_when_its_interval_has_passed(monkeypatch) -> None:
    from config.celery import app

    app.loader.import_default_modules()
    calls: list[str] = []
    monkeypatch.setattr(
        app.tasks["webhooks.tasks.webhook_events_requeue_due"], "apply", lambda: calls.append("w")
    )
    monkeypatch.setattr(app.tasks["outbox.tasks.outbox_drain"], "apply", lambda: calls.append("o"))
    schedule = {
        "webhooks": {"task": "webhooks.tasks.webhook_events_requeue_due", "schedule": 30.0},
        "outbox": {"task": "outbox.tasks.outbox_drain", "schedule": 1.0},
    }
    last_run: dict[str, float] = {}
    assert _run_due(schedule, last_run, now=100.0) == ["webhooks", "outbox"]
    assert _run_due(schedule, last_run, now=100.5) == []
    assert _run_due(schedule, last_run, now=101.0) == ["outbox"]
    assert _run_due(schedule, last_run, now=130.0) == ["webhooks", "outbox"]
    assert calls == ["w", "o", "o", "w", "o"]


def test_the_real_schedule_recovers_a_webhook_event_whose_worker_died(team, settings) -> None:
    """Embedded mode has no beat process: this loop is what returns a stuck event to processing."""
    body = b'{"messages": [], "event": {"type": "messages", "event": "post"}, "channel_id": ""}'
    event = WebhookEvent.objects.create(
        provider="whapi",
        channel=team.channel_a,
        raw_body=body,
        signature_valid=True,
        status=WebhookEvent.Status.PROCESSING,
        lease_expires_at=timezone.now() - timedelta(minutes=1),
    )
    _run_due(settings.CELERY_BEAT_SCHEDULE, {}, now=0.0)
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
