"""The lean ASGI front for providers' webhook POSTs, in front of the Django application.

Providers POST thousands of small events a second at peak. Through Django's ASGI handler each one paid
for the middleware stack and a fresh thread per request (``ThreadSensitiveContext``): a no-database
Django view answered about 440 requests/s on two cores, where uvicorn alone answers tens of thousands.
This front takes only ``POST /webhooks/{whapi,sandbox,meta}/<channel id>/`` and ``POST /webhooks/meta/``,
reads the body (413 over the limit), and hands it to ``webhooks.ingest.webhook_receive_many`` (the same
code and answers as the Django views). Everything else (Meta's GET handshake included) goes to Django
unchanged.

Group commit: POSTs that arrive while a store is in flight wait for the next one and are stored together,
in one statement and one commit, each answered when that commit is done (never before: 200 means
stored). ``WEBHOOK_INGEST_THREADS`` stores run at once per process, each at most ``MAX_BATCH`` POSTs. At
one POST at a time this is one commit per POST, as before; under load the per-commit work is shared.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.signals import setting_changed
from django.db import InterfaceError, OperationalError, connection
from django.dispatch import receiver
from django.http.request import split_domain_port, validate_host

from config.metrics import HTTP_DURATION
from config.request_context import _SAFE_REQUEST_ID
from webhooks.ingest import NOT_STORED, IncomingWebhook, WebhookAnswer, too_large, webhook_receive_many

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
ASGIReceiveCallable = Callable[[], Awaitable[dict[str, Any]]]
ASGISendCallable = Callable[[dict[str, Any]], Awaitable[None]]

_ROUTE = re.compile(
    r"^/webhooks/(?:(?P<provider>whapi|sandbox|meta)/(?P<channel_id>[0-9a-fA-F-]{32,36})/|(?P<meta_app>meta)/)$"
)
# The Django URL patterns, so the request-duration metric has one label per route whichever side served it.
_ROUTE_LABELS = {
    "whapi": "webhooks/whapi/<uuid:channel_id>/",
    "sandbox": "webhooks/sandbox/<uuid:channel_id>/",
    "meta": "webhooks/meta/<uuid:channel_id>/",
    "meta-app": "webhooks/meta/",
}


MAX_BATCH = 100


class WebhookFront:
    def __init__(self, app: Any) -> None:
        self.app = app
        self._batcher: _GroupCommit | None = None

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        match = _ROUTE.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        if match["meta_app"]:
            provider, channel_id, label = "meta", None, "meta-app"
        else:
            try:
                channel_id = UUID(match["channel_id"])
            except ValueError:
                await self.app(scope, receive, send)  # Django answers 404 as for any unknown URL
                return
            provider = label = match["provider"]
        await self._serve(scope, receive, send, provider, channel_id, label)

    async def _serve(
        self,
        scope: Scope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        provider: str,
        channel_id: UUID | None,
        label: str,
    ) -> None:
        started = time.perf_counter()
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
        }
        incoming_id = headers.get("x-request-id", "")
        # new_request_id's format (32 hex digits) without building a UUID object per POST.
        request_id = incoming_id if _SAFE_REQUEST_ID.match(incoming_id) else os.urandom(16).hex()
        if not _host_allowed(headers.get("host", "")):
            answer = WebhookAnswer(400, {"error": "bad host"})
        else:
            try:
                body = await _read_body(receive, headers)
            except _ClientGone:
                return
            if body is None:
                answer = too_large(provider)
            else:
                client = scope.get("client") or ("", 0)
                incoming = IncomingWebhook(
                    provider=provider,
                    channel_id=channel_id,
                    headers=headers,
                    body=body,
                    remote_addr=str(client[0]),
                    request_id=request_id,
                )
                if self._batcher is None:
                    self._batcher = _GroupCommit(settings.WEBHOOK_INGEST_THREADS)
                answer = await self._batcher.submit(incoming)
        content = json.dumps(answer.payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                    (b"x-request-id", request_id.encode()),
                    (b"x-content-type-options", b"nosniff"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})
        _duration_metric(label, answer.status).observe(time.perf_counter() - started)


class _GroupCommit:
    """Queues POSTs and stores them in batches, ``parallel`` batches at a time, in a thread pool."""

    def __init__(self, parallel: int) -> None:
        self.parallel = max(1, parallel)
        self.pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="webhook-ingest")
        self.waiting: list[tuple[IncomingWebhook, asyncio.Future[WebhookAnswer]]] = []
        self.running = 0
        self.tasks: set[asyncio.Task[None]] = set()  # held so the loop does not drop them mid-store

    async def submit(self, incoming: IncomingWebhook) -> WebhookAnswer:
        future: asyncio.Future[WebhookAnswer] = asyncio.get_running_loop().create_future()
        self.waiting.append((incoming, future))
        self._start()
        return await future

    def _start(self) -> None:
        while self.waiting and self.running < self.parallel:
            batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
            self.running += 1
            task = asyncio.get_running_loop().create_task(self._store(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _store(self, batch: list[tuple[IncomingWebhook, asyncio.Future[WebhookAnswer]]]) -> None:
        try:
            answers = await asyncio.get_running_loop().run_in_executor(
                self.pool, _receive_in_thread, [incoming for incoming, _ in batch]
            )
        except Exception:  # _receive_in_thread answers errors itself; this is a last resort
            logger.exception("webhook batch of %d could not be stored", len(batch))
            answers = [NOT_STORED] * len(batch)
        finally:
            self.running -= 1
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():  # the client may have gone; its event is stored all the same
                future.set_result(answer)
        self._start()


@functools.lru_cache(maxsize=64)
def _duration_metric(label: str, status: int) -> Any:
    """The request-duration histogram's child for a route and status (``labels()`` locks and looks it up)."""
    return HTTP_DURATION.labels(route=_ROUTE_LABELS[label], method="POST", status=str(status))


def _host_allowed(host_header: str) -> bool:
    allowed = _hosts_checked.get(host_header)
    if allowed is None:
        domain, _port = split_domain_port(host_header)
        allowed = bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)
        if len(_hosts_checked) < 64:  # the few names providers use; anything else is checked each time
            _hosts_checked[host_header] = allowed
    return allowed


_hosts_checked: dict[str, bool] = {}


@receiver(setting_changed)
def _hosts_forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "ALLOWED_HOSTS":
        _hosts_checked.clear()


class _ClientGone(Exception):
    pass


async def _read_body(receive: ASGIReceiveCallable, headers: dict[str, str]) -> bytes | None:
    """The whole body, or None once it is over ``WEBHOOK_MAX_BODY_BYTES`` (declared or actual)."""
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    try:
        if int(headers.get("content-length") or 0) > limit:
            return None
    except ValueError:
        pass
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone  # half a body is not the event: store nothing, the provider sends it again
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


# How long an ingest thread keeps its database connection before it gives it back to the pool (which then
# applies its own checks and lifetime to it), like CONN_MAX_AGE for a persistent connection.
CONNECTION_MAX_AGE = 60.0

_kept = threading.local()


def _receive_in_thread(incomings: list[IncomingWebhook]) -> list[WebhookAnswer]:
    """Store one batch on this ingest thread's database connection, kept from one batch to the next.

    The thread is one of the front's few long-lived store threads, so it keeps its connection instead of
    taking one from the pool per batch: the pool's check on every checkout is a round trip, and with
    Django's connection setup and teardown it cost about as much CPU as the store itself at one POST per
    commit. A connection that saw an error, or was left in a transaction, goes back to the pool at once.
    A kept connection that died meanwhile (Postgres restarted, an idle timeout) fails the batch's first
    statement: the batch is then stored again on a fresh one (a raw event stored twice is processed once).
    """
    reused = _connection_take()
    try:
        try:
            return webhook_receive_many(incomings)
        except (OperationalError, InterfaceError):
            if not reused:
                raise
            logger.info("the ingest thread's kept connection failed; storing on a fresh one", exc_info=True)
            connection.close()
            return webhook_receive_many(incomings)
    except Exception:
        logger.exception("%d webhook(s) could not be stored", len(incomings))
        return [NOT_STORED] * len(incomings)
    finally:
        _connection_keep_or_release()


def _connection_take() -> bool:
    """True when this thread already holds a connection from an earlier batch (and may keep using it)."""
    if connection.connection is None:
        return False
    if time.monotonic() - getattr(_kept, "since", 0.0) > CONNECTION_MAX_AGE:
        connection.close()  # back to the pool, which applies its lifetime and checks
        return False
    return True


def _connection_keep_or_release() -> None:
    if connection.connection is None:
        return
    if connection.errors_occurred or connection.in_atomic_block or not connection.get_autocommit():
        connection.close()  # the pool checks it before lending it again
        return
    if not getattr(_kept, "since", None) or _kept.owner is not connection.connection:
        _kept.since, _kept.owner = time.monotonic(), connection.connection
