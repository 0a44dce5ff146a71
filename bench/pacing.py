"""F2, pacing (not a test): do numbers send at their rate limit, and pause exactly as long as told?

    .venv/bin/python bench/pacing.py [--json out.json] [--steady 8] [--after 9]

1. Five Whapi numbers point at a fake provider that enforces each number's limit itself (a token bucket
   per API token holding one second's worth, like ours, plus one message of slack for network jitter)
   and answers 429 past it, counting every 429 it gives. Four numbers are limited to 80 msg/s, one to
   20 msg/s, in the app (``rate_limit_per_second``) and at the provider alike.
2. Each number gets a backlog of ~30 s worth of messages, bulk-queued; then the production processes
   start: a Celery worker (prefork, ``--concurrency``) and Celery beat (the 1 s ``outbox-drain``
   backstop). Buckets are shared through Redis (db 7).
3. Steady state: accepted sends per number over ``--steady`` seconds (after a 3 s warm-up) ÷ its limit;
   and the provider's 429s in that window (target: none).
4. Then the provider answers one send of number 1 with 429 ``Retry-After: 5``. Resume delay = the first
   accepted send of number 1 after that 429 − the 429 itself, ÷ 5 (target [1.0, 1.1]); the other numbers'
   rates during those 5 s ÷ their limits (target ≥ 0.95); and how many sends of number 1 still went out
   between its 429 and the resume (calls already held for a slot: 0 wanted).

Database ``wa_bench_pacing`` (created, migrated, vacuumed and analyzed once the backlog is queued), Redis
db 7 (flushed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import lab

LIMITS = [80.0, 80.0, 80.0, 80.0, 20.0]
BACKLOG_SECONDS = 30


def limiting_fake(limits: dict[str, float]) -> Any:
    from channels_app.providers.fake_server import FakeProvider, ReceivedRequest, Rule

    class LimitingFakeProvider(FakeProvider):
        """The fake provider, enforcing a per-number send rate the way a real API does (429 past it)."""

        def __init__(self) -> None:
            super().__init__()
            self.limits = limits
            self.buckets: dict[str, tuple[float, float]] = {}
            self.enforced: list[tuple[str, float]] = []  # (token, when) of every 429 the limit gave

        def _take_rule(self, request: ReceivedRequest) -> Rule | None:
            rule = super()._take_rule(request)
            if rule is not None or not request.is_message_send:
                return rule
            rate = self.limits.get(request.bearer)
            if not rate:
                return None
            burst = max(1.0, rate) + 1.0  # one second's worth, plus one message of jitter slack
            with self._lock:
                now = time.monotonic()
                tokens, ts = self.buckets.get(request.bearer, (burst, now))
                tokens = min(burst, tokens + (now - ts) * rate)
                if tokens >= 1.0:
                    self.buckets[request.bearer] = (tokens - 1.0, now)
                    return None
                self.buckets[request.bearer] = (tokens, now)
                self.enforced.append((request.bearer, request.received_at))
            return Rule(kind="rate_limit", retry_after="1")

    return LimitingFakeProvider()


def run(*, steady: float = 8.0, after: float = 9.0, concurrency: int = 4) -> dict[str, Any]:
    env = lab.production_environment(database="wa_bench_pacing", redis_db=7)
    lab.migrate(env)
    lab.flush_redis(env["REDIS_URL"])
    lab.use_environment(env)
    import django

    django.setup()
    from django.db import connection

    from outbox.models import OutboxMessage
    from tenants.models import Workspace

    OutboxMessage.objects.all().delete()
    Workspace.objects.filter(slug="bench-pacing").delete()
    workspace = Workspace.objects.create(slug="bench-pacing", name="Bench pacing", max_channels=100)
    tokens = [f"pace-token-{n}-{time.time_ns()}" for n in range(len(LIMITS))]
    fake = limiting_fake(dict(zip(tokens, LIMITS, strict=True))).start()
    numbers = []
    for n, (token, limit) in enumerate(zip(tokens, LIMITS, strict=True)):
        channel = lab.whapi_channel(workspace, name=f"pace {n}", base_url=fake.url, rate=limit, token=token)
        numbers.append((channel, lab.open_chats(workspace, channel, 100, f"49170{n}"), limit))
    # Interleaved, one second's worth per number at a time, as messages arrive in real life. (Queued
    # number by number instead, the oldest number's backlog starves the others: docs/performance.md F2.)
    for second in range(BACKLOG_SECONDS):
        for n, (channel, chats, limit) in enumerate(numbers):
            lab.queue_messages(channel, chats, int(limit), f"pace{n}-{second}")
    # The lab's Postgres runs with autovacuum off (a CI setting), so without this every run starts on the
    # dead rows of all the earlier ones (330k after a dozen runs, which made claims 5-40 times slower) and
    # with no planner statistics for the fresh backlog. Production vacuums by itself.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    connection.close()

    processes = [
        lab.celery_worker(env, concurrency=concurrency, name="pacing-worker"),
        lab.celery_beat(env, name="pacing-beat"),
    ]
    try:
        lab.wait_until(lambda: len(fake.sends()) > 0, timeout=60)
        started = time.time()
        time.sleep(3.0 + steady)
        window = (started + 3.0, started + 3.0 + steady)
        fake.add_rule("rate_limit", retry_after="5", token=tokens[0], times=1)
        lab.wait_until(
            lambda: any(
                r.response_status == 429 and r.bearer == tokens[0] and r.received_at > window[1]
                for r in fake.requests
            ),
            timeout=30,
        )
        time.sleep(after)
    finally:
        lab.stop(processes)
        requests = fake.requests
        fake.stop()

    accepted = [r for r in requests if r.is_message_send and r.response_status in (200, 201)]
    by_token_in = lambda t0, t1: Counter(r.bearer for r in accepted if t0 <= r.received_at < t1)  # noqa: E731
    steady_counts = by_token_in(*window)
    enforced_steady = [when for token, when in fake.enforced if window[0] <= when < window[1]]
    injected_429 = min(
        (
            r.received_at
            for r in requests
            if r.response_status == 429 and r.bearer == tokens[0] and r.received_at >= window[1]
        ),
        default=None,
    )
    result: dict[str, Any] = {
        "limits": LIMITS,
        "celery_concurrency": concurrency,
        "steady_window_s": steady,
        "steady_rate_ratio": [
            round(steady_counts[t] / steady / limit, 3) for t, limit in zip(tokens, LIMITS, strict=True)
        ],
        "steady_rate_per_s": [round(steady_counts[t] / steady, 1) for t in tokens],
        "provider_429_steady": len(enforced_steady),
        "provider_429_total": len(fake.enforced),
    }
    if injected_429 is not None:
        # Sends of number 1 already in flight beside the 429 are answered within milliseconds of it; the
        # pause is the first gap of over a second after the 429, and the resume is the send that ends it.
        after_429 = sorted(
            r.received_at for r in accepted if r.bearer == tokens[0] and r.received_at > injected_429
        )
        result["number_1_sends_after_429_s"] = [round(at - injected_429, 3) for at in after_429[:40]]
        resumed = None
        previous = injected_429
        for at in after_429:
            if at - previous > 1.0:
                resumed = at
                break
            previous = at
        pause_counts = by_token_in(injected_429, injected_429 + 5.0)
        # Sends of number 1 the provider accepted after its 429 and before the resume: calls that were
        # already held for a slot when it came (each one would meet another 429 at a real provider).
        result["number_1_sends_during_pause"] = sum(1 for at in after_429 if resumed is None or at < resumed)
        result["resume_delay_s"] = round(resumed - injected_429, 3) if resumed else None
        result["resume_ratio"] = round((resumed - injected_429) / 5.0, 3) if resumed else None
        result["others_during_pause_ratio"] = [
            round(pause_counts[t] / 5.0 / limit, 3) for t, limit in zip(tokens[1:], LIMITS[1:], strict=True)
        ]
    else:
        result["resume_delay_s"] = result["resume_ratio"] = None
        result["others_during_pause_ratio"] = []
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steady", type=float, default=8.0)
    parser.add_argument("--after", type=float, default=9.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(steady=args.steady, after=args.after, concurrency=args.concurrency)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
