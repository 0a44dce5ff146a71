"""Queue stored webhook events for processing again, in bulk. Prints one JSON object."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils.dateparse import parse_datetime

from webhooks.models import WebhookEvent
from webhooks.services import webhook_events_replay

BATCH = 500


class Command(BaseCommand):
    help = "Replay webhook events (default: failed and dead). Processing is idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--status",
            default="failed,dead",
            help="comma-separated statuses to replay (pending, processing, processed, failed, dead)",
        )
        parser.add_argument("--since", default="", help="only events received at or after this ISO datetime")
        parser.add_argument("--channel", default="", help="only this channel's events (its id)")

    def handle(self, *args: Any, **options: Any) -> None:
        statuses = [s.strip() for s in options["status"].split(",") if s.strip()]
        unknown = set(statuses) - set(WebhookEvent.Status.values)
        if not statuses or unknown:
            raise CommandError(
                f"unknown status {', '.join(sorted(unknown)) or '(none)'}: use {', '.join(WebhookEvent.Status.values)}"
            )
        qs = WebhookEvent.objects.filter(status__in=statuses).order_by("received_at", "id")
        if options["since"]:
            since = parse_datetime(options["since"])
            if since is None:
                raise CommandError(
                    f"--since {options['since']!r} is not an ISO datetime (e.g. 2026-01-31T12:00:00Z)"
                )
            if since.tzinfo is None:
                raise CommandError("--since needs a timezone (e.g. a trailing Z or +00:00)")
            qs = qs.filter(received_at__gte=since)
        if options["channel"]:
            qs = qs.filter(channel_id=options["channel"])
        ids = list(qs.values_list("pk", flat=True))
        queued = 0
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            with transaction.atomic(durable=True):
                queued += webhook_events_replay(events=WebhookEvent.objects.filter(pk__in=chunk))
        self.stdout.write(json.dumps({"matched": len(ids), "queued": queued, "statuses": statuses}))
