"""The inbox side of the outbox's results for rows that carry a message: timeline rows, the message's
status and realtime pushes, so every Message write stays in the inbox (``outbox.services`` calls
``OUTBOX_HOOKS`` inside its short record transactions)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from inbox.models import Message, MessageEvent
from inbox.realtime import (
    push_chat_updated,
    push_message_updated,
    push_messages_updated,
    subscription_lookups_shared,
)
from inbox.services.provider_ids import message_record_provider_id
from inbox.services.send import _user_label
from outbox.models import OutboxMessage


class OutboxHooks:
    """Called by outbox.services inside its short record transactions, for rows that carry a message."""

    def claimed(self, *, rows: list[OutboxMessage], occurred_at: datetime) -> None:
        from django.db import connection

        with_message = [row for row in rows if row.message_id]
        if not with_message:
            return
        if connection.vendor == "postgresql":
            # Built by Postgres from the ids: the ORM's bulk_create took a tenth of a drain's Python time.
            # One JSON parameter: psycopg dumps array parameters element by element in Python.
            claimed = json.dumps([[row.message_id, row.attempts, row.pk] for row in with_message])
            with connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO inbox_messageevent (message_id, kind, detail, occurred_at) "
                    "SELECT (t->>0)::bigint, %s, jsonb_build_object('attempt', t->1, 'outbox_id', t->2), %s "
                    "FROM jsonb_array_elements(%s::jsonb) AS t",
                    [MessageEvent.Kind.CLAIMED, occurred_at, claimed],
                )
            return
        MessageEvent.objects.bulk_create(
            [
                MessageEvent(
                    message_id=row.message_id,
                    kind=MessageEvent.Kind.CLAIMED,
                    detail={"attempt": row.attempts, "outbox_id": row.pk},
                    occurred_at=occurred_at,
                )
                for row in rows
                if row.message_id
            ]
        )

    def sent(self, *, row: OutboxMessage, wa_message_id: str, occurred_at: datetime) -> None:
        assert row.message is not None
        message_record_provider_id(message=row.message, wa_message_id=wa_message_id, sent_at=occurred_at)

    def sent_many(self, *, items: list[tuple[OutboxMessage, str]], occurred_at: datetime) -> None:
        """Give a batch of messages their provider ids in a few statements (Postgres, in the caller's
        transaction). Same result as ``message_record_provider_id`` for each, which still handles every
        message that needs more than the plain case: an echo or a status for its id already arrived, or it
        already has an id.

        1. Take the wa_message_id advisory locks of all ids at once, in sorted order (the same locks and
           key format as inbox.services.receive_locks, so a webhook for one of these ids waits for us).
        2. Ids already on a message (an echo beat us) or parked in DeferredStatus go the careful way.
        3. The rest: one UPDATE sets id, ``sent`` and ``sent_at`` on messages that have no id yet; one
           INSERT writes their "sent" timeline rows; realtime pushes go after commit.
        """
        from django.db import connection

        from inbox.models import DeferredStatus

        by_message = {row.message_id: (row, wa_id) for row, wa_id in items if row.message is not None}
        keys = sorted({f"wamid:{row.channel_id}:{wa_id}" for row, wa_id in by_message.values()})
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
                "FROM (SELECT k FROM jsonb_array_elements_text(%s::jsonb) AS k ORDER BY k) AS ids",
                [json.dumps(keys)],  # one JSON parameter: psycopg dumps a text array key by key in Python
            )
        # Ids an echo or an early status already brought: one statement, the pairs as one JSON parameter
        # (two ORM queries with IN lists had psycopg quote every id in Python).
        pairs = json.dumps(sorted({(str(row.channel_id), wa_id) for row, wa_id in by_message.values()}))
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                WITH wanted AS (
                    SELECT (p->>0)::uuid AS channel_id, p->>1 AS wa_message_id
                    FROM jsonb_array_elements(%s::jsonb) AS p)
                SELECT m.channel_id, m.wa_message_id FROM {Message._meta.db_table} m
                    JOIN wanted w USING (channel_id, wa_message_id)
                UNION
                SELECT d.channel_id, d.wa_message_id FROM {DeferredStatus._meta.db_table} d
                    JOIN wanted w USING (channel_id, wa_message_id)
                """,  # noqa: S608 - table names from the models
                [pairs],
            )
            taken = set(cursor.fetchall())
        careful = [(row, wa_id) for row, wa_id in by_message.values() if (row.channel_id, wa_id) in taken]
        plain = [(row, wa_id) for row, wa_id in by_message.values() if (row.channel_id, wa_id) not in taken]
        updated: dict[int, tuple[str, datetime]] = {}
        if plain:
            # One JSON parameter, not a VALUES list of placeholders: that made a new, long statement per
            # batch size, which psycopg parsed again in Python every time (8 % of a drain).
            pairs = json.dumps([[row.message_id, wa_id] for row, wa_id in plain])
            with connection.cursor() as cursor:
                cursor.execute(
                    """
                    UPDATE inbox_message m
                    SET wa_message_id = v.pair->>1,
                        status = CASE WHEN m.status = 'pending' THEN 'sent' ELSE m.status END,
                        sent_at = COALESCE(m.sent_at, %s), updated_at = %s
                    FROM jsonb_array_elements(%s::jsonb) AS v(pair)
                    WHERE m.id = (v.pair->>0)::bigint AND m.wa_message_id IS NULL
                    RETURNING m.id, m.status, m.sent_at
                    """,
                    [occurred_at, occurred_at, pairs],
                )
                updated = {r[0]: (r[1], r[2]) for r in cursor.fetchall()}
            with connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO inbox_messageevent (message_id, kind, detail, occurred_at) "
                    'SELECT (m)::bigint, %s, \'{"source": "send"}\'::jsonb, %s '
                    "FROM jsonb_array_elements_text(%s::jsonb) AS t(m)",
                    [MessageEvent.Kind.SENT, occurred_at, json.dumps(sorted(updated))],
                )
            pushed: list[Message] = []
            for row, wa_id in plain:
                message = row.message
                if message is not None and row.message_id in updated:
                    # What the UPDATE wrote, so the pushes and integrators' events carry it (they used to
                    # carry the message as claimed: "pending", no provider id).
                    message.wa_message_id = wa_id
                    message.status, message.sent_at = updated[row.message_id]
                    pushed.append(message)
            with subscription_lookups_shared():  # one subscriptions query per workspace, not per message
                push_messages_updated(pushed)
        for row, wa_id in careful + [(row, wa_id) for row, wa_id in plain if row.message_id not in updated]:
            self.sent(row=row, wa_message_id=wa_id, occurred_at=occurred_at)

    def retry(
        self, *, row: OutboxMessage, code: str, reason: str, next_attempt_at: datetime, occurred_at: datetime
    ) -> None:
        assert row.message_id is not None
        MessageEvent.objects.create(
            message_id=row.message_id,
            kind=MessageEvent.Kind.RETRY,
            detail={
                "attempt": row.attempts,
                "error_code": code,
                "error": reason,
                "next_attempt_at": next_attempt_at.isoformat(),
            },
            occurred_at=occurred_at,
        )
        if row.message is not None:
            push_message_updated(row.message)

    def failed(self, *, row: OutboxMessage, code: str, reason: str, occurred_at: datetime) -> None:
        assert row.message_id is not None
        message = Message.objects.select_for_update(no_key=True).get(pk=row.message_id)
        if message.status in (Message.Status.DELIVERED, Message.Status.READ):
            return  # the provider already proved it arrived (an echo/status beat a timed-out response)
        message.status = Message.Status.FAILED
        message.error_code = (code or "")[:32]
        message.error_message = reason
        message.failed_at = occurred_at
        message.save(update_fields=["status", "error_code", "error_message", "failed_at", "updated_at"])
        MessageEvent.objects.create(
            message=message,
            kind=MessageEvent.Kind.FAILED,
            detail={"attempt": row.attempts, "error_code": code, "error": reason},
            occurred_at=occurred_at,
        )
        push_message_updated(message)
        push_chat_updated(message.chat)

    def requeued(self, *, row: OutboxMessage, actor: Any, occurred_at: datetime) -> None:
        assert row.message_id is not None
        message = Message.objects.select_for_update(no_key=True).get(pk=row.message_id)
        if message.status == Message.Status.FAILED:
            message.status = Message.Status.PENDING
            message.error_code = ""
            message.error_message = ""
            message.failed_at = None
            message.save(update_fields=["status", "error_code", "error_message", "failed_at", "updated_at"])
        MessageEvent.objects.create(
            message=message,
            kind=MessageEvent.Kind.RETRY,
            detail={"manual": True, "admin": True, "by": _user_label(actor)},
            occurred_at=occurred_at,
        )
        push_message_updated(message)


OUTBOX_HOOKS = OutboxHooks()
