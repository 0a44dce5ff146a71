"""Outbox benchmark (not a test): drain throughput and commit-to-provider latency.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wa_bench .venv/bin/python bench/outbox.py

1. Throughput: N chat messages queued over many chats, drained by W worker processes through the real
   outbox (claim, HTTP to the fake provider in its own process, record through the inbox) with rate
   limits off; beside it, a raw psycopg claim-and-ack loop (same claim statement shape, no HTTP, no
   inbox writes) with W processes on an identical copy of the table in the same Postgres, same run.
   Prints both rates and their ratio.
2. Latency: messages sent one by one through ``message_send``; for each, the time from its commit to
   the fake provider receiving the call. Once with the after-commit kick waking the drainer, once with
   the drainer only polling every second (what beat alone gives). Prints p50/p99 for both.

The database named in DATABASE_URL is created if missing and migrated; its outbox tables are emptied.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import lab  # noqa: E402  (needs the project on the path)


def configure_environment() -> None:
    """Run as a script (not when imported by bench/run_all.py, which sets its own environment)."""
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/wa_bench")
    # Production shape: Redis channel layer (each sent message is pushed to browsers). Rate limits are
    # off through the channel's infinite rate (the bucket is not consulted), not by dropping Redis.
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/8")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # The fake provider answers on loopback in about a millisecond, so a few calls in flight per drain keep
    # it busy, and more threads only take turns at the GIL: alternating runs, 4 against the default 8,
    # gave 1.50/1.40 against 1.57/1.61 ms of drain CPU per message. In production, a provider a hundred
    # milliseconds away needs the default 8 (or more) in flight per drain to keep a number at its rate.
    os.environ.setdefault("OUTBOX_SEND_CONCURRENCY", "4")


RAW_CLAIM = """
WITH picked AS (
    SELECT id FROM bench_raw_outbox
    WHERE status = 'queued' AND next_attempt_at <= now()
    ORDER BY priority DESC, created_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE bench_raw_outbox u SET status = 'sending', attempts = u.attempts + 1,
    lease_expires_at = now() + interval '90 seconds', updated_at = now()
FROM picked WHERE u.id = picked.id
RETURNING u.id
"""
# One UPDATE per batch, as the drain records a batch's successes (outbox_record_successes).
RAW_ACK = (
    "UPDATE bench_raw_outbox SET status = 'sent', sent_at = now(), updated_at = now() "
    "WHERE id = ANY(%s) AND status = 'sending'"
)


def setup_django() -> None:
    import django

    django.setup()


# ---------------------------------------------------------------- workers (run as subprocesses)


def drain_worker(batch_size: int) -> None:
    setup_django()
    from outbox.models import OutboxMessage
    from outbox.services import outbox_drain

    OutboxMessage.objects.exists()  # connect before the clock starts
    wait_for_go()
    idle = 0
    while idle < 3:
        report = outbox_drain(batch_size=batch_size)
        if report.claimed == 0:
            if not OutboxMessage.objects.filter(status__in=["queued", "sending"]).exists():
                idle += 1
            time.sleep(0.005)


def drain_claim_sql() -> str:
    """The drain's own claim statement (outbox/services/claim.py CLAIM_SQL), aimed at the copy of the table. Read
    from the source, not imported: importing it would start Django in the raw workers."""
    import ast

    tree = ast.parse((ROOT / "outbox" / "services" / "claim.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CLAIM_SQL":
            assert isinstance(node.value, ast.Constant)
            return str(node.value.value).replace("outbox_outboxmessage", "bench_raw_outbox")
    raise SystemExit("CLAIM_SQL not found in outbox/services/claim.py")


def claim_and_ack_loop(batch_size: int, claim: str, each_batch: Callable[[list[int]], None]) -> None:
    """Claim a batch in one statement, hand its ids to ``each_batch``, ack it in one statement, until
    nothing is left: the raw loop every baseline below shares."""
    from datetime import UTC, datetime, timedelta

    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        wait_for_go()
        while True:
            now = datetime.now(UTC)
            params = {"limit": batch_size, "now": now, "lease": now + timedelta(seconds=90)}
            with conn.transaction():
                ids = [r[0] for r in conn.execute(claim, params).fetchall()]
            if not ids:
                return
            each_batch(ids)
            conn.execute(RAW_ACK, (ids,))


def raw_worker(batch_size: int, same_claim: bool) -> None:
    """Claim-and-ack with nothing else: the simple claim (no per-chat order or paused-number checks),
    or with ``same_claim`` the drain's own claim statement."""
    claim_and_ack_loop(batch_size, drain_claim_sql() if same_claim else RAW_CLAIM, lambda ids: None)


def requests_floor_worker(batch_size: int, fake_url: str) -> None:
    """The floor of any drain that sends through ``requests`` (issue 4's transport library): the raw
    claim, one call per row through the transports' own lean call (``JsonPost``), the raw ack; no
    Django, no threads, no bookkeeping."""
    from channels_app.providers.sending import JsonPost

    post = JsonPost(f"{fake_url}/messages/text", {"Authorization": "Bearer bench-token"})

    def send(ids: list[int]) -> None:
        for row_id in ids:
            answer = post({"to": f"{row_id}@s.whatsapp.net", "body": f"floor {row_id}"}, timeout=(3, 20))
            if answer.status_code >= 300:
                raise SystemExit(f"requests floor: provider answered {answer.status_code}")
            answer.json()

    claim_and_ack_loop(batch_size, RAW_CLAIM, send)


def floor_worker(batch_size: int, fake_url: str) -> None:
    """The floor of any drain that makes one HTTP call per message: the raw claim, then one minimal POST
    per claimed row to the same fake provider (a raw keep-alive socket, the batch's requests pipelined:
    no HTTP library, no threads, no bookkeeping), then the raw batched ack. A drain cannot beat this on
    the same machine, so ``floor ÷ raw claim+ack`` bounds the ratio any drain can reach."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(fake_url)
    sock = socket.create_connection((parsed.hostname, parsed.port))
    reader = sock.makefile("rb")

    def request(row_id: int) -> bytes:
        body = json.dumps({"to": f"{row_id}@s.whatsapp.net", "body": f"floor {row_id}"}).encode()
        head = (
            f"POST /messages/text HTTP/1.1\r\nHost: {parsed.netloc}\r\nAuthorization: Bearer bench-token\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def read_answer() -> None:
        status = reader.readline()
        if not status.startswith(b"HTTP/1.1 2"):
            raise SystemExit(f"floor: provider answered {status!r}")
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        reader.read(length)

    def send(ids: list[int]) -> None:
        sock.sendall(b"".join(request(row_id) for row_id in ids))
        for _ in ids:
            read_answer()

    claim_and_ack_loop(batch_size, RAW_CLAIM, send)


def wait_for_go() -> None:
    """Workers start (Python, Django, connections) before the clock does: the parent creates GO_FILE.
    At exit each worker leaves the CPU it used after the go (start-up excluded) for the parent."""
    import atexit

    go = Path(os.environ["BENCH_GO_FILE"])
    Path(str(go) + f".ready.{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.002)
    started = time.process_time()
    atexit.register(
        lambda: Path(str(go) + f".cpu.{os.getpid()}").write_text(str(time.process_time() - started))
    )


def run_workers(kind: str, workers: int, batch_size: int, *extra: str) -> tuple[float, float]:
    """(wall seconds from the go signal until every worker exited, the workers' CPU seconds after the go).
    CPU per message is the steadier figure on a shared machine: it moves less with what else runs."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        go = Path(folder) / "go"
        env = {**os.environ, "BENCH_GO_FILE": str(go)}
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, f"--{kind}-worker", "--batch", str(batch_size), *extra],
                cwd=ROOT,
                env=env,
            )
            for _ in range(workers)
        ]
        while len(list(Path(folder).glob("go.ready.*"))) < workers:
            if any(proc.poll() is not None for proc in procs):
                raise SystemExit(f"{kind} worker failed to start")
            time.sleep(0.01)
        started = time.perf_counter()
        go.touch()
        for proc in procs:
            if proc.wait() != 0:
                raise SystemExit(f"{kind} worker failed")
        elapsed = time.perf_counter() - started
        return elapsed, sum(float(path.read_text()) for path in Path(folder).glob("go.cpu.*"))


# ---------------------------------------------------------------- scenario


def fixtures(fake_url: str, chats: int) -> tuple[Any, list[Any]]:
    from datetime import timedelta

    from django.utils import timezone

    from channels_app.services import channel_create
    from inbox.models import Chat
    from tenants.models import Workspace

    workspace, _ = Workspace.objects.get_or_create(
        slug="bench", defaults={"name": "Bench", "max_channels": 1000}
    )
    channel = channel_create(
        workspace=workspace,
        provider="whapi",
        display_name=f"bench {time.time()}",
        phone_number="+15550000000",
        api_base_url=fake_url,
        rate_limit_per_second=float("inf"),
        tokens={"api_token": "bench-token"},
    )
    window = timezone.now() + timedelta(hours=23)
    chat_rows = Chat.objects.bulk_create(
        [
            Chat(
                workspace=workspace,
                channel=channel,
                wa_chat_id=f"1555{n:07d}@s.whatsapp.net",
                window_expires_at=window,
            )
            for n in range(chats)
        ]
    )
    return channel, chat_rows


def queue_messages(channel: Any, chats: list[Any], count: int, prefix: str) -> None:
    """Bulk-queue rows exactly as message_send writes them (the enqueue cost is not what is measured)."""
    lab.queue_messages(channel, chats, count, prefix)


def fake_requests(fake_url: str) -> list[dict[str, Any]]:
    import requests

    return requests.get(f"{fake_url}/_fake/requests", timeout=60).json()


def reset_fake(fake_url: str) -> None:
    import requests

    requests.post(f"{fake_url}/_fake/reset", json={}, timeout=10)


def throughput(
    fake_url: str, count: int, workers: int, batch_size: int
) -> tuple[float, float, float, float, float]:
    """(drain msg/s, raw simple claim+ack rows/s, raw claim+ack with the drain's claim statement rows/s,
    the one-call-per-message floor msg/s, the same floor through requests msg/s)."""
    from django.db import connection

    from outbox.models import OutboxMessage

    channel, chats = fixtures(fake_url, chats=max(200, count // 10))
    queue_messages(channel, chats, count, "tp")

    def copy_table() -> None:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_raw_outbox")
            cursor.execute("CREATE TABLE bench_raw_outbox (LIKE outbox_outboxmessage INCLUDING ALL)")
            cursor.execute(
                "INSERT INTO bench_raw_outbox SELECT * FROM outbox_outboxmessage WHERE channel_id = %s",
                [channel.pk],
            )
            # The queue as the drain found it: every row queued, no attempt made.
            cursor.execute("UPDATE bench_raw_outbox SET status = 'queued', attempts = 0, sent_at = NULL")
            cursor.execute("ANALYZE bench_raw_outbox")
        connection.close()

    def raw(*extra: str, kind: str = "raw", workers: int = workers) -> float:
        copy_table()
        elapsed, _cpu = run_workers(kind, workers, batch_size, *extra)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM bench_raw_outbox WHERE status = 'sent'")
            assert cursor.fetchone()[0] == count
            cursor.execute("DROP TABLE bench_raw_outbox")
        return count / elapsed

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outbox_outboxmessage")
    connection.close()
    reset_fake(fake_url)
    ours, drain_cpu = run_workers("drain", workers, batch_size)
    print(f"  drain processes' CPU: {drain_cpu / count * 1000:.2f} ms per message")
    sent = OutboxMessage.objects.filter(channel=channel, status="sent").count()
    received = [r for r in fake_requests(fake_url) if r["provider"] == "whapi"]
    assert sent == count, f"only {sent} of {count} rows sent"
    assert len(received) == count, f"provider got {len(received)} calls for {count} rows"
    simple = raw()
    same = raw("--same-claim")
    floor = raw("--fake-url", fake_url, kind="floor")
    # Calls through requests are latency-bound one at a time: enough processes to keep both cores busy.
    requests_floor = raw("--fake-url", fake_url, kind="requests-floor", workers=max(workers, 4))
    return count / ours, simple, same, floor, requests_floor


def latency(fake_url: str, count: int, kick: bool) -> list[float]:
    """Seconds from each send's commit to the provider receiving it."""
    from django.conf import settings
    from django.db import transaction

    from inbox.services import message_send
    from outbox import tasks

    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.OUTBOX_AUTO_DRAIN = kick
    _channel, chats = fixtures(fake_url, chats=count)
    drainer = tasks.EmbeddedDrainer(interval=1.0)  # polling once a second is what beat alone gives
    tasks.embedded_drainer = drainer
    if not kick:
        drainer.wake()  # start polling; no kicks after this
    reset_fake(fake_url)
    committed: dict[str, float] = {}
    label = "kick" if kick else "beat"
    try:
        for n in range(count):
            text = f"lat-{label}-{n}"
            with transaction.atomic(durable=True):
                message_send(
                    chat=chats[n], sender=None, client_message_id=f"{label}-{time.time()}-{n}", text=text
                )
            committed[text] = time.time()
            time.sleep(0.02 if kick else 0.137)  # spread the sends over the polling interval
        deadline = time.time() + 30
        while time.time() < deadline:
            received = {r["json"]["body"]: r["received_at"] for r in fake_requests(fake_url) if r.get("json")}
            if all(text in received for text in committed):
                break
            time.sleep(0.2)
    finally:
        drainer.stop()
    return [max(0.0, received[text] - at) for text, at in committed.items()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drain-worker", action="store_true")
    parser.add_argument("--raw-worker", action="store_true")
    parser.add_argument("--floor-worker", action="store_true")
    parser.add_argument("--requests-floor-worker", action="store_true")
    parser.add_argument("--fake-url", help="floor worker: the fake provider")
    parser.add_argument("--same-claim", action="store_true", help="raw worker: the drain's claim statement")
    parser.add_argument("--batch", default="100,200", help="claim size(s), comma-separated: each is measured")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument(
        "--workers", default="2,4", help="drain process count(s), comma-separated: each is measured"
    )
    parser.add_argument("--latency-messages", type=int, default=100)
    parser.add_argument("--skip-latency", action="store_true", help="throughput only")
    parser.add_argument("--json", type=Path, help="also write the result object to this file")
    args = parser.parse_args()
    configure_environment()
    if args.drain_worker:
        drain_worker(int(args.batch))
        return
    if args.raw_worker:
        raw_worker(int(args.batch), args.same_claim)
        return
    if args.floor_worker:
        floor_worker(int(args.batch), args.fake_url)
        return
    if args.requests_floor_worker:
        requests_floor_worker(int(args.batch), args.fake_url)
        return

    lab.ensure_database(os.environ["DATABASE_URL"])
    setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from outbox.models import OutboxMessage

    OutboxMessage.objects.all().delete()

    port = lab.free_port()  # other benchmarks or tests may hold a fixed one
    fake = subprocess.Popen(
        [sys.executable, "-m", "channels_app.providers.fake_server", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    fake_url = f"http://127.0.0.1:{port}"
    try:
        import requests

        for _ in range(100):
            try:
                requests.get(f"{fake_url}/_fake/requests", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.05)
        # Each shape (processes × claim size) against its own raw loop of the same shape; the best drain
        # rate is the figure, every shape is kept in "sweep".
        sweep: list[dict[str, Any]] = []
        for workers in [int(w) for w in str(args.workers).split(",")]:
            for batch in [int(b) for b in str(args.batch).split(",")]:
                measured = throughput(fake_url, args.messages, workers, batch)
                sweep.append({"workers": workers, "batch": batch, "per_s": measured})
                print(
                    f"  {workers} processes, batch {batch}: drain {measured[0]:.1f} msg/s, raw {measured[1]:.1f}"
                )
        best = max(sweep, key=lambda shape: shape["per_s"][0])
        ours, raw, raw_same, floor, requests_floor = (float(x) for x in best["per_s"])
        args.workers, args.batch = best["workers"], best["batch"]
        if not args.skip_latency:
            kick = latency(fake_url, args.latency_messages, kick=True)
            beat = latency(fake_url, args.latency_messages, kick=False)
    finally:
        fake.terminate()
        fake.wait()

    result: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "messages": args.messages,
        "send_concurrency": int(os.environ["OUTBOX_SEND_CONCURRENCY"]),
        "workers": args.workers,
        "batch": args.batch,
        "outbox_drain_per_s": round(ours, 1),
        "raw_claim_ack_per_s": round(raw, 1),
        "ratio": round(ours / raw, 3),
        "raw_same_claim_per_s": round(raw_same, 1),
        "ratio_to_same_claim": round(ours / raw_same, 3),
        # The fastest any drain making one HTTP call per message could go here, and the ratio it would
        # reach: the bound on "ratio" that this machine and the fake provider set.
        "floor_one_call_per_message_per_s": round(floor, 1),
        "floor_ratio_to_raw": round(floor / raw, 3),
        "ratio_to_floor": round(ours / floor, 3),
        # The same floor with each call made through requests (the transports' library, issue 4).
        "requests_floor_per_s": round(requests_floor, 1),
        "requests_floor_ratio_to_raw": round(requests_floor / raw, 3),
        "sweep": [
            {
                "workers": shape["workers"],
                "batch": shape["batch"],
                "outbox_drain_per_s": round(shape["per_s"][0], 1),
                "raw_claim_ack_per_s": round(shape["per_s"][1], 1),
                "ratio": round(shape["per_s"][0] / shape["per_s"][1], 3),
            }
            for shape in sweep
        ],
    }
    print(
        f"outbox drain to fake provider : {ours:8.1f} msg/s  ({args.workers} worker processes, batch {args.batch})"
    )
    print(f"raw psycopg claim-and-ack     : {raw:8.1f} rows/s (same table shape, same Postgres, same run)")
    print(f"ratio                         : {ours / raw:8.3f}")
    print(f"raw, the drain's claim SQL    : {raw_same:8.1f} rows/s (ratio {ours / raw_same:.3f})")
    print(
        f"floor, raw + 1 HTTP call/row  : {floor:8.1f} msg/s (its own ratio to raw {floor / raw:.3f}; "
        f"the drain ÷ floor {ours / floor:.3f})"
    )
    print(
        f"floor, calls through requests : {requests_floor:8.1f} msg/s (its own ratio to raw "
        f"{requests_floor / raw:.3f}; the drain ÷ it {ours / requests_floor:.3f})"
    )
    if args.skip_latency:
        print(json.dumps(result))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return
    result |= {
        "latency_kick_ms": {
            "p50": round(lab.pct(kick, 50) * 1000, 1),
            "p99": round(lab.pct(kick, 99) * 1000, 1),
            "mean": round(statistics.mean(kick) * 1000, 1),
        },
        "latency_beat_only_ms": {
            "p50": round(lab.pct(beat, 50) * 1000, 1),
            "p99": round(lab.pct(beat, 99) * 1000, 1),
            "mean": round(statistics.mean(beat) * 1000, 1),
        },
    }
    print(
        f"commit→provider, kick         : p50 {result['latency_kick_ms']['p50']} ms, p99 {result['latency_kick_ms']['p99']} ms"
    )
    print(
        f"commit→provider, beat alone   : p50 {result['latency_beat_only_ms']['p50']} ms, "
        f"p99 {result['latency_beat_only_ms']['p99']} ms"
    )
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
