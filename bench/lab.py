"""What the lab's scenarios share: the production environment, databases, processes, percentiles.

Not a benchmark itself; ``bench/pacing.py``, ``bench/crash.py``, ``bench/latency.py`` and
``bench/run_all.py`` import it. Every scenario runs against its own ``wa_bench_*`` database and one of
the Redis databases 7-9, with the production settings (``config.settings``: DEBUG off, HTTPS=false).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_BASE = os.environ.get("BENCH_PG_BASE", "postgres://postgres@127.0.0.1:5432")
REDIS_BASE = os.environ.get("BENCH_REDIS_BASE", "redis://127.0.0.1:6379")


def production_environment(*, database: str, redis_db: int | None, **extra: str) -> dict[str, str]:
    """The environment of a production process on loopback: DEBUG off, HTTPS=false, Postgres, Redis."""
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": f"{PG_BASE}/{database}",
            "REDIS_URL": f"{REDIS_BASE}/{redis_db}" if redis_db is not None else "",
            "SECRET_KEY": env.get("SECRET_KEY") or "bench-secret-key-" + "x" * 40,
            "ENCRYPTION_KEY": env.get("ENCRYPTION_KEY") or "bench-encryption-key",
            "DEBUG": "false",
            "HTTPS": "false",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": env.get("BENCH_LOG_LEVEL", "WARNING"),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


def use_environment(env: dict[str, str]) -> None:
    """Make this process one of them (before django.setup())."""
    os.environ.update(env)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def migrate(env: dict[str, str]) -> None:
    ensure_database(env["DATABASE_URL"])
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )


def flush_redis(url: str) -> None:
    """Empty one of the lab's own Redis databases (stale tasks and buckets from an earlier run)."""
    import redis

    db = int(url.rsplit("/", 1)[1])
    assert db in (7, 8, 9), "the lab only ever flushes its own Redis databases 7-9"
    redis.Redis.from_url(url).flushdb()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout:.0f} s")


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def log_file(name: str) -> Any:
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    return open(out / f"{name}.log", "ab")


def celery_worker(
    env: dict[str, str], *, concurrency: int = 2, name: str = "worker"
) -> subprocess.Popen[bytes]:
    log = log_file(name)
    return subprocess.Popen(
        [str(BIN / "celery"), "-A", "config", "worker", "-c", str(concurrency), "-l", "warning",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{name}-{os.getpid()}@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def celery_beat(env: dict[str, str], *, name: str = "beat") -> subprocess.Popen[bytes]:
    log = log_file(name)
    schedule = ROOT / "bench" / "out" / f"{name}-{os.getpid()}.schedule"
    return subprocess.Popen(
        [str(BIN / "celery"), "-A", "config", "beat", "-l", "warning", "-s", str(schedule)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def uvicorn(
    env: dict[str, str],
    port: int,
    *,
    workers: int = 1,
    name: str = "web",
    app: str = "config.asgi:application",
) -> subprocess.Popen[bytes]:
    log = log_file(name)
    return subprocess.Popen(
        [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--no-access-log", "--log-level", "warning", "--lifespan", "off"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def stop(processes: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds_by_kind(roots: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each kind of process on this machine (Linux ``/proc``):
    each named kind is the given processes and all their descendants (uvicorn's and Celery's workers),
    ``postgres`` and ``redis`` are every process of those servers, ``bench`` is this process. Read it
    before and after a load to tell where the machine's CPU went; exited processes are not counted."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        pid = int(entry)
        parents[pid], names[pid] = int(rest[1]), name
        used[pid] = (int(rest[11]) + int(rest[12])) / tick
    kind_of = {pid: kind for kind, pids in roots.items() for pid in pids}
    totals = dict.fromkeys([*roots, "postgres", "redis", "bench"], 0.0)
    for pid, seconds in used.items():
        kind, ancestor = None, pid
        while ancestor > 1 and kind is None:
            kind = kind_of.get(ancestor)
            ancestor = parents.get(ancestor, 0)
        if kind is None:
            if names[pid] == "postgres":
                kind = "postgres"
            elif names[pid].startswith("redis-server"):
                kind = "redis"
            elif pid == os.getpid():
                kind = "bench"
        if kind is not None:
            totals[kind] += seconds
    return totals


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def whapi_channel(workspace: Any, *, name: str, base_url: str, rate: float, token: str, **tokens: str) -> Any:
    from channels_app.services import channel_create

    return channel_create(
        workspace=workspace,
        provider="whapi",
        display_name=name,
        phone_number="+1555" + str(abs(hash(name)) % 10**7).zfill(7),
        api_base_url=base_url,
        rate_limit_per_second=rate,
        tokens={"api_token": token, **tokens},
    )


def queue_messages(channel: Any, chats: list[Any], count: int, prefix: str) -> list[str]:
    """Bulk-queue ``count`` texts over ``chats`` exactly as message_send writes them; returns the texts."""
    from django.utils import timezone

    from inbox.models import Message
    from outbox.models import OutboxMessage

    now = timezone.now()
    texts = [f"{prefix} {n}" for n in range(count)]
    messages = Message.objects.bulk_create(
        [
            Message(
                chat=chats[n % len(chats)],
                channel=channel,
                client_message_id=f"{prefix}-{n}",
                direction="out",
                type="text",
                text=texts[n],
                status="pending",
                sort_at=now,
            )
            for n in range(count)
        ],
        batch_size=1000,
    )
    OutboxMessage.objects.bulk_create(
        [
            OutboxMessage(
                channel=channel,
                chat=m.chat,
                message=m,
                message_type="message",
                next_attempt_at=now,
                payload={"to": m.chat.wa_chat_id, "type": "text", "text": m.text},
            )
            for m in messages
        ],
        batch_size=1000,
    )
    return texts


def open_chats(workspace: Any, channel: Any, count: int, prefix: str) -> list[Any]:
    from datetime import timedelta

    from django.utils import timezone

    from inbox.models import Chat

    window = timezone.now() + timedelta(hours=23)
    return Chat.objects.bulk_create(
        [
            Chat(
                workspace=workspace,
                channel=channel,
                wa_chat_id=f"{prefix}{n:07d}@s.whatsapp.net",
                window_expires_at=window,
            )
            for n in range(count)
        ]
    )
