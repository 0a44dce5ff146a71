"""Every write to chats and messages. Modules: receive and its receive_* siblings (webhook events), send
(outbound), provider_ids (the send response), media (downloaded files), chats (agent actions).

Callers import from here: ``from inbox.services import message_send``.
"""

from inbox.services.chats import chat_assign, chat_mark_read, chat_set_status, chat_start
from inbox.services.media import message_media_failed, message_media_store
from inbox.services.provider_ids import message_record_provider_id
from inbox.services.receive import inbound_events_apply
from inbox.services.send import message_retry, message_send

__all__ = [
    "chat_assign",
    "chat_mark_read",
    "chat_set_status",
    "chat_start",
    "inbound_events_apply",
    "message_media_failed",
    "message_media_store",
    "message_record_provider_id",
    "message_retry",
    "message_send",
]
