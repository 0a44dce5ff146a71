"""F6, crash and recovery (not a test): nothing lost, duplicates reported, time to recover ÷ lease.

    .venv/bin/python bench/crash.py [--with-postgres-restart] [--json out.json]

Database ``wa_bench_crash``; the workers are subprocesses with the production settings and a short
lease (``OUTBOX_LEASE_SECONDS`` and the webhook lease set to ``LEASE`` seconds) so recovery fits in a
benchmark. A worker here is a loop that runs the drain (or processes pending webhook events and runs the
lease sweep) and, on a database error, closes its connection and starts again: what a Celery task plus
beat's next tick do.

Scenarios (each: ``ROWS`` rows or events, the fault injected once about a third of the way through):
- ``drain_sigkill``: kill -9 the drain worker; a second worker is already running beside it.
- ``processing_sigkill``: kill -9 a webhook worker mid-processing (each event has an injected 20 ms step
  inside its transaction); a second worker sweeps and processes.
- ``drain_backends_terminated``: ``pg_terminate_backend`` on every connection to the bench database.
- ``drain_postgres_restart`` (only with ``--with-postgres-restart``): ``pg_ctlcluster … restart`` of the
  shared cluster mid-drain. Other people's tests share it: kept last and short, and opt-in.

Reported per scenario: lost (must be 0), duplicate provider calls and whether each carried the same
message, time from the fault to the last row done, and that time ÷ the lease.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import lab

LEASE = 3
ROWS = 300
SLOW = 0.02


def _env() -> dict[str, str]:
    # No Redis: in-process buckets (rate limits off) and no broker; the workers here are plain loops.
    return lab.production_environment(
        database="wa_bench_crash", redis_db=None, OUTBOX_LEASE_SECONDS=str(LEASE), OUTBOX_AUTO_DRAIN="false"
    )


# ---------------------------------------------------------------- the worker loops (subprocesses)


def drain_loop() -> None:
    import django

    django.setup()
    from django.db import connection

    from outbox.services import outbox_drain

    while True:
        try:
            outbox_drain(batch_size=20)
            time.sleep(0.05)
        except Exception:
            connection.close()  # the next attempt reconnects
            time.sleep(0.2)


def webhook_loop() -> None:
    from datetime import timedelta

    import django

    django.setup()
    from django.db import connection

    from webhooks import processor
    from webhooks.models import WebhookEvent

    processor.LEASE = timedelta(seconds=LEASE)
    real_apply = processor.inbound_events_apply

    def slow_apply(**kwargs: Any) -> Any:
        time.sleep(SLOW)  # the injected slow step, inside the event's transaction
        return real_apply(**kwargs)

    processor.inbound_events_apply = slow_apply
    while True:
        try:
            _recovered, due = processor.webhook_events_sweep()
            pending = list(
                WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING)
                .order_by("id")
                .values_list("pk", flat=True)[:20]
            )
            for event_id in dict.fromkeys([*due, *pending]):
                processor.webhook_event_process(event_id=event_id)
            time.sleep(0.05)
        except Exception:
            connection.close()
            time.sleep(0.2)


def _spawn(kind: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = lab.log_file("crash-workers")
    return subprocess.Popen(
        [sys.executable, __file__, f"--{kind}"], cwd=lab.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )


# ---------------------------------------------------------------- scenarios


def _outbox_scenario(name: str, fault: str, fake: Any) -> dict[str, Any]:
    from django.db import connection

    from outbox.models import OutboxMessage
    from tenants.models import Workspace

    fake.reset()
    fake.add_rule("slow", delay=SLOW, times=-1)
    workspace = Workspace.objects.create(slug=f"crash-{name}-{time.time_ns()}", name=name, max_channels=10)
    channel = lab.whapi_channel(workspace, name=name, base_url=fake.url, rate=1e6, token=f"{name}-token")
    chats = lab.open_chats(workspace, channel, ROWS, f"4917{len(name)}")
    texts = lab.queue_messages(channel, chats, ROWS, name)
    connection.close()
    env = _env()
    workers = [_spawn("drain-loop", env), _spawn("drain-loop", env)]
    try:
        lab.wait_until(lambda: len(fake.sends()) >= ROWS // 3, timeout=60, step=0.01)
        fault_at = time.time()
        if fault == "sigkill":
            os.kill(workers[0].pid, signal.SIGKILL)
        elif fault == "terminate":
            _terminate_backends()
        elif fault == "restart":
            _restart_postgres()
        done = lambda: OutboxMessage.objects.filter(channel=channel, status="sent").count() == ROWS  # noqa: E731
        recovered = _wait_db(done, timeout=LEASE * 10 + 30)
        recovered_at = time.time()
    finally:
        lab.stop(workers)
    sent = Counter(r.json["body"] for r in fake.sends() if isinstance(r.json, dict) and r.response_status)
    bodies_by_text: dict[str, set[str]] = {}
    for r in fake.sends():
        if isinstance(r.json, dict):
            bodies_by_text.setdefault(r.json["body"], set()).add(json.dumps(r.json, sort_keys=True))
    duplicates = {text: n for text, n in sent.items() if n > 1}
    statuses = Counter(OutboxMessage.objects.filter(channel=channel).values_list("status", flat=True))
    return {
        "fault": fault,
        "rows": ROWS,
        "recovered": recovered,
        "lost": sum(1 for text in texts if text not in sent),
        "rows_not_sent": ROWS - statuses.get("sent", 0),
        "duplicate_provider_calls": sum(n - 1 for n in duplicates.values()),
        "duplicates_carry_same_message": all(len(bodies_by_text[text]) == 1 for text in duplicates),
        "recover_s": round(recovered_at - fault_at, 2),
        "lease_s": LEASE,
        "recover_over_lease": round((recovered_at - fault_at) / LEASE, 2),
    }


def _processing_scenario() -> dict[str, Any]:
    from django.db import connection
    from django.utils import timezone

    from inbox.models import Message
    from tenants.models import Workspace
    from webhooks.models import WebhookEvent

    workspace = Workspace.objects.create(slug=f"crash-wh-{time.time_ns()}", name="crash wh", max_channels=10)
    channel = lab.whapi_channel(workspace, name="crash-wh", base_url="http://127.0.0.1:9", rate=1, token="x")
    run = time.time_ns()
    ids = [f"crash{run}-{n}" for n in range(ROWS)]
    now = timezone.now()
    WebhookEvent.objects.bulk_create(
        [
            WebhookEvent(
                provider="whapi",
                channel=channel,
                raw_body=_inbound_body(wa_id, n),
                signature_valid=True,
                event_type="messages.post",
                next_attempt_at=now,
            )
            for n, wa_id in enumerate(ids)
        ]
    )
    connection.close()
    env = _env()
    workers = [_spawn("webhook-loop", env), _spawn("webhook-loop", env)]
    processed = lambda: WebhookEvent.objects.filter(channel=channel, status="processed").count()  # noqa: E731
    try:
        lab.wait_until(lambda: _safe(processed) >= ROWS // 3, timeout=60, step=0.01)
        fault_at = time.time()
        os.kill(workers[0].pid, signal.SIGKILL)
        recovered = _wait_db(lambda: processed() == ROWS, timeout=LEASE * 10 + 30)
        recovered_at = time.time()
    finally:
        lab.stop(workers)
    counts = Counter(Message.objects.filter(channel=channel).values_list("wa_message_id", flat=True))
    return {
        "fault": "sigkill",
        "events": ROWS,
        "recovered": recovered,
        "lost": sum(1 for wa_id in ids if counts.get(wa_id, 0) == 0),
        "duplicate_messages": sum(n - 1 for n in counts.values() if n > 1),
        "recover_s": round(recovered_at - fault_at, 2),
        "lease_s": LEASE,
        "recover_over_lease": round((recovered_at - fault_at) / LEASE, 2),
    }


def _inbound_body(wa_id: str, n: int) -> bytes:
    chat = 4917700000000 + n % 50
    return json.dumps(
        {
            "messages": [
                {"id": wa_id, "from_me": False, "type": "text", "chat_id": f"{chat}@s.whatsapp.net",
                 "timestamp": int(time.time()), "text": {"body": f"crash {n}"}, "from": str(chat)}
            ],
            "event": {"type": "messages", "event": "post"},
        }
    ).encode()  # fmt: skip


def _safe(fn: Any) -> Any:
    from django.db import connection

    try:
        return fn()
    except Exception:
        connection.close()
        return 0


def _wait_db(condition: Any, timeout: float) -> bool:
    """Poll a database condition, reconnecting when the database is going through the fault too."""
    return lab.wait_until(lambda: bool(_safe(condition)), timeout=timeout, step=0.05)


def _terminate_backends() -> None:
    import psycopg

    url = _env()["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def _restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True, timeout=60
    )


def run(*, with_postgres_restart: bool = False) -> dict[str, Any]:
    env = _env()
    lab.migrate(env)
    lab.use_environment(env)
    import django

    django.setup()
    from channels_app.providers.fake_server import FakeProvider

    fake = FakeProvider().start()
    results: dict[str, Any] = {}
    try:
        results["drain_sigkill"] = _outbox_scenario("drainkill", "sigkill", fake)
        results["processing_sigkill"] = _processing_scenario()
        results["drain_backends_terminated"] = _outbox_scenario("terminate", "terminate", fake)
        if with_postgres_restart:
            results["drain_postgres_restart"] = _outbox_scenario("pgrestart", "restart", fake)
    finally:
        fake.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drain-loop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--webhook-loop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--with-postgres-restart", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.drain_loop:
        drain_loop()
        return
    if args.webhook_loop:
        webhook_loop()
        return
    result = run(with_postgres_restart=args.with_postgres_restart)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
