"""manage.py replay_webhooks [--status failed,dead] [--since ISO]."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from inbox.models import Message
from tests.webhooks.helpers import store
from tests.webhooks.samples import fixture_bytes
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def run(*args: str) -> dict:
    out = StringIO()
    call_command("replay_webhooks", *args, stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def events(whapi_channel):
    dead = store(whapi_channel, fixture_bytes("whapi", "whapi_incoming_text.json"))
    failed = store(whapi_channel, fixture_bytes("whapi", "whapi_incoming_group_text.json"))
    processed = store(whapi_channel, fixture_bytes("whapi", "whapi_outgoing_from_mobile.json"))
    WebhookEvent.objects.filter(pk=dead.pk).update(status="dead", attempts=5)
    # A failed event waits for its retry time (a drain would take it once due).
    WebhookEvent.objects.filter(pk=failed.pk).update(
        status="failed", attempts=2, next_attempt_at=timezone.now() + timedelta(minutes=2)
    )
    WebhookEvent.objects.filter(pk=processed.pk).update(status="processed")
    return {"dead": dead, "failed": failed, "processed": processed}


def test_it_replays_failed_and_dead_events_by_default(events, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = run()
    assert result == {"matched": 2, "queued": 2, "statuses": ["failed", "dead"]}
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert Message.objects.filter(wa_message_id="p.w30M7fgwWD4XwHu.g4CA-gBgTwl0rVw").exists()


def test_it_filters_by_status_and_since(events, django_capture_on_commit_callbacks):
    WebhookEvent.objects.filter(pk=events["dead"].pk).update(received_at=timezone.now() - timedelta(days=2))
    since = (timezone.now() - timedelta(days=1)).isoformat()
    with django_capture_on_commit_callbacks(execute=True):
        result = run("--status", "dead,failed", "--since", since)
    assert (result["matched"], result["queued"]) == (1, 1)
    assert WebhookEvent.objects.get(pk=events["dead"].pk).status == "dead"
    assert WebhookEvent.objects.get(pk=events["failed"].pk).status == "processed"


def test_replaying_processed_events_changes_nothing(
    events, whapi_channel, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run("--status", "processed")
    before = sorted(
        Message.objects.filter(channel=whapi_channel).values_list("wa_message_id", "status", "text")
    )
    with django_capture_on_commit_callbacks(execute=True):
        result = run("--status", "processed")
    assert result["queued"] == 1
    after = sorted(
        Message.objects.filter(channel=whapi_channel).values_list("wa_message_id", "status", "text")
    )
    assert after == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--status", "bogus"), "unknown status"),
        (("--since", "yesterday"), "not an ISO datetime"),
        (("--since", "2026-01-01T00:00:00"), "needs a timezone"),
    ],
)
def test_it_explains_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
