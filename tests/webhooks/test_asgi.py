"""The lean ASGI front (webhooks/asgi.py) as wired in config.asgi: same answers as the Django views, and
concurrent POSTs stored together in one commit, each answered only once it is stored."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator

from channels_app.providers.meta.signature import meta_signature_compute
from config.asgi import application
from inbox.models import Message
from tests.webhooks.conftest import META_APP_SECRET, META_VERIFY_TOKEN, WHAPI_SECRET
from tests.webhooks.samples import fixture_bytes
from webhooks import asgi, ingest, services
from webhooks.models import WebhookEvent
from webhooks.services import webhook_events_store

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_batcher():
    """Each test starts and ends with no batcher: its threads (and their connections) end with the test."""
    front = application.application_mapping["http"]
    front._batcher = None
    yield
    batcher = front._batcher
    if batcher is not None:
        # One task per thread (the barrier holds each until all have one): every thread's connection closes.
        barrier = threading.Barrier(batcher.parallel)
        for done in [batcher.pool.submit(_close_connections, barrier) for _ in range(batcher.parallel)]:
            done.result()
        batcher.pool.shutdown(wait=True)
        front._batcher = None


def _close_connections(barrier: threading.Barrier) -> None:
    from django.db import connections

    connections.close_all()
    barrier.wait(timeout=10)


def _text(n: int) -> bytes:
    return json.dumps(
        {
            "messages": [
                {
                    "id": f"front-{n:04d}-abcd",
                    "from_me": False,
                    "type": "text",
                    "chat_id": "491700000099@s.whatsapp.net",
                    "timestamp": 1713000000 + n,
                    "text": {"body": f"hello {n}"},
                    "from": "491700000099",
                }
            ],
            "event": {"type": "messages", "event": "post"},
            "channel_id": "MANTIS-M72HC",
        }
    ).encode()


async def _post(path: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST") -> dict:
    all_headers = {"host": "testserver", "content-type": "application/json", **(headers or {})}
    communicator = HttpCommunicator(
        application,
        method,
        path,
        body=body,
        headers=[(name.encode(), value.encode()) for name, value in all_headers.items()],
    )
    return await communicator.get_response(timeout=20)


def post(path: str, body: bytes = b"", headers: dict[str, str] | None = None, method: str = "POST") -> dict:
    return async_to_sync(_post)(path, body, headers, method)


def bearer(secret: str = WHAPI_SECRET) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def test_a_signed_whapi_post_is_stored_answered_200_and_processed(whapi_channel):
    response = post(
        f"/webhooks/whapi/{whapi_channel.pk}/", _text(1), {**bearer(), "x-request-id": "prov-abc-1"}
    )
    assert response["status"] == 200
    (event_id,) = json.loads(response["body"])["events"]
    assert dict(response["headers"])[b"x-request-id"] == b"prov-abc-1"
    event = WebhookEvent.objects.get(pk=event_id)
    assert (event.status, event.correlation_id, event.channel_id) == (
        "processed",
        "prov-abc-1",
        whapi_channel.pk,
    )
    assert event.headers["authorization"] == "[redacted]"
    assert Message.objects.filter(channel=whapi_channel, wa_message_id="front-0001-abcd").exists()


def test_wrong_secret_unknown_channel_bad_json_and_oversize_get_the_views_answers(
    whapi_channel, team, settings
):
    url = f"/webhooks/whapi/{whapi_channel.pk}/"
    assert post(url, _text(2), bearer("wrong"))["status"] == 401
    assert post(url, _text(2))["status"] == 401  # no Authorization at all
    # Another workspace's channel id with this channel's secret: its own secret is checked, so 401.
    other = team.channel_b
    other.provider = "whapi"
    other.save()
    assert post(f"/webhooks/whapi/{other.pk}/", _text(2), bearer())["status"] == 401
    assert WebhookEvent.objects.count() == 0
    assert post("/webhooks/whapi/00000000-0000-0000-0000-000000000000/", _text(2), bearer())["status"] == 404
    assert post("/webhooks/whapi/not-a-uuid/", _text(2), bearer())["status"] == 404  # Django's 404
    bad = post(url, b"{not json", bearer())
    assert bad["status"] == 400
    assert WebhookEvent.objects.get().status == "failed"
    settings.WEBHOOK_MAX_BODY_BYTES = 1000
    assert post(url, b"x" * 1001, bearer())["status"] == 413
    assert post(url, _text(3), {**bearer(), "host": "evil.example"})["status"] == 400
    assert WebhookEvent.objects.count() == 1


def test_meta_posts_are_verified_by_signature_and_the_get_handshake_stays_with_django(meta_channel):
    body = fixture_bytes("meta", "meta_text.json")
    url = f"/webhooks/meta/{meta_channel.pk}/"
    signature = meta_signature_compute(app_secret=META_APP_SECRET, raw_body=body)
    assert post(url, body, {"x-hub-signature-256": signature})["status"] == 200
    assert post(url, body, {"x-hub-signature-256": "sha256=" + "0" * 64})["status"] == 401
    handshake = post(
        f"{url}?hub.mode=subscribe&hub.verify_token={META_VERIFY_TOKEN}&hub.challenge=1158201444",
        method="GET",
    )
    assert (handshake["status"], handshake["body"]) == (200, b"1158201444")


def test_posts_arriving_during_a_store_are_stored_together_in_the_next_commit(
    whapi_channel, settings, monkeypatch
):
    settings.WEBHOOK_INGEST_THREADS = 1
    monkeypatch.setattr(asgi, "MAX_BATCH", 100)
    first_store_may_finish = threading.Event()
    batch_sizes: list[int] = []
    real = asgi.webhook_receive_many

    def observed(incomings: list[Any]) -> list[Any]:
        batch_sizes.append(len(incomings))
        if len(batch_sizes) == 1:
            first_store_may_finish.wait(timeout=20)
        return real(incomings)

    monkeypatch.setattr(asgi, "webhook_receive_many", observed)

    async def scenario() -> list[dict]:
        first = asyncio.ensure_future(_post(f"/webhooks/whapi/{whapi_channel.pk}/", _text(100), bearer()))
        while not batch_sizes:
            await asyncio.sleep(0.01)
        rest = [
            asyncio.ensure_future(
                _post(f"/webhooks/whapi/{whapi_channel.pk}/", _text(101 + n), bearer(secret))
            )
            for n, secret in enumerate([WHAPI_SECRET] * 9 + ["wrong"])
        ]
        while len(asgi_waiting()) < 10:
            await asyncio.sleep(0.01)
        first_store_may_finish.set()
        return [await first, *[await task for task in rest]]

    responses = async_to_sync(scenario)()
    assert batch_sizes == [1, 10]
    assert [r["status"] for r in responses] == [200] * 10 + [401]
    event_ids = [json.loads(r["body"])["events"][0] for r in responses[:10]]
    assert len(set(event_ids)) == 10
    assert WebhookEvent.objects.filter(status="processed").count() == 10


def asgi_waiting() -> list[Any]:
    batcher = application.application_mapping["http"]._batcher
    return batcher.waiting if batcher is not None else []


def test_when_the_shared_commit_fails_each_post_is_stored_on_its_own(whapi_channel, monkeypatch):
    calls: list[int] = []

    def store(items: list[Any]) -> list[Any]:
        calls.append(len(items))
        if len(items) > 1:
            raise RuntimeError("one bad row in the batch")
        return webhook_events_store(items)

    monkeypatch.setattr(ingest, "webhook_events_store", store)
    incomings = [
        ingest.IncomingWebhook(
            provider="whapi",
            channel_id=whapi_channel.pk,
            headers=bearer(),
            body=_text(200 + n),
            request_id=f"r{n}",
        )
        for n in range(3)
    ]
    answers = ingest.webhook_receive_many(incomings)
    assert [answer.status for answer in answers] == [200, 200, 200]
    assert calls == [3, 1, 1, 1]
    assert WebhookEvent.objects.filter(channel=whapi_channel).count() == 3


def test_a_post_whose_verification_fails_unexpectedly_gets_500_alone_and_the_others_are_stored(
    whapi_channel, monkeypatch, caplog
):
    poison = _text(250)
    real_event_type = ingest.whapi_event_type

    def event_type(payload: Any) -> str:  # a bug met by one body only
        if payload == json.loads(poison):
            raise KeyError("our bug")
        return real_event_type(payload)

    monkeypatch.setattr(ingest, "whapi_event_type", event_type)
    bodies = [_text(251), poison, _text(252)]
    incomings = [
        ingest.IncomingWebhook(provider="whapi", channel_id=whapi_channel.pk, headers=bearer(), body=body)
        for body in bodies
    ]
    answers = ingest.webhook_receive_many(incomings)
    assert [answer.status for answer in answers] == [200, 500, 200]
    stored = {bytes(e.raw_body) for e in WebhookEvent.objects.filter(channel=whapi_channel)}
    assert stored == {bodies[0], bodies[2]}
    assert "webhook could not be verified" in caplog.text


def test_a_client_that_leaves_mid_body_gets_nothing_stored(whapi_channel):
    front = application.application_mapping["http"]
    body = _text(300)
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": body[:20], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/webhooks/whapi/{whapi_channel.pk}/",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {WHAPI_SECRET}".encode())],
        "client": ("127.0.0.1", 5000),
    }
    async_to_sync(front)(scope, receive, send)
    assert sent == []
    assert WebhookEvent.objects.count() == 0


def _in_one_thread(*steps: Any) -> list[Any]:
    """Run each step on one long-lived thread, in order, like the front's ingest threads."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    with ThreadPoolExecutor(max_workers=1) as thread:
        results = [thread.submit(step).result(timeout=20) for step in steps]
        thread.submit(connections.close_all).result(timeout=20)
    return results


def _backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _round_trips_of(step: Any) -> Any:
    """Run ``step`` counting this thread's round trips to Postgres (every query, BEGIN and COMMIT waits)."""
    import psycopg

    counted: list[int] = []
    real_wait = psycopg.Connection.wait
    me = threading.get_ident()

    def wait(self: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == me:
            counted.append(1)
        return real_wait(self, *args, **kwargs)

    psycopg.Connection.wait = wait  # type: ignore[method-assign]
    try:
        result = step()
    finally:
        psycopg.Connection.wait = real_wait  # type: ignore[method-assign]
    return result, len(counted)


def test_an_ingest_thread_keeps_its_connection_and_stores_a_post_in_two_round_trips(
    whapi_channel, monkeypatch
):
    from django.db import connections

    # The web processes' setting (each batch used to give its connection back and take one again).
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    # Processing is not counted: tests run it eagerly inside the kick, production in a worker.
    monkeypatch.setattr(services, "_kick", lambda: None)

    def incoming(n: int) -> ingest.IncomingWebhook:
        return ingest.IncomingWebhook(
            provider="whapi", channel_id=whapi_channel.pk, headers=bearer(), body=_text(300 + n)
        )

    first, pid_after_first, (second, round_trips), pid_after_second = _in_one_thread(
        lambda: asgi._receive_in_thread([incoming(1)]),
        _backend_pid,
        lambda: _round_trips_of(lambda: asgi._receive_in_thread([incoming(2)])),
        _backend_pid,
    )
    assert [a.status for a in first + second] == [200, 200]
    assert pid_after_first == pid_after_second  # the same connection, not a new one per batch
    # The channel lookup and the INSERT (which commits by itself): no BEGIN, no COMMIT, no checkout check.
    assert round_trips == 2
    assert WebhookEvent.objects.filter(channel=whapi_channel).count() == 2


def test_a_kept_connection_that_died_is_replaced_and_the_batch_still_stored(whapi_channel, monkeypatch):
    from django.db import connection, connections

    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)

    def incoming(n: int) -> ingest.IncomingWebhook:
        return ingest.IncomingWebhook(
            provider="whapi", channel_id=whapi_channel.pk, headers=bearer(), body=_text(400 + n)
        )

    def kill(pid: int) -> None:  # from the test's own connection, as a Postgres restart would
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as thread:
        first = thread.submit(asgi._receive_in_thread, [incoming(1)]).result(timeout=20)
        kill(thread.submit(_backend_pid).result(timeout=20))
        second = thread.submit(asgi._receive_in_thread, [incoming(2), incoming(3)]).result(timeout=20)
        thread.submit(connections.close_all).result(timeout=20)
    assert [a.status for a in first + second] == [200, 200, 200]
    assert WebhookEvent.objects.filter(channel=whapi_channel).count() == 3
