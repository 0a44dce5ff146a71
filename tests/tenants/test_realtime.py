"""Pushes from synchronous code reuse one event loop (and so one Redis connection pool) per process."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from tenants.realtime import _push_loop, send_event_rollback_unsafe


@pytest.mark.django_db(transaction=True)
def test_pushes_from_sync_code_arrive_and_share_one_loop() -> None:
    layer = get_channel_layer()
    channel_name = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("test-push-group", channel_name)
    send_event_rollback_unsafe("test-push-group", {"type": "x.one"})
    first_loop = _push_loop._loop
    send_event_rollback_unsafe("test-push-group", {"type": "x.two"})
    assert _push_loop._loop is first_loop and first_loop is not None and first_loop.is_running()

    async def receive_two() -> list[str]:
        return [(await layer.receive(channel_name))["type"] for _ in range(2)]

    assert async_to_sync(receive_two)() == ["x.one", "x.two"]
    async_to_sync(layer.group_discard)("test-push-group", channel_name)


def test_a_push_that_fails_is_logged_not_raised(monkeypatch, caplog) -> None:
    class Broken:
        async def group_send(self, group, event):
            raise ConnectionError("redis down")

    Broken.__module__ = "channels_redis.core"
    monkeypatch.setattr("tenants.realtime.get_channel_layer", lambda: Broken())
    send_event_rollback_unsafe("g", {"type": "x"})
    _push_loop.flush()
    assert "realtime push to g failed" in caplog.text


def test_the_caller_does_not_wait_for_the_layer_and_pushes_keep_their_order(monkeypatch) -> None:
    import asyncio
    import threading

    release = threading.Event()
    sent: list[str] = []

    class Held:
        async def group_send(self, group, event):
            while not release.is_set():  # Redis "slow" until the test lets it answer
                await asyncio.sleep(0.005)
            sent.append(event["type"])

    Held.__module__ = "channels_redis.core"
    monkeypatch.setattr("tenants.realtime.get_channel_layer", lambda: Held())
    for n in range(10):
        send_event_rollback_unsafe("g", {"type": f"x.{n}"})
    assert sent == []  # every call returned while the layer had not answered once
    release.set()
    _push_loop.flush()
    assert sent == [f"x.{n}" for n in range(10)]


def test_a_consumer_channel_idle_past_the_layers_blocking_read_still_gets_its_next_message() -> None:
    """channels_redis waits for a consumer's next message with BZPOPMIN of up to ``brpop_timeout`` (5 s);
    redis-py 8 gives every socket read a 5 s timeout by default, so an idle consumer's read used to time
    out together with the command and crash the consumer (its websocket closed). The layer is configured
    from the project's settings, on real Redis."""
    import asyncio

    from channels_redis.core import RedisChannelLayer
    from django.conf import settings

    layer = RedisChannelLayer(**settings.CHANNEL_LAYERS["default"]["CONFIG"])

    async def idle_then_message() -> dict:
        name = await layer.new_channel()

        async def send_later() -> None:
            await asyncio.sleep(layer.brpop_timeout + 1.5)  # past one whole blocking read with nothing
            await layer.send(name, {"type": "x.late"})

        sender = asyncio.create_task(send_later())
        try:
            return await asyncio.wait_for(layer.receive(name), timeout=layer.brpop_timeout + 10)
        finally:
            await sender
            await layer.close_pools()

    assert asyncio.run(idle_then_message())["type"] == "x.late"
