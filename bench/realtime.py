"""Realtime inbox benchmark (not a test): webhook POST → websocket frame latency, and chat-list server time.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/wa_bench_realtime REDIS_URL=redis://127.0.0.1:6379/2 \\
        .venv/bin/python bench/realtime.py [--samples 60] [--sockets 100] [--chats 100000] [--messages 1000000]

Part 1, latency (production shape: ``uvicorn config.asgi:application`` with DEBUG off, the Redis channel
layer, and a Celery worker processing webhooks after they are acknowledged):
1. A workspace, an agent, a Whapi number and a chat are created; the agent's session cookie is minted.
2. Idle: one websocket (/ws/inbox/) opens the chat. Each sample POSTs a signed inbound-message webhook with
   a unique text and times until a frame carrying that text reaches the socket.
3. Loaded: 100 sockets of the same workspace open the same chat (so every event fans out to all of them);
   the same measurement, from the POST to the frame on the measuring socket and to the last of the 100.

Part 2, chat list at scale: 100,000 chats and 1,000,000 messages are bulk-inserted with
``INSERT … SELECT generate_series`` (server side, no round trips), the tables analysed, then the
``chat_list`` selector, ``chat_counts``, and the whole ``GET /inbox/`` and htmx list-page responses are
timed in-process (server time: no network, no browser).

The database named in DATABASE_URL is created if missing and migrated; its inbox rows are emptied.
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
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import lab  # noqa: E402  (needs the project on the path)

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/wa_bench_realtime")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/2")
os.environ.setdefault("SECRET_KEY", "bench-secret-key-" + "x" * 40)
os.environ.setdefault("ENCRYPTION_KEY", "bench-encryption-key")
os.environ["DEBUG"] = "false"
os.environ["HTTPS"] = "false"
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"

SECRET = "bench-webhook-secret-" + secrets.token_hex(8)


PORT = lab.free_port()


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(lab.pct(values, 50) * 1000, 1),
        "p95_ms": round(lab.pct(values, 95) * 1000, 1),
        "mean_ms": round(statistics.mean(values) * 1000, 1),
        "n": len(values),
    }


# ---------------------------------------------------------------- fixtures


def seed_small() -> dict[str, Any]:
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import transaction

    from channels_app.services import channel_create
    from inbox.models import Chat
    from tenants.models import Workspace
    from tenants.services import workspace_create

    with transaction.atomic():
        Workspace.objects.filter(slug__startswith="bench-realtime").delete()
        workspace, user = workspace_create(
            name=f"bench-realtime {uuid.uuid4().hex[:6]}",
            admin_email=f"bench-{uuid.uuid4().hex[:6]}@example.com",
            admin_password="bench-password-123",
        )
        channel = channel_create(
            workspace=workspace,
            provider="whapi",
            display_name="Bench number",
            phone_number="+15550001234",
            api_base_url="http://127.0.0.1:9",
            tokens={"api_token": "bench", "webhook_secret": SECRET},
        )
        chat = Chat.objects.create(
            workspace=workspace,
            channel=channel,
            wa_chat_id="4915100000000@s.whatsapp.net",
            contact_name="Bench",
        )
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session["workspace_id"] = str(workspace.pk)
    session.create()
    return {"channel_id": str(channel.pk), "chat_id": chat.pk, "cookie": f"sessionid={session.session_key}"}


def seed_large(n_chats: int, n_messages: int) -> dict[str, Any]:
    """Bulk rows straight in SQL: one workspace, one number, n chats and n messages spread over them."""
    from django.db import connection, transaction

    from channels_app.services import channel_create
    from tenants.models import Workspace
    from tenants.services import workspace_create

    with transaction.atomic():
        Workspace.objects.filter(slug__startswith="bench-chatlist").delete()
        workspace, user = workspace_create(
            name=f"bench-chatlist {uuid.uuid4().hex[:6]}",
            admin_email=f"bench-list-{uuid.uuid4().hex[:6]}@example.com",
            admin_password="bench-password-123",
        )
        channel = channel_create(
            workspace=workspace, provider="whapi", display_name="Bulk number", phone_number="+15550004321"
        )
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO inbox_chat (workspace_id, channel_id, wa_chat_id, contact_name, contact_phone, is_group,
                last_message_preview, last_message_at, unread_count, assignee_id, status, archived,
                created_at, updated_at)
            SELECT %(ws)s, %(ch)s, '49' || lpad(g::text, 10, '0') || '@s.whatsapp.net', 'Customer ' || g,
                '+49' || lpad(g::text, 10, '0'), false, 'Message number ' || g,
                now() - (g || ' seconds')::interval, g %% 5,
                CASE WHEN g %% 3 = 0 THEN %(user)s ELSE NULL END,
                (ARRAY['open','open','open','pending','resolved'])[1 + g %% 5], false, now(), now()
            FROM generate_series(1, %(n)s) AS g
            """,
            {"ws": str(workspace.pk), "ch": str(channel.pk), "user": user.pk, "n": n_chats},
        )
        cur.execute("SELECT min(id) FROM inbox_chat WHERE workspace_id = %s", [str(workspace.pk)])
        first_chat = cur.fetchone()[0]
        cur.execute(
            """
            INSERT INTO inbox_message (chat_id, channel_id, wa_message_id, direction, type, text, status,
                error_code, error_message, author_wa_id, author_name, reply_to_wa_id, media_id, media_url,
                media_mime_type, media_sha256, media_filename, media_file, media_status, payload, previous_text,
                sort_at, created_at, updated_at)
            SELECT %(first)s + (g %% %(chats)s), %(ch)s, 'bulk.' || g, CASE WHEN g %% 2 = 0 THEN 'in' ELSE 'out' END,
                'text', 'Bulk message ' || g, 'read', '', '', '', '', '', '', '', '', '', '', '', '', '{}', '',
                now() - (g || ' seconds')::interval, now(), now()
            FROM generate_series(1, %(n)s) AS g
            """,
            {"first": first_chat, "chats": n_chats, "ch": str(channel.pk), "n": n_messages},
        )
        cur.execute("ANALYZE inbox_chat")
        cur.execute("ANALYZE inbox_message")
    return {"workspace": workspace, "user": user, "seed_seconds": round(time.perf_counter() - started, 1)}


# ---------------------------------------------------------------- part 1: latency


def start_processes(env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    bin_dir = Path(sys.executable).parent
    log = open(ROOT / "bench" / "out" / "realtime-server.log", "ab")  # noqa: SIM115 (lives as long as the run)
    web = subprocess.Popen(
        [str(bin_dir / "uvicorn"), "config.asgi:application", "--host", "127.0.0.1", "--port", str(PORT),
         "--lifespan", "off", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    worker = subprocess.Popen(
        [str(bin_dir / "celery"), "-A", "config", "worker", "-c", "2", "-l", "warning", "--without-heartbeat",
         "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return [web, worker]


def wait_http(url: str) -> None:
    import requests

    for _ in range(200):
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not start")


async def measure_latency(fixture: dict[str, Any], sockets: int, samples: int) -> dict[str, Any]:
    import requests
    import websockets

    base = f"http://127.0.0.1:{PORT}"
    headers = {"Cookie": fixture["cookie"], "Origin": base}
    conns = []
    for _ in range(sockets):
        ws = await websockets.connect(f"ws://127.0.0.1:{PORT}/ws/inbox/", additional_headers=headers)
        await ws.send(json.dumps({"action": "open_chat", "chat_id": fixture["chat_id"]}))
        conns.append(ws)
    await asyncio.sleep(0.5)
    first: list[float] = []
    last: list[float] = []
    lost = 0  # frames that never reached a socket within 30 s
    url = f"{base}/webhooks/whapi/{fixture['channel_id']}/"
    http = requests.Session()
    http.headers.update({"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"})
    if True:  # one keep-alive HTTP session for every POST
        for i in range(samples + 3):  # the first three warm caches and connections
            marker = f"latency-{uuid.uuid4().hex}"
            body = {
                "messages": [
                    {"id": f"bench.{marker}", "from_me": False, "type": "text",
                     "chat_id": "4915100000000@s.whatsapp.net", "timestamp": int(time.time()),
                     "text": {"body": marker}, "from": "4915100000000", "from_name": "Bench"}
                ],
                "event": {"type": "messages", "event": "post"},
            }  # fmt: skip
            arrivals: list[float] = []

            async def wait_for(ws: Any, marker: str = marker, arrivals: list[float] = arrivals) -> None:
                while True:
                    frame = await ws.recv()
                    if marker in frame and "data-message-id" in frame:
                        arrivals.append(time.perf_counter())
                        return

            waiters = [asyncio.create_task(wait_for(ws)) for ws in conns]
            sent = time.perf_counter()
            # The POST runs in a thread so the sockets keep reading while it is in flight.
            response = await asyncio.to_thread(http.post, url, data=json.dumps(body), timeout=30)
            assert response.status_code == 200, response.text
            _done, missing = await asyncio.wait(waiters, timeout=30)
            for task in missing:
                task.cancel()
            if i >= 3:
                lost += len(missing)
            if i >= 3 and arrivals:
                first.append(min(arrivals) - sent)
                last.append(max(arrivals) - sent)
            await asyncio.sleep(0.05)
    for ws in conns:
        await ws.close()
    return {
        "sockets": sockets,
        "first_socket": summary(first),
        "last_socket": summary(last),
        "frames_expected": samples * sockets,
        "frames_lost": lost,
    }


# ---------------------------------------------------------------- part 2: chat list


def time_chat_list(large: dict[str, Any], runs: int) -> dict[str, Any]:
    from django.test import Client

    from inbox.selectors import ChatFilters, chat_counts, chat_list

    workspace, user = large["workspace"], large["user"]
    results: dict[str, Any] = {}

    def timed(name: str, fn: Any) -> None:
        for _ in range(3):
            fn()
        values = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            values.append(time.perf_counter() - t)
        results[name] = summary(values)

    timed(
        "selector chat_list (open, all, first page)",
        lambda: chat_list(workspace=workspace, user=user, filters=ChatFilters()),
    )
    timed(
        "selector chat_list (mine)",
        lambda: chat_list(workspace=workspace, user=user, filters=ChatFilters(view="mine")),
    )
    page = chat_list(workspace=workspace, user=user, filters=ChatFilters())
    for _ in range(50):  # walk 50 pages deep: keyset cost must not grow
        page = chat_list(workspace=workspace, user=user, filters=ChatFilters(), cursor=page.next_cursor)
    deep = page.next_cursor
    timed(
        "selector chat_list (page 51, keyset)",
        lambda: chat_list(workspace=workspace, user=user, filters=ChatFilters(), cursor=deep),
    )
    timed("selector chat_counts", lambda: chat_counts(workspace=workspace, user=user))
    client = Client()
    client.force_login(user)
    session = client.session
    session["workspace_id"] = str(workspace.pk)
    session.save()
    timed("view GET /inbox/ (full page)", lambda: client.get("/inbox/"))
    timed(
        "view GET /inbox/chats/?cursor (htmx list page)",
        lambda: client.get(f"/inbox/chats/?cursor={deep}", HTTP_HX_REQUEST="true"),
    )
    timed(
        "view GET /inbox/?q=Customer 99999 (htmx search)",
        lambda: client.get(
            "/inbox/?q=Customer%2099999", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="chat-list-region"
        ),
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--sockets", type=int, default=100)
    parser.add_argument("--chats", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-chat-list", action="store_true")
    args = parser.parse_args()

    lab.ensure_database(os.environ["DATABASE_URL"])
    env = dict(os.environ)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    (ROOT / "bench" / "out").mkdir(exist_ok=True)

    import django

    django.setup()
    report: dict[str, Any] = {"cpus": os.cpu_count()}
    if not args.skip_latency:
        fixture = seed_small()
        processes = start_processes(env)
        try:
            wait_http(f"http://127.0.0.1:{PORT}/accounts/login/")
            report["latency_idle"] = asyncio.run(measure_latency(fixture, 1, args.samples))
            report["latency_loaded"] = asyncio.run(measure_latency(fixture, args.sockets, args.samples))
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=15)
    if not args.skip_chat_list:
        large = seed_large(args.chats, args.messages)
        report["chat_list_scale"] = {
            "chats": args.chats,
            "messages": args.messages,
            "seed_seconds": large["seed_seconds"],
        }
        report["chat_list"] = time_chat_list(large, args.runs)
    print(json.dumps(report, indent=2))
    (ROOT / "bench" / "out" / "realtime.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
