"""Every write to chats and messages. Modules: receive (webhook events), send (outbound), chats (agent actions).

Callers import from here: ``from inbox.services import message_send``.
"""
