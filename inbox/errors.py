"""Refusals the inbox explains to the person (or integration) that asked."""

from __future__ import annotations


class InboxError(Exception):
    """A refused inbox operation; ``str(error)`` is a sentence fit to show an agent."""

    code = "inbox_error"


class WindowClosedError(InboxError):
    """Meta only allows templates once the 24-hour customer-service window has closed."""

    code = "window_closed"


class ClientMessageIdConflict(InboxError):
    """The client_message_id was already used for a different message."""

    code = "client_message_id_conflict"


class ChannelUnavailableError(InboxError):
    code = "channel_unavailable"
