"""The monitoring page: is every number healthy, is anything stuck, what died and can be replayed.

Staff superusers see every workspace; a workspace admin sees their chosen workspace; agents get 404.
Every figure comes from a fixed number of aggregate queries, whatever the number of channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count, Max, Min, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from channels_app.models import Channel
from outbox.models import OutboxMessage
from tenants.services import audit_record
from webhooks.models import WebhookEvent

STUCK_PROCESSING_AFTER = timedelta(minutes=5)
RECENT_ERRORS_PER_CHANNEL = 3


@dataclass
class ChannelHealth:
    channel: Channel
    queue_depth: int = 0
    failed_sends: int = 0
    last_inbound_at: datetime | None = None
    last_sent_at: datetime | None = None
    recent_errors: list[str] = field(default_factory=list)


@dataclass
class Monitoring:
    channels: list[ChannelHealth]
    dead_events: list[WebhookEvent]
    dead_by_provider: dict[str, int]
    failed_events: int
    stuck_events: list[WebhookEvent]
    stuck_outbox: list[OutboxMessage]
    pending_events: int
    processing_lag_seconds: float
    queued_outbox: int
    oldest_queued_seconds: float


def _scope(request: HttpRequest) -> Any | None:
    """The workspace id to show, or None for everything (superusers). 404 for anyone else."""
    if request.user.is_superuser:
        return None
    membership = getattr(request, "membership", None)
    if membership is None or not membership.is_admin or not membership.workspace.is_active:
        raise Http404("No such page")
    return membership.workspace_id


def _scoped(qs: QuerySet[Any], workspace_id: Any | None, prefix: str = "") -> QuerySet[Any]:
    return qs if workspace_id is None else qs.filter(**{f"{prefix}workspace_id": workspace_id})


def monitoring_overview(*, workspace_id: Any | None, now: datetime | None = None) -> Monitoring:
    now = now or timezone.now()
    channels = list(
        _scoped(Channel.objects.select_related("workspace"), workspace_id).order_by(
            "workspace__name", "display_name"
        )
    )
    health = {
        c.pk: ChannelHealth(channel=c, last_inbound_at=c.last_inbound_at, last_sent_at=c.last_sent_at)
        for c in channels
    }

    outbox = _scoped(OutboxMessage.objects.all(), workspace_id, "channel__")
    for row in outbox.values("channel_id").annotate(
        depth=Count("id", filter=Q(status__in=["queued", "sending", "paused"])),
        failed=Count("id", filter=Q(status="failed")),
        last_sent=Max("sent_at"),
    ):
        item = health.get(row["channel_id"])
        if item is not None:
            item.queue_depth, item.failed_sends = row["depth"], row["failed"]
            item.last_sent_at = max(filter(None, [item.last_sent_at, row["last_sent"]]), default=None)
    recent_failures = (
        outbox.exclude(last_error="").order_by("-updated_at").values_list("channel_id", "last_error")[:200]
    )
    for channel_id, error in recent_failures:
        item = health.get(channel_id)
        if item is not None and len(item.recent_errors) < RECENT_ERRORS_PER_CHANNEL:
            item.recent_errors.append(error[:200])

    events = _scoped(WebhookEvent.objects.all(), workspace_id, "channel__")
    dead = events.filter(status=WebhookEvent.Status.DEAD)
    dead_by_provider = dict(dead.values_list("provider").annotate(n=Count("id")).values_list("provider", "n"))
    oldest_pending = events.filter(status__in=["pending", "processing", "failed"]).aggregate(
        m=Min("received_at")
    )["m"]
    oldest_queued = outbox.filter(status="queued").aggregate(m=Min("created_at"))["m"]
    return Monitoring(
        channels=list(health.values()),
        dead_events=list(dead.select_related("channel").order_by("-received_at")[:50]),
        dead_by_provider=dead_by_provider,
        failed_events=events.filter(status=WebhookEvent.Status.FAILED).count(),
        stuck_events=list(
            events.filter(status=WebhookEvent.Status.PROCESSING)
            .filter(Q(lease_expires_at__lt=now) | Q(received_at__lt=now - STUCK_PROCESSING_AFTER))
            .select_related("channel")[:50]
        ),
        stuck_outbox=list(
            outbox.filter(status="sending", lease_expires_at__lt=now).select_related("channel")[:50]
        ),
        pending_events=events.filter(status__in=["pending", "processing"]).count(),
        processing_lag_seconds=(now - oldest_pending).total_seconds() if oldest_pending else 0.0,
        queued_outbox=outbox.filter(status="queued").count(),
        oldest_queued_seconds=(now - oldest_queued).total_seconds() if oldest_queued else 0.0,
    )


@login_required
@require_http_methods(["GET"])
def monitoring_page(request: HttpRequest) -> HttpResponse:
    overview = monitoring_overview(workspace_id=_scope(request))
    return render(request, "monitoring/monitoring.html", {"overview": overview})


@login_required
@require_http_methods(["POST"])
def monitoring_replay(request: HttpRequest) -> HttpResponse:
    from webhooks.services import webhook_events_replay

    workspace_id = _scope(request)
    ids = [i for i in request.POST.getlist("event_id") if i.isdigit()]
    events = _scoped(WebhookEvent.objects.filter(pk__in=ids), workspace_id, "channel__")
    with transaction.atomic(durable=True):
        replayed = webhook_events_replay(events=list(events))
        audit_record(
            action="webhook.replayed",
            workspace=getattr(request, "workspace", None),
            actor=request.user,
            data={"event_ids": [int(i) for i in ids][:100], "count": replayed},
        )
    messages.success(request, f"Replaying {replayed} event(s).")
    return redirect("monitoring")
