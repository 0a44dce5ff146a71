"""Webhook processing in one process (not a test): CPU per stored event, by claim size.

    .venv/bin/python bench/processing.py [--events 1500] [--batch 5 20 100] [--profile]

Stores ``--events`` signed-off Whapi deliveries (one customer message each, over 200 chats) plus 25 % of
them again (redeliveries), exactly as the webhook front stores them, then drains them with
``webhook_events_drain`` in this process with each ``--batch`` claim size, and prints the CPU time
(``time.process_time``: this process, its push thread included, Postgres not) and the wall time per
event. Postgres database ``wa_bench_processing`` (created and migrated), Redis db 8 for the channel
layer (flushed). No Celery: the figure is the processing itself, without the task machinery around it.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import lab


def run(*, events: int, batch: int, profile: bool = False) -> dict[str, Any]:
    from django.db import connection

    import webhooks.services
    from bench.ingest import body_for
    from channels_app.services import channel_create
    from inbox.models import Message
    from tenants import realtime
    from tenants.models import Workspace
    from webhooks.processor import webhook_events_drain
    from webhooks.services import EventToStore, webhook_events_store

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE webhooks_webhookevent, inbox_messageevent, inbox_messagereaction, inbox_deferredstatus, "
            "inbox_message, inbox_chat, inbox_contact CASCADE"
        )
    workspace, _ = Workspace.objects.get_or_create(slug="bench-processing", defaults={"name": "Processing"})
    channel = workspace.channels.first() or channel_create(
        workspace=workspace,
        provider="whapi",
        display_name="Bench",
        phone_number="+15550003333",
        tokens={"webhook_secret": "unused", "api_token": "unused"},
    )
    run_id = secrets.token_hex(3)
    bodies = [body_for(n, run_id) for n in range(events)]
    bodies += bodies[: events // 4]
    webhooks.services._kick = lambda: None  # type: ignore[attr-defined]  # this process drains, nobody else
    for start in range(0, len(bodies), 100):
        webhook_events_store(
            [
                EventToStore(
                    provider="whapi",
                    channels=[channel],
                    raw_body=body,
                    headers={"content-type": "application/json"},
                    signature_valid=True,
                    event_type="messages.post",
                )
                for body in bodies[start : start + 100]
            ]
        )
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu, wall = time.process_time(), time.perf_counter()
    report = webhook_events_drain(batch_size=batch)
    realtime._push_loop.flush()  # the pushes are part of the work
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    stored = len(bodies)
    return {
        "batch": batch,
        "events": stored,
        "processed": report.processed,
        "messages": Message.objects.filter(channel=channel).count(),
        "cpu_ms_per_event": round(cpu * 1000 / stored, 3),
        "wall_ms_per_event": round(wall * 1000 / stored, 3),
        "events_per_s_wall": round(stored / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1500)
    parser.add_argument("--batch", type=int, nargs="+", default=[5, 20, 100])
    parser.add_argument("--profile", action="store_true", help="cProfile the drain (slows it down)")
    args = parser.parse_args()
    env = lab.production_environment(database="wa_bench_processing", redis_db=8)
    lab.migrate(env)
    lab.flush_redis(env["REDIS_URL"])
    lab.use_environment(env)
    import django

    django.setup()
    for batch in args.batch:
        print(json.dumps(run(events=args.events, batch=batch, profile=args.profile)), flush=True)


if __name__ == "__main__":
    main()
