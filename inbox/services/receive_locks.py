"""The locks and raw row lookups the receive modules share. Why each lock, and their order: ``inbox.services.receive``."""

from __future__ import annotations

from typing import Any

from django.db import connection

from channels_app.models import Channel
from inbox.models import Chat

# ---------------------------------------------------------------- hot-path lookups
# The lookups every inbound message makes, as plain SQL through the models (``raw``): building them with
# the ORM's query compiler cost more CPU than running them (py-spy, docs/performance.md).


def _pk(channel_or_id: Any) -> Any:
    """A channel id as the database stores it (a UUID on Postgres, hex text on SQLite)."""
    value = getattr(channel_or_id, "pk", channel_or_id)
    return Channel._meta.pk.get_db_prep_value(value, connection)  # type: ignore[union-attr]


def _one(model: Any, sql: str, *params: Any, lock: bool = False) -> Any:
    """The first row of ``sql`` as a model instance, or None; ``lock`` takes the row's lock (Postgres; SQLite
    has one writer at a time)."""
    sql += " LIMIT 1"
    if lock and connection.vendor == "postgresql":
        sql += " FOR NO KEY UPDATE"
    return next(iter(model.objects.raw(sql, list(params))), None)


# ---------------------------------------------------------------- locks


def _lock_wa_message_id(channel_id: Any, wa_message_id: str) -> None:
    """Serialize everything that looks up or assigns this provider message id (see ``inbox.services.receive``)."""
    if connection.vendor != "postgresql":
        return  # SQLite (embedded mode) runs one writer at a time anyway.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"wamid:{channel_id}:{wa_message_id}"]
        )


def _chat_lock(chat_id: int) -> Chat:
    return Chat.objects.select_for_update(no_key=True).get(pk=chat_id)
