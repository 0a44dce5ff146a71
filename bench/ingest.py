"""Webhook ingest benchmark (not a test): events/s acknowledged and processed, beside raw psycopg.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wa_bench_ingest REDIS_URL=redis://127.0.0.1:6379/1 \\
        .venv/bin/python bench/ingest.py [--events 5000] [--clients 32] [--web-workers 2] [--celery 2]

1. Starts the production shape: ``uvicorn config.asgi:application`` (DEBUG off, SECRET_KEY/ENCRYPTION_KEY
   from the environment, HTTPS=false, Postgres, Redis broker) and a Celery worker processing webhooks.
2. ``--clients`` concurrent keep-alive HTTP clients POST ``--events`` signed Whapi webhooks (one inbound
   message each, spread over 200 chats) to ``/webhooks/whapi/<channel>/``. Measures events/s answered 200
   and the p50/p99 ack latency; then waits until every stored event is processed and reports the
   processing lag (last processed − last acknowledged, and per-event processed_at − received_at), and
   the CPU each kind of process used per event meanwhile (web, Celery, Postgres, Redis, the load).
3. In the same run, raw psycopg with the same concurrency does the acknowledgement's writes (look up the
   channel, read its token row, insert the raw event, commit) into a copy of the table. Prints both rates
   and the ratio.

The database named in DATABASE_URL is created if missing and migrated; its webhook/inbox rows are emptied.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import lab  # noqa: E402  (needs the project on the path)

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/wa_bench_ingest")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
os.environ.setdefault("SECRET_KEY", "bench-secret-key-" + "x" * 40)
os.environ.setdefault("ENCRYPTION_KEY", "bench-encryption-key")
os.environ["DEBUG"] = "false"
os.environ["HTTPS"] = "false"
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"

SECRET = "bench-webhook-secret-" + secrets.token_hex(8)
CHATS = 200


def body_for(n: int, run: str) -> bytes:
    chat = 4915550000000 + n % CHATS
    return json.dumps(
        {
            "messages": [
                {
                    "id": f"bench{run}-{n:07d}-abcd",
                    "from_me": False,
                    "type": "text",
                    "chat_id": f"{chat}@s.whatsapp.net",
                    "timestamp": int(time.time()),
                    "source": "mobile",
                    "text": {"body": f"benchmark message {n}"},
                    "from": str(chat),
                    "from_name": f"Customer {n % CHATS}",
                }
            ],
            "event": {"type": "messages", "event": "post"},
            "channel_id": "",
        },
        separators=(",", ":"),
    ).encode()


# ---------------------------------------------------------------- the HTTP load (asyncio, keep-alive)


async def _client(
    host: str, port: int, path: str, bodies: list[bytes], latencies: list[float], codes: dict
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for body in bodies:
            request = (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {SECRET}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            code = int(status_line.split()[1])
            codes[code] = codes.get(code, 0) + 1
    finally:
        writer.close()


async def http_load(
    port: int, path: str, bodies: list[bytes], clients: int
) -> tuple[float, list[float], dict]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    shards = [bodies[i::clients] for i in range(clients)]
    started = time.perf_counter()
    await asyncio.gather(*(_client("127.0.0.1", port, path, shard, latencies, codes) for shard in shards))
    return time.perf_counter() - started, latencies, codes


# ---------------------------------------------------------------- raw psycopg, same writes


def raw_psycopg(url: str, channel_id: str, bodies: list[bytes], clients: int) -> tuple[float, list[float]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw_webhookevent")
        conn.execute("CREATE TABLE bench_raw_webhookevent (LIKE webhooks_webhookevent INCLUDING ALL)")
    latencies: list[float] = []
    lock = threading.Lock()
    shards = [bodies[i::clients] for i in range(clients)]

    def work(shard: list[bytes]) -> None:
        with psycopg.connect(url) as conn:
            mine = []
            for body in shard:
                started = time.perf_counter()
                with conn.transaction():
                    conn.execute(
                        "SELECT c.id, w.status FROM channels_app_channel c JOIN tenants_workspace w "
                        "ON w.id = c.workspace_id WHERE c.id = %s AND c.provider = 'whapi'",
                        (channel_id,),
                    ).fetchone()
                    conn.execute(
                        "SELECT encrypted_value FROM channels_app_channeltoken WHERE channel_id = %s "
                        "AND token_type = 'webhook_secret'",
                        (channel_id,),
                    ).fetchone()
                    conn.execute(
                        "INSERT INTO bench_raw_webhookevent (provider, channel_id, headers, raw_body, "
                        "signature_valid, event_type, status, attempts, last_error, correlation_id, "
                        "received_at, next_attempt_at) VALUES ('whapi', %s, %s, %s, true, 'messages.post', "
                        "'pending', 0, '', %s, now(), now()) RETURNING id",
                        (
                            channel_id,
                            json.dumps({"content-type": "application/json"}),
                            body,
                            secrets.token_hex(16),
                        ),
                    ).fetchone()
                mine.append(time.perf_counter() - started)
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=work, args=(shard,)) for shard in shards]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE bench_raw_webhookevent")
    return elapsed, latencies


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--celery", type=int, default=2, help="Celery worker concurrency")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    url = os.environ["DATABASE_URL"]
    lab.ensure_database(url)
    env = dict(os.environ)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )

    import django

    django.setup()
    from django.db import connection
    from django.db.models import Count

    from channels_app.services import channel_create
    from tenants.models import Workspace
    from webhooks.models import WebhookEvent

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE webhooks_webhookevent, inbox_messageevent, inbox_messagereaction, inbox_deferredstatus, "
            "inbox_message, inbox_chat, inbox_contact CASCADE"
        )
    workspace, _ = Workspace.objects.get_or_create(slug="bench-ingest", defaults={"name": "Bench ingest"})
    workspace.channels.all().delete()
    channel = channel_create(
        workspace=workspace,
        provider="whapi",
        display_name="Bench",
        phone_number="+15550001111",
        tokens={"webhook_secret": SECRET, "api_token": "unused"},
    )
    connection.close()

    run = secrets.token_hex(3)
    bodies = [body_for(n, run) for n in range(args.events)]
    path = f"/webhooks/whapi/{channel.pk}/"
    bin_dir = Path(sys.executable).parent
    # Under ASGI every request runs its sync code in a fresh thread: persistent connections (CONN_MAX_AGE)
    # would be left behind by each thread, so the web processes use the connection pool (DB_POOL_MAX_SIZE).
    web_env = {**env, "DB_CONN_MAX_AGE": "0", "DB_POOL_MAX_SIZE": os.environ.get("DB_POOL_MAX_SIZE", "10")}
    web = subprocess.Popen(
        [
            str(bin_dir / "uvicorn"),
            "config.asgi:application",
            "--port",
            str(args.port),
            "--workers",
            str(args.web_workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=web_env,
    )
    worker = subprocess.Popen(
        [
            str(bin_dir / "celery"),
            "-A",
            "config",
            "worker",
            "-c",
            str(args.celery),
            "-l",
            "warning",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        lab.wait_port(args.port)
        # Warm-up: connections, token key derivation, worker start.
        asyncio.run(http_load(args.port, path, [body_for(n, run + "w") for n in range(200)], 8))
        time.sleep(2)
        processes = {"web": [web.pid], "celery": [worker.pid]}
        cpu_before = lab.cpu_seconds_by_kind(processes)
        elapsed, latencies, codes = asyncio.run(http_load(args.port, path, bodies, args.clients))
        acked_at = time.time()
        if set(codes) != {200}:
            print("unexpected answers:", codes)
        deadline = time.time() + 300
        processed = 0
        while time.time() < deadline:
            processed = WebhookEvent.objects.filter(channel=channel, status="processed").count()
            if processed >= args.events + 200:
                break
            time.sleep(0.1)
        all_done_at = time.time()
        cpu_after = lab.cpu_seconds_by_kind(processes)
        lags = [
            (done - received).total_seconds()
            for received, done in WebhookEvent.objects.filter(channel=channel, status="processed")
            .exclude(processed_at=None)
            .values_list("received_at", "processed_at")
            if done is not None
        ]
        other = dict(
            WebhookEvent.objects.filter(channel=channel)
            .exclude(status="processed")
            .values("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        connection.close()
    finally:
        web.terminate()
        worker.terminate()
        web.wait(timeout=20)
        worker.wait(timeout=20)

    raw_elapsed, raw_latencies = raw_psycopg(url, str(channel.pk), bodies, args.clients)

    app_rate = args.events / elapsed
    raw_rate = args.events / raw_elapsed
    result: dict[str, Any] = {
        "events": args.events,
        "clients": args.clients,
        "web_workers": args.web_workers,
        "celery_concurrency": args.celery,
        "cpus": os.cpu_count(),
        "app_acked_per_s": round(app_rate, 1),
        "app_ack_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "app_ack_p99_ms": round(lab.pct(latencies, 99) * 1000, 2),
        "answers": codes,
        "processed": processed,
        "processing_lag_after_last_ack_s": round(max(0.0, all_done_at - acked_at), 2),
        "per_event_lag_p50_s": round(statistics.median(lags), 3) if lags else None,
        "per_event_lag_p99_s": round(lab.pct(lags, 99), 3) if lags else None,
        "processed_per_s": round(processed / max(1e-9, (all_done_at - acked_at) + elapsed), 1),
        # From the first POST until every event was processed; "bench" is the load generator (this process).
        "cpu_ms_per_event": {
            kind: round((cpu_after[kind] - cpu_before[kind]) * 1000 / args.events, 3) for kind in cpu_after
        },
        "raw_psycopg_per_s": round(raw_rate, 1),
        "raw_p50_ms": round(statistics.median(raw_latencies) * 1000, 2),
        "raw_p99_ms": round(lab.pct(raw_latencies, 99) * 1000, 2),
        "ratio_app_to_raw": round(app_rate / raw_rate, 3),
    }
    if other:
        result["unprocessed_sample"] = other
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
