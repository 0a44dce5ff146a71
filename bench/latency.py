"""F4, commit → provider latency (not a test): the after-commit kick vs Celery beat alone.

    .venv/bin/python bench/latency.py [--messages 40] [--json out.json]

Production processes on loopback: a Celery worker (``-c 2``) and, for the second half, Celery beat
(its 1 s ``outbox-drain`` backstop), Redis db 8 as the broker, database ``wa_bench_latency``.
This process sends messages one by one through ``message_send`` in its own durable transaction and
notes the commit time; the fake provider notes when each call arrives.

1. kick: ``OUTBOX_AUTO_DRAIN`` on: each commit queues a drain task at once (no beat running).
2. beat alone: the kick is off in the sender; only beat's drain every second sends. Sends are spread
   over the beat period (0.137 s apart) so the wait is sampled evenly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import lab


def measure(fake: Any, chats: list[Any], label: str, count: int, gap: float) -> list[float]:
    from django.db import transaction

    from inbox.services import message_send

    committed: dict[str, float] = {}
    for n in range(count):
        text = f"latency-{label}-{n}-{time.time_ns()}"
        with transaction.atomic(durable=True):
            message_send(chat=chats[n], sender=None, client_message_id=text, text=text)
        committed[text] = time.time()
        time.sleep(gap)
    lab.wait_until(lambda: committed.keys() <= _arrivals(fake).keys(), timeout=60, step=0.1)
    arrivals = _arrivals(fake)
    return [max(0.0, arrivals[text] - at) for text, at in committed.items() if text in arrivals]


def _arrivals(fake: Any) -> dict[str, float]:
    return {
        r.json["body"]: r.received_at for r in fake.sends() if isinstance(r.json, dict) and "body" in r.json
    }


def summary(values: list[float], expected: int) -> dict[str, Any]:
    return {
        "p50_ms": round(lab.pct(values, 50) * 1000, 1),
        "p99_ms": round(lab.pct(values, 99) * 1000, 1),
        "n": len(values),
        "missing": expected - len(values),
    }


def run(*, messages: int = 40) -> dict[str, Any]:
    env = lab.production_environment(database="wa_bench_latency", redis_db=8)
    lab.migrate(env)
    lab.flush_redis(env["REDIS_URL"])
    lab.use_environment(env)
    import django

    django.setup()
    from django.conf import settings

    from channels_app.providers.fake_server import FakeProvider
    from outbox.models import OutboxMessage
    from tenants.models import Workspace

    OutboxMessage.objects.all().delete()
    Workspace.objects.filter(slug="bench-latency").delete()
    workspace = Workspace.objects.create(slug="bench-latency", name="Bench latency", max_channels=100)
    fake = FakeProvider().start()
    channel = lab.whapi_channel(workspace, name="latency", base_url=fake.url, rate=1e6, token="latency-token")
    chats = lab.open_chats(workspace, channel, messages * 2, "49171")
    result: dict[str, Any] = {"messages": messages}
    worker = lab.celery_worker(env, concurrency=2, name="latency-worker")
    beat = None
    try:
        time.sleep(4)  # the worker connects to the broker
        settings.OUTBOX_AUTO_DRAIN = True
        measure(fake, chats[:3], "warmup", 3, 0.1)
        result["kick"] = summary(measure(fake, chats[3:messages], "kick", messages - 3, 0.05), messages - 3)
        settings.OUTBOX_AUTO_DRAIN = False
        beat = lab.celery_beat(env, name="latency-beat")
        time.sleep(4)  # beat syncs its schedule and starts ticking
        result["beat_alone"] = summary(
            measure(fake, chats[messages : messages * 2], "beat", messages, 0.137), messages
        )
    finally:
        lab.stop([p for p in (worker, beat) if p is not None])
        fake.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(messages=args.messages)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
